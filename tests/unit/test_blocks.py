"""The block cache: bounded, least recently used first, warm after a restart, and
never serving a block that is not what was stored."""

from __future__ import annotations

import collections
import errno
import os
import subprocess
import threading

import trio

from vagonfs.cache import block_files, blocks
from vagonfs.cache.blocks import BLOCK_SIZE, BlockCache, object_id

from support import until


SIZE = 64 * BLOCK_SIZE  # the objects' size, unless a test says otherwise


async def put(cache: BlockCache, block, data, size: int = SIZE) -> None:
    await cache.reserve_write()
    cache.keep(block, data, size)
    await cache.write_kept()


def object_file(root, obj):
    return root / "blocks" / f"{obj}.blocks"


def index_bytes(root, obj, size: int = SIZE) -> bytes:
    """The object's index: what its file holds past its last block."""
    with open(object_file(root, obj), "rb") as fh:
        fh.seek(block_files.data_end(size))
        return fh.read()


def test_lru_bound_evicts_oldest_blocks_and_frees_their_disk(tmp_path):
    async def main():
        cache = BlockCache(tmp_path, 4 * BLOCK_SIZE)
        obj, other = object_id("key", "v1"), object_id("other", "v1")
        await put(cache, (other, 0), b"x" * 100)
        for index in range(6):
            await put(cache, (obj, index), bytearray([index]) * BLOCK_SIZE)
        assert cache.used_bytes == 4 * BLOCK_SIZE
        # evicted blocks are holes in the object's file; an object with none left has no file
        assert os.stat(object_file(tmp_path, obj)).st_blocks * 512 < 5 * BLOCK_SIZE
        assert not object_file(tmp_path, other).exists()
        again = BlockCache(tmp_path, 4 * BLOCK_SIZE)  # from disk, not memory
        assert again.used_bytes == 4 * BLOCK_SIZE
        assert not again.has((obj, 0)) and not again.has((obj, 1))
        loaded = await again.load((obj, 5), BLOCK_SIZE)
        assert loaded is not None
        assert bytes(loaded[10:13]) == b"\x05\x05\x05"

    trio.run(main)


def test_versions_are_separate_objects_and_index_survives_restart(tmp_path):
    async def main():
        cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        old, new = object_id("key", "v1"), object_id("key", "v2")
        assert old != new
        await put(cache, (old, 0), b"old")
        await put(cache, (new, 0), b"new")
        cache.drop_object(old)
        assert not cache.has((old, 0))
        assert not object_file(tmp_path, old).exists()
        again = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        assert again.has((new, 0)) and not again.has((old, 0))
        loaded = await again.load((new, 0), 3)
        assert loaded is not None
        assert bytes(loaded) == b"new"

    trio.run(main)


