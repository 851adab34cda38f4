"""Readers racing a replacement or a delete, each interleaving forced with gates
and its outcome asserted exactly (the mount tests could only accept any of them).

The replacement is an editor's save on this mount: write a new file under a
temporary name, rename it over the old one; the upload follows. A reader sees
old bytes, new bytes or ESTALE depending only on where it stands when the save
lands, never a mix.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import trio
import trio.testing

from vagonfs.cache.blocks import object_id
from vagonfs.core.fs import Filesystem
from vagonfs.core.inodes import ROOT_INODE, Node
from vagonfs.errors import NotFound, Stale

from .conftest import MiB, error_from, read_file, run_with_fs, uploaded, write_file
from .memory_store import MemoryStore

OLD = os.urandom(3 * MiB)
NEW = os.urandom(4 * MiB)  # another size: the store's size check tells the versions apart
GONE = "gone.bin"  # the file the delete races take away


def race(cache: Path, test: Callable[[MemoryStore, Filesystem], Awaitable[None]], *,
         name: str = "a.bin", ranged: bool = True, **options) -> None:
    """``test(store, fs)`` on a filesystem whose store holds ``OLD`` as ``name``."""
    store = MemoryStore(ranged=ranged)
    store.put(name, OLD)
    run_with_fs(store, cache, lambda fs: test(store, fs), **options)


async def open_reader(fs: Filesystem, name: str = "a.bin") -> tuple[Node, int]:
    """``open(O_RDONLY)`` of a file in the root: its node and the handle."""
    node = await fs.lookup(ROOT_INODE, name)
    fh, _ = await fs.open(node.ino, os.O_RDONLY)
    return node, fh


async def read_old_head(fs: Filesystem, fh: int) -> None:
    """The first block through ``fh``: the old content's, cached from now on."""
    assert bytes(await fs.read(fh, 0, MiB)) == OLD[:MiB]


async def read_fails(fs: Filesystem, fh: int, offset: int, kind: type[Stale | NotFound],
                     code: int) -> None:
    """A block read at ``offset`` through ``fh`` raises ``kind`` with errno ``code``."""
    assert (await error_from(fs.read(fh, offset, MiB), kind)).errno == code


async def save(fs: Filesystem) -> Node:
    """The editor's save of ``a.bin``: the new content, renamed over the old.
    The saved file's node, its upload under way."""
    await write_file(fs, ".a.bin.swp", NEW)
    await fs.rename(ROOT_INODE, ".a.bin.swp", ROOT_INODE, "a.bin")
    return await fs.lookup(ROOT_INODE, "a.bin")


async def save_and_land(fs: Filesystem) -> Node:
    """The save, once its upload landed: the store holds the new content alone."""
    node = await save(fs)
    pending = fs.uploads.get(node)
    assert pending is not None
    await uploaded(pending)
    return node


@asynccontextmanager
async def save_in_flight(store: MemoryStore, fs: Filesystem) -> AsyncIterator[Node]:
    """The save, its upload sent but not confirmed inside (the store still holds
    the old content); landed on the way out."""
    landing = store.gate("upload", key="a.bin")
    node = await save(fs)
    await landing.reached.wait()
    yield node
    landing.open()
    pending = fs.uploads.get(node)
    assert pending is not None
    await uploaded(pending)


def test_a_reader_open_before_a_save_reads_the_old_content_until_it_lands(tmp_path):
    async def body(store: MemoryStore, fs: Filesystem) -> None:
        _, fh = await open_reader(fs)
        async with save_in_flight(store, fs):
            got = b"".join([bytes(await fs.read(fh, at, MiB)) for at in range(0, len(OLD), MiB)])
            assert got == OLD
            fs.release(fh)
        assert store.data("a.bin") == NEW

    race(tmp_path, body)


def test_a_reader_opening_after_the_rename_reads_the_new_content_before_it_lands(tmp_path):
    async def body(store: MemoryStore, fs: Filesystem) -> None:
        await fs.lookup(ROOT_INODE, "a.bin")
        async with save_in_flight(store, fs) as node:
            assert await read_file(fs, node.ino, len(NEW)) == NEW  # from the local copy
            assert store.calls["read"] == 0 and store.data("a.bin") == OLD
        assert store.data("a.bin") == NEW and store.calls["upload"] == 1

    race(tmp_path, body)


def test_a_reader_opening_after_the_save_landed_reads_the_new_content(tmp_path):
    async def body(store: MemoryStore, fs: Filesystem) -> None:
        old = await fs.lookup(ROOT_INODE, "a.bin")
        assert await read_file(fs, old.ino, len(OLD)) == OLD  # the old version cached
        node = await save_and_land(fs)
        reads = store.calls["read"]
        assert await read_file(fs, node.ino, len(NEW)) == NEW
        assert store.calls["read"] > reads  # fetched: nothing of the old one served

    race(tmp_path, body)


