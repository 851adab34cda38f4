"""Store-ahead decisions, told by what reaches the kernel's page cache: the
filesystem gets a ``KernelPages`` that records each store and drop in order
(the FUSE adapter's real one is exercised by tests/mount/test_store_ahead.py).

Blocks are ``MiB``; an offset recorded is a block's index times ``MiB``.
"""

from __future__ import annotations

import os

import trio

from vagonfs.cache.blocks import Buffer
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

    def store(self, ino: int, offset: int, data: Buffer) -> bool:
        assert offset % MiB == 0 and len(data) <= MiB
        self.calls.append(("store", ino, offset // MiB))
        return True

    def drop(self, ino: int) -> trio.Event:
        self.calls.append(("drop", ino))
        done = trio.Event()
        done.set()
        return done

    def stored(self, ino: int) -> list[int]:
        return sorted(c[2] for c in self.calls if c[0] == "store" and c[1] == ino)


def with_pages(cache, test, size: int = 16 * MiB, **options) -> None:
    """``test(fs, pages)`` on a filesystem whose store holds ``f`` of ``size`` bytes."""
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


async def read_in_order(fs: Filesystem, fh: int, blocks: range) -> None:
    for index in blocks:
        await fs.read(fh, index * MiB, MiB)


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
        await until(lambda: 8 in pages.stored(node.ino))
        # windows of 1 (block 2), 2 (3-4), 4 (5-8) so far: each window's middle
        # block (2, 4, 7) is left for a FUSE read that moves the cursor on, and
        # nothing a read was waiting for when it came (0, 1, 3: the kernel is
        # reading those pages itself) is stored
        assert pages.stored(node.ino) == [5, 6, 8]
        assert not [c for c in pages.calls if c[0] == "drop"]

    with_pages(tmp_path, test, 24 * MiB)


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