def test_a_damaged_or_torn_block_is_dropped_not_served(tmp_path, caplog):
    async def main():
        cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        obj = object_id("key", "v1")
        for index in range(4):
            await put(cache, (obj, index), os.urandom(BLOCK_SIZE))
        with open(object_file(tmp_path, obj), "r+b") as fh:
            fh.seek(12345)  # block 0: one byte changed
            byte = fh.read(1)
            fh.seek(12345)
            fh.write(bytes([byte[0] ^ 0xFF]))
            fh.seek(BLOCK_SIZE + BLOCK_SIZE // 2)  # block 1: its second half never written
            fh.write(bytes(BLOCK_SIZE // 2))
            fh.flush()
            # block 3: its disk space lost past its first 1000 bytes
            block_files.punch(fh.fileno(), 3 * BLOCK_SIZE + 1000, BLOCK_SIZE - 1000)
        again = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        assert await again.load((obj, 0), BLOCK_SIZE) is None
        assert await again.load((obj, 1), BLOCK_SIZE) is None
        assert await again.load((obj, 3), BLOCK_SIZE) is None
        assert not again.has((obj, 0)) and not again.has((obj, 1)) and not again.has((obj, 3))
        assert again.used_bytes == BLOCK_SIZE
        loaded = await again.load((obj, 2), BLOCK_SIZE)
        assert loaded is not None
        assert len(loaded) == BLOCK_SIZE
        # a block stored short of what the file's size says is not served either
        assert await again.load((obj, 2), BLOCK_SIZE - 1) is None
        # the drops were recorded: a remount does not find them again
        assert not BlockCache(tmp_path, 64 * BLOCK_SIZE).has((obj, 0))

    trio.run(main)
    assert len([r for r in caplog.records if "dropped, fetching it again" in r.getMessage()]) == 4


def test_a_damaged_or_torn_index_record_means_not_cached(tmp_path):
    async def main():
        cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        obj = object_id("key", "v1")
        for index in range(4):
            await put(cache, (obj, index), bytearray([index]) * BLOCK_SIZE)
        path = object_file(tmp_path, obj)
        records = bytearray(index_bytes(tmp_path, obj))
        size = len(records) // 4
        records[size + 3] ^= 0x01  # block 1's record damaged
        with open(path, "r+b") as fh:
            fh.seek(block_files.data_end(SIZE))
            fh.write(records)
        again = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        assert [again.has((obj, i)) for i in range(4)] == [True, False, True, True]
        assert again.used_bytes == 3 * BLOCK_SIZE
        loaded = await again.load((obj, 2), BLOCK_SIZE)
        assert loaded is not None
        assert bytes(loaded[:2]) == b"\x02\x02"
        # the index was rewritten without it: its records are all whole again
        assert len(index_bytes(tmp_path, obj)) == 3 * size
        # the last record torn (a crash while it was appended): where the index
        # starts is not known, so the object's file goes and nothing is served from it
        os.truncate(path, path.stat().st_size - 5)
        assert BlockCache(tmp_path, 64 * BLOCK_SIZE).used_bytes == 0
        assert not path.exists()

    trio.run(main)


def test_a_small_file_is_one_file_whose_index_follows_its_block(tmp_path):
    async def main():
        cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        obj = object_id("small", "v1")
        await put(cache, (obj, 0), b"tiny", size=4)
        assert set(os.listdir(tmp_path / "blocks")) == {f"{obj}.blocks", block_files.CACHEDIR_TAG}
        assert len(index_bytes(tmp_path, obj, 4)) == 40  # one record, at 1 MiB
        cache.drop_object(obj)
        await put(cache, (obj, 0), b"tiny", size=4)
        again = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        loaded = await again.load((obj, 0), 4)
        assert loaded is not None
        assert bytes(loaded) == b"tiny"
        again.drop_object(obj)
        assert os.listdir(tmp_path / "blocks") == [block_files.CACHEDIR_TAG]

    trio.run(main)


def test_a_cache_in_the_former_layout_is_removed_at_start(tmp_path):
    old = tmp_path / "blocks" / object_id("key", "v1")
    old.mkdir(parents=True)
    (old / f"0-{0:016x}").write_bytes(b"a block in its own file")
    older = tmp_path / "blocks" / object_id("key", "v2")  # a data file and its index file
    older.with_suffix(".data").write_bytes(b"a block")
    older.with_suffix(".index").write_bytes(b"its record")
    cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
    assert cache.used_bytes == 0
    assert os.listdir(tmp_path / "blocks") == [block_files.CACHEDIR_TAG]


def test_a_full_disk_shrinks_the_cache_and_reads_go_on(tmp_path, monkeypatch, caplog):
    real_write = block_files.write_blocks

    def small_disk(root, blocks):  # a disk that holds 12 blocks
        results: list[int | OSError] = []
        for block, data, end in blocks:
            path = root / f"{block[0]}.blocks"
            if path.exists() and os.stat(path).st_blocks * 512 >= 12 * BLOCK_SIZE:
                results.append(OSError(errno.ENOSPC, "No space left on device"))
            else:
                results += real_write(root, [(block, data, end)])
        return results

    monkeypatch.setattr(block_files, "write_blocks", small_disk)

    async def main():
        cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        obj = object_id("key", "v1")
        for index in range(20):
            await put(cache, (obj, index), bytearray([index]) * BLOCK_SIZE)
            hot = cache.get((obj, index))  # from memory
            assert hot is not None
            assert bytes(hot[:2]) == bytes([index, index])
        assert cache.disk_full
        assert cache.used_bytes <= 12 * BLOCK_SIZE - blocks._FULL_DISK_MARGIN
        assert os.stat(object_file(tmp_path, obj)).st_blocks * 512 <= cache.used_bytes + BLOCK_SIZE
        again = BlockCache(tmp_path, 64 * BLOCK_SIZE)  # what is on disk is whole
        assert again.used_bytes == cache.used_bytes
        loaded = await again.load((obj, 19), BLOCK_SIZE)
        assert loaded is not None
        assert bytes(loaded[:2]) == b"\x13\x13"

    trio.run(main)
    assert len([r for r in caplog.records if "cache disk is full" in r.getMessage()]) == 1


def test_the_blocks_folder_is_tagged_for_backup_tools_and_the_spools_are_not(tmp_path):
    async def main():
        cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        obj = object_id("key", "v1")
        await put(cache, (obj, 0), b"b" * BLOCK_SIZE)
        again = BlockCache(tmp_path, 64 * BLOCK_SIZE)  # the tag is kept, not taken for a block
        assert again.used_bytes == BLOCK_SIZE
        loaded = await again.load((obj, 0), BLOCK_SIZE)
        assert loaded is not None
        assert bytes(loaded) == b"b" * BLOCK_SIZE

    trio.run(main)
    tag = tmp_path / "blocks" / block_files.CACHEDIR_TAG
    assert tag.read_text().startswith("Signature: 8a477f597d28d172789f06886806bc55")
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "not-uploaded").write_bytes(b"a write still to upload")
    listed = subprocess.run(["tar", "-cf", "-", "--exclude-caches", "-C", str(tmp_path), "."],
                            capture_output=True, check=True, timeout=30)
    names = subprocess.run(["tar", "-tf", "-"], input=listed.stdout, capture_output=True,
                           check=True, timeout=30).stdout.decode().split()
    assert "./spool/not-uploaded" in names
    assert not any(name.endswith(".blocks") for name in names)


def test_a_block_loaded_again_while_its_first_load_runs_on_is_not_lost(tmp_path, monkeypatch):
    """A window's load reads X, X leaves memory, a reader loads X again,
    then the window's load ends: it must leave the second load's wait alone
    (it once popped it, and the second load's arrival then killed the mount)."""
    obj = object_id("key", "v1")
    x, y, z = (obj, 0), (obj, 1), (obj, 2)
    gates = {(y, 1): threading.Event(), (x, 2): threading.Event()}
    reads: collections.Counter[tuple[str, int]] = collections.Counter()
    read_block = block_files._read_block

    def gated(fd, block, length, checksum):  # in the loading threads
        reads[block] += 1
        gate = gates.get((block, reads[block]))
        if gate is not None:
            gate.wait(10)
        return read_block(fd, block, length, checksum)

    async def main():
        cache = BlockCache(tmp_path, SIZE)
        for block in (x, y, z):
            await put(cache, block, bytearray([block[1]]) * BLOCK_SIZE)
        monkeypatch.setattr(blocks, "_HOT_BYTES", BLOCK_SIZE)  # memory holds one block
        monkeypatch.setattr(block_files, "_read_block", gated)
        again = BlockCache(tmp_path, SIZE)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(again.load_run, [(x, BLOCK_SIZE), (y, BLOCK_SIZE)])
            await until(lambda: again.get(x) is not None)  # y's read waits at its gate
            assert await again.load(z, BLOCK_SIZE) is not None  # x leaves memory
            assert again.on_disk_only(x)
            second: list = []

            async def load_x() -> None:
                second.append(await again.load(x, BLOCK_SIZE))

            nursery.start_soon(load_x)  # its read waits at its gate
            await until(lambda: reads[x] == 2)
            gates[(y, 1)].set()  # the window's load ends
            await until(lambda: again.get(y) is not None)
            await trio.sleep(0.05)  # the subject: the first load's end has run
            assert not second  # still waiting for its own read
            gates[(x, 2)].set()
        assert second and bytes(second[0][:1]) == b"\x00"

    trio.run(main)


def test_a_cache_disk_that_refuses_to_free_a_damaged_block_ends_no_mount(tmp_path, monkeypatch,
                                                                        caplog):
    """A block that fails its check is dropped as it is read back, on the trio
    thread; the disk refusing to remove its file (EIO) is logged once, and the
    read just finds nothing cached (it once ended the mount: the error rose
    out of a run_sync_soon callback)."""
    async def main():
        cache = BlockCache(tmp_path, SIZE)
        obj = object_id("key", "v1")
        await put(cache, (obj, 0), os.urandom(BLOCK_SIZE))
        with open(object_file(tmp_path, obj), "r+b") as fh:
            fh.write(b"\0" * 100)  # no longer what was stored

        def refused(root, obj) -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        monkeypatch.setattr(block_files, "unlink_object", refused)
        again = BlockCache(tmp_path, SIZE)
        assert await again.load((obj, 0), BLOCK_SIZE) is None
        assert not again.has((obj, 0))

    trio.run(main)
    assert [r.getMessage() for r in caplog.records if "cannot free" in r.getMessage()] == [
        f"cannot free blocks the cache dropped in {tmp_path / 'blocks'} (Input/output error): "
        "the disk space they take may stay taken"]
