"""The block cache: bounded, least recently used first, warm after a restart, and
never serving a block that is not what was stored."""

from __future__ import annotations

import errno
import os

import trio

from vagonfs.cache import block_files, blocks
from vagonfs.cache.blocks import BLOCK_SIZE, BlockCache, object_id


async def put(cache: BlockCache, block, data) -> None:
    await cache.reserve_write()
    cache.keep(block, data)
    await cache.write_kept()


def data_file(root, obj):
    return root / "blocks" / f"{obj}.data"


def index_file(root, obj):
    return root / "blocks" / f"{obj}.index"


def test_lru_bound_evicts_oldest_blocks_and_frees_their_disk(tmp_path):
    async def main():
        cache = BlockCache(tmp_path, 4 * BLOCK_SIZE)
        obj, other = object_id("key", "v1"), object_id("other", "v1")
        await put(cache, (other, 0), b"x" * 100)
        for index in range(6):
            await put(cache, (obj, index), bytearray([index]) * BLOCK_SIZE)
        assert cache.used_bytes == 4 * BLOCK_SIZE
        # evicted blocks are holes in the data file; an object with none left has no files
        assert os.stat(data_file(tmp_path, obj)).st_blocks * 512 < 5 * BLOCK_SIZE
        assert not data_file(tmp_path, other).exists()
        assert not index_file(tmp_path, other).exists()
        again = BlockCache(tmp_path, 4 * BLOCK_SIZE)  # from disk, not memory
        assert again.used_bytes == 4 * BLOCK_SIZE
        assert not again.has((obj, 0)) and not again.has((obj, 1))
        assert bytes((await again.load((obj, 5), BLOCK_SIZE))[10:13]) == b"\x05\x05\x05"

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
        assert not data_file(tmp_path, old).exists()
        again = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        assert again.has((new, 0)) and not again.has((old, 0))
        assert bytes(await again.load((new, 0), 3)) == b"new"

    trio.run(main)


def test_a_damaged_or_torn_block_is_dropped_not_served(tmp_path, caplog):
    async def main():
        cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        obj = object_id("key", "v1")
        for index in range(4):
            await put(cache, (obj, index), os.urandom(BLOCK_SIZE))
        with open(data_file(tmp_path, obj), "r+b") as fh:
            fh.seek(12345)  # block 0: one byte changed
            byte = fh.read(1)
            fh.seek(12345)
            fh.write(bytes([byte[0] ^ 0xFF]))
            fh.seek(BLOCK_SIZE + BLOCK_SIZE // 2)  # block 1: its second half never written
            fh.write(bytes(BLOCK_SIZE // 2))
            fh.truncate(3 * BLOCK_SIZE + 1000)  # block 3: torn short
        again = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        assert await again.load((obj, 0), BLOCK_SIZE) is None
        assert await again.load((obj, 1), BLOCK_SIZE) is None
        assert await again.load((obj, 3), BLOCK_SIZE) is None
        assert not again.has((obj, 0)) and not again.has((obj, 1)) and not again.has((obj, 3))
        assert again.used_bytes == BLOCK_SIZE
        assert len(await again.load((obj, 2), BLOCK_SIZE)) == BLOCK_SIZE
        # a block stored short of what the file's size says is not served either
        assert await again.load((obj, 2), BLOCK_SIZE - 1) is None
        # the drops were recorded: a remount does not find them again
        assert not BlockCache(tmp_path, 64 * BLOCK_SIZE).has((obj, 0))

    trio.run(main)
    assert len([r for r in caplog.records if "dropped, fetching it again" in r.getMessage()]) == 4


def test_a_torn_or_lost_index_record_means_not_cached(tmp_path):
    async def main():
        cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        obj = object_id("key", "v1")
        for index in range(4):
            await put(cache, (obj, index), bytearray([index]) * BLOCK_SIZE)
        index = index_file(tmp_path, obj)
        records = bytearray(index.read_bytes())
        size = len(records) // 4
        records[size + 3] ^= 0x01  # block 1's record damaged
        del records[-5:]  # block 3's record torn (and a later one lost would be missing)
        index.write_bytes(records)
        again = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        assert [again.has((obj, i)) for i in range(4)] == [True, False, True, False]
        assert again.used_bytes == 2 * BLOCK_SIZE
        assert bytes((await again.load((obj, 2), BLOCK_SIZE))[:2]) == b"\x02\x02"
        # the index was rewritten without them: its records are all whole again
        assert len(index.read_bytes()) == 2 * size
        # an index lost altogether: the object's data file goes, nothing is served from it
        index.unlink()
        assert BlockCache(tmp_path, 64 * BLOCK_SIZE).used_bytes == 0
        assert not data_file(tmp_path, obj).exists()

    trio.run(main)


def test_a_cache_in_the_former_layout_is_removed_at_start(tmp_path):
    old = tmp_path / "blocks" / object_id("key", "v1")
    old.mkdir(parents=True)
    (old / f"0-{0:016x}").write_bytes(b"a block in its own file")
    cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
    assert cache.used_bytes == 0
    assert not list((tmp_path / "blocks").iterdir())


def test_a_full_disk_shrinks_the_cache_and_reads_go_on(tmp_path, monkeypatch, caplog):
    real_write = block_files.write_blocks

    def small_disk(root, blocks):  # a disk that holds 12 blocks
        results = []
        for block, data in blocks:
            data_path = root / f"{block[0]}.data"
            if data_path.exists() and os.stat(data_path).st_blocks * 512 >= 12 * BLOCK_SIZE:
                results.append(OSError(errno.ENOSPC, "No space left on device"))
            else:
                results += real_write(root, [(block, data)])
        return results

    monkeypatch.setattr(block_files, "write_blocks", small_disk)

    async def main():
        cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        obj = object_id("key", "v1")
        for index in range(20):
            await put(cache, (obj, index), bytearray([index]) * BLOCK_SIZE)
            assert bytes(cache.get((obj, index))[:2]) == bytes([index, index])  # from memory
        assert cache.disk_full
        assert cache.used_bytes <= 12 * BLOCK_SIZE - blocks._FULL_DISK_MARGIN
        assert os.stat(data_file(tmp_path, obj)).st_blocks * 512 <= cache.used_bytes + BLOCK_SIZE
        again = BlockCache(tmp_path, 64 * BLOCK_SIZE)  # what is on disk is whole
        assert again.used_bytes == cache.used_bytes
        assert bytes((await again.load((obj, 19), BLOCK_SIZE))[:2]) == b"\x13\x13"

    trio.run(main)
    assert len([r for r in caplog.records if "cache disk is full" in r.getMessage()]) == 1