def test_a_reader_in_the_middle_of_the_old_content_gets_estale_once_the_save_lands(tmp_path):
    async def body(store: MemoryStore, fs: Filesystem) -> None:
        _, fh = await open_reader(fs)
        await read_old_head(fs, fh)
        await save_and_land(fs)
        # the rest of a version the store no longer has
        await read_fails(fs, fh, MiB, Stale, errno.ESTALE)
        fs.release(fh)

    race(tmp_path, body)


def test_a_replacement_landing_while_a_read_streams_cuts_it_and_the_rest_is_estale(tmp_path):
    async def body(store: MemoryStore, fs: Filesystem) -> None:
        _, fh = await open_reader(fs)
        second_block = store.gate("read", key="a.bin", at=1)
        await read_old_head(fs, fh)
        await second_block.reached.wait()  # the stream stands after its first block
        await save_and_land(fs)
        await trio.testing.wait_all_tasks_blocked()
        assert store.cancelled["read"] == 1  # the old version's stream was dropped
        await read_fails(fs, fh, MiB, Stale, errno.ESTALE)
        assert store.calls["read"] == 2
        fs.release(fh)

    race(tmp_path, body, ranged=False)  # one streaming read for the whole file


def test_deleting_a_file_open_before_any_byte_was_read_fails_its_reads_with_enoent(tmp_path):
    async def body(store: MemoryStore, fs: Filesystem) -> None:
        _, fh = await open_reader(fs, GONE)
        await fs.unlink(ROOT_INODE, GONE)
        assert store.names() == [] and store.calls["delete"] == 1
        await read_fails(fs, fh, 0, NotFound, errno.ENOENT)
        fs.release(fh)
        await error_from(fs.lookup(ROOT_INODE, GONE), NotFound)

    race(tmp_path, body, name=GONE)


async def delete_after_head(fs: Filesystem) -> tuple[Node, int]:
    """``gone.bin`` opened, its first block read, then deleted; the handle open."""
    node, fh = await open_reader(fs, GONE)
    await read_old_head(fs, fh)
    await fs.unlink(ROOT_INODE, GONE)
    return node, fh


def test_deleting_a_file_open_after_a_block_was_read_fails_the_rest_with_enoent(tmp_path):
    async def body(store: MemoryStore, fs: Filesystem) -> None:
        _, fh = await delete_after_head(fs)
        # never fetched: gone with the file
        await read_fails(fs, fh, 2 * MiB, NotFound, errno.ENOENT)
        fs.release(fh)

    race(tmp_path, body, name=GONE)


def test_deleting_a_file_open_after_a_block_was_read_keeps_that_block_readable(tmp_path):
    async def body(store: MemoryStore, fs: Filesystem) -> None:
        node, fh = await delete_after_head(fs)
        reads = store.calls["read"]
        await read_old_head(fs, fh)  # as docs/SEMANTICS.md says
        assert store.calls["read"] == reads
        fs.release(fh)  # the last handle: now the blocks go
        assert node.entry is not None
        cached = object_id(store.cache_key(node.entry.key), node.entry.version)
        assert not fs.blocks.has((cached, 0))

    race(tmp_path, body, name=GONE)


async def replace_elsewhere_after_head(store: MemoryStore, fs: Filesystem) -> int:
    """``a.bin`` opened and its first block read, then replaced by another
    machine's save: the open handle."""
    _, fh = await open_reader(fs)
    await read_old_head(fs, fh)
    store.put("a.bin", NEW)
    return fh


def test_a_file_replaced_elsewhere_gives_its_open_reader_estale_for_the_rest(tmp_path):
    async def body(store: MemoryStore, fs: Filesystem) -> None:
        fh = await replace_elsewhere_after_head(store, fs)
        await read_fails(fs, fh, MiB, Stale, errno.ESTALE)
        fs.release(fh)

    race(tmp_path, body)


def test_a_file_replaced_elsewhere_and_looked_up_again_never_reads_as_a_mix(tmp_path):
    async def body(store: MemoryStore, fs: Filesystem) -> None:
        fh = await replace_elsewhere_after_head(store, fs)
        found = (await fs.lookup(ROOT_INODE, "a.bin")).entry
        assert found is not None and found.size == len(NEW)
        await read_fails(fs, fh, MiB, Stale, errno.ESTALE)
        fs.release(fh)

    # the kernel asks again once the listing is stale (--dir-cache-time), whenever
    # anyone stats the name
    race(tmp_path, body, dir_cache_time=0.0)
