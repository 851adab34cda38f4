"""Store-ahead decisions, told by what reaches the kernel's page cache: the
filesystem gets a ``KernelPages`` that records each store and drop in order
(the FUSE adapter's real one is exercised by tests/mount/test_store_ahead.py).

Blocks are ``MiB``; an offset recorded is a block's index times ``MiB``.
"""

from __future__ import annotations

import os

import trio

from vagonfs.cache.blocks import Buffer, object_id
from vagonfs.cache.store_ahead import Loader
from vagonfs.core.fs import Filesystem, FsOptions
from vagonfs.core.inodes import ROOT_INODE

from support import until

from .conftest import DELAY, MiB, run
from .memory_store import MemoryStore


class RecordedPages:
    """What the kernel's page cache was asked: ("store", ino, block) and
    ("drop", ino), in order; every drop done at once."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.sent: dict[tuple[int, int], Buffer | Loader] = {}  # (ino, block): what
        self.full = False  # refuse every store, as a full queue of stores does

    def store(self, ino: int, offset: int, length: int, data: Buffer | Loader) -> bool:
        assert offset % MiB == 0 and length <= MiB
        if self.full:
            return False
        self.calls.append(("store", ino, offset // MiB))
        self.sent[ino, offset // MiB] = data
        return True

    def drop(self, ino: int) -> trio.Event:
        self.calls.append(("drop", ino))
        done = trio.Event()
        done.set()
        return done

    def stored(self, ino: int) -> list[int]:
        return sorted(c[2] for c in self.calls if c[0] == "store" and c[1] == ino)


def with_pages(cache, test, size: int = 16 * MiB, store: MemoryStore | None = None,
               **options) -> None:
    """``test(fs, pages)`` on a filesystem whose store holds ``f`` of ``size``
    bytes (or on ``store``)."""
    if store is None:
        store = MemoryStore()
        store.put("f", os.urandom(size))

    async def body() -> None:
        pages = RecordedPages()
        async with trio.open_nursery() as nursery:
            fs = Filesystem(store, await store.root(),
                            FsOptions(uid=0, gid=0, write_back_delay=DELAY, **options), cache,
                            nursery, pages)
            await fs.start()
            try:
                await test(fs, pages)
            finally:
                fs.close()
                nursery.cancel_scope.cancel()

    run(body)


async def open_file(fs: Filesystem, name: str, flags: int = os.O_RDONLY):
    node = await fs.lookup(ROOT_INODE, name)
    fh, _ = await fs.open(node.ino, flags)
    return fh, node


SMALL = 128 * 1024  # the kernel's FUSE reads at its default read-ahead


async def read_in_order(fs: Filesystem, fh: int, blocks: range, size: int = SMALL) -> None:
    """Those blocks read in order, in reads of ``size`` bytes as the kernel sends them."""
    for offset in range(blocks.start * MiB, blocks.stop * MiB, size):
        await fs.read(fh, offset, size)


async def read_head(fs: Filesystem, pages: RecordedPages):
    """``f`` opened read-only and its first blocks read in order, until some
    of what follows is stored: its handle and node."""
    fh, node = await open_file(fs, "f")
    await read_in_order(fs, fh, range(4))
    await until(lambda: bool(pages.stored(node.ino)))
    return fh, node


def test_blocks_read_ahead_are_stored_but_each_window_s_middle_one_and_those_awaited(tmp_path):
    async def test(fs: Filesystem, pages: RecordedPages) -> None:
        fh, node = await open_file(fs, "f")
        await read_in_order(fs, fh, range(5))
        await until(lambda: 15 in pages.stored(node.ino))
        # windows of 1 (block 1), 2 (2-3), 4 (4-7) and 8 (8-15) so far: each
        # window's middle block (1, 3, 6, 12) is left for a FUSE read that
        # moves the cursor on, and nothing a read was waiting for when it came
        # (4: the kernel is reading those pages itself) is stored
        assert pages.stored(node.ino) == [2, 5, 7, 8, 9, 10, 11, 13, 14, 15]
        assert not [c for c in pages.calls if c[0] == "drop"]

    with_pages(tmp_path, test, 24 * MiB)


def test_a_handle_read_in_1_mib_reads_stores_nothing(tmp_path):
    """At 1 MiB FUSE reads (a root mount's read-ahead) storing ahead costs more
    than the FUSE reads it spares (cache/store_ahead.py): the cursor reads
    ahead as before, and nothing goes to the kernel's page cache."""
    async def test(fs: Filesystem, pages: RecordedPages) -> None:
        fh, node = await open_file(fs, "f")
        await read_in_order(fs, fh, range(5), MiB)
        small, _ = await open_file(fs, "f")  # the same file, read in small reads
        await read_in_order(fs, small, range(5, 8))
        await until(lambda: bool(pages.stored(node.ino)))
        assert pages.calls == [("store", node.ino, index) for index in pages.stored(node.ino)]
        assert all(index > 5 for index in pages.stored(node.ino))  # the small reader's own
        fs.release(small)
        fs.release(fh)

    with_pages(tmp_path, test, 24 * MiB)


def test_a_file_in_the_disk_cache_is_stored_from_disk_at_any_read_size(tmp_path):
    """Blocks only in the disk cache are stored by the sending thread, which
    reads them (a loader): not loaded into memory first, and also at 1 MiB
    FUSE reads, where storing blocks held in memory is not done."""
    store = MemoryStore()
    data = os.urandom(24 * MiB)
    store.put("f", data)

    async def cold(fs: Filesystem, pages: RecordedPages) -> None:
        fh, _ = await open_file(fs, "f")
        await read_in_order(fs, fh, range(24), MiB)
        await until(lambda: fs.blocks.used_bytes == len(data))  # all on disk
        assert pages.calls == []
        fs.release(fh)

    async def warm(fs: Filesystem, pages: RecordedPages) -> None:  # a new mount's cache
        fh, node = await open_file(fs, "f")
        await read_in_order(fs, fh, range(10), MiB)
        await until(lambda: 16 in pages.stored(node.ino))
        stored = pages.stored(node.ino)
        obj = object_id(store.cache_key(node.entry.key), node.entry.version)
        # windows 2, 3-4, 5-8, 9-16: each middle block is left for a FUSE read
        assert {3, 5, 6, 8, 9, 10, 11, 12, 14, 15, 16} <= set(stored), stored
        assert not {4, 7, 13} & set(stored), stored
        for index in stored:
            load = pages.sent[node.ino, index]
            assert callable(load)
            if index >= 10:  # not loaded into memory (the test's own reads loaded 0-9)
                assert fs.blocks.get((obj, index)) is None
            got = await trio.to_thread.run_sync(load)
            assert got is not None and bytes(got) == data[index * MiB:(index + 1) * MiB]
        fs.release(fh)

    async def warm_queue_full(fs: Filesystem, pages: RecordedPages) -> None:
        pages.full = True
        fh, node = await open_file(fs, "f")
        await read_in_order(fs, fh, range(10), MiB)
        obj = object_id(store.cache_key(node.entry.key), node.entry.version)
        # refused, so loaded for the reader's FUSE reads, as without store-ahead
        await until(lambda: all(fs.blocks.get((obj, index)) is not None
                                for index in range(10, 17)))
        fs.release(fh)

    with_pages(tmp_path, cold, store=store)
    with_pages(tmp_path, warm, store=store)
    with_pages(tmp_path, warm_queue_full, store=store)


def test_nothing_is_stored_for_a_file_open_for_writing(tmp_path):
    async def test(fs: Filesystem, pages: RecordedPages) -> None:
        fh, node = await read_head(fs, pages)
        writer, _ = await open_file(fs, "f", os.O_RDWR)
        assert pages.calls[-1] == ("drop", node.ino)  # before the open returned
        pages.calls.clear()
        await read_in_order(fs, fh, range(4, 12))
        assert pages.stored(node.ino) == []
        fs.release(writer)

    with_pages(tmp_path, test)


def test_a_version_changed_on_the_store_drops_its_pages_and_stores_no_more(tmp_path):
    async def test(fs: Filesystem, pages: RecordedPages) -> None:
        fh, node = await read_head(fs, pages)
        assert isinstance(fs.store, MemoryStore)
        fs.store.put("f", os.urandom(16 * MiB))  # replaced elsewhere
        await fs.lookup(ROOT_INODE, "f")  # seen here: the old version is forgotten
        assert ("drop", node.ino) in pages.calls
        pages.calls.clear()
        fresh, _ = await open_file(fs, "f")
        await read_in_order(fs, fresh, range(6))
        await until(lambda: bool(pages.stored(node.ino)))
        assert pages.calls[0][0] == "store"  # nothing left to drop, the new version's go in
        fs.release(fresh)
        fs.release(fh)

    # the kernel asks again after --attr-timeout, whenever anyone stats the name
    with_pages(tmp_path, test, dir_cache_time=0.0)
