"""A folder copied in listing order fetches its next small files ahead
(``vagonfs.core.folder_prefetch``), counted with the store's reads: the first
file of the listing counts as in order (a copy starts there) and brings the
window, each open after it slides it, and any other file opened alone brings
nothing."""

from __future__ import annotations

import os

import trio.testing

from vagonfs.core.folder_prefetch import AHEAD
from vagonfs.core.fs import Filesystem
from vagonfs.core.inodes import ROOT_INODE

from .conftest import run_with_fs
from .memory_store import MemoryStore

NAMES = [f"f{i:03}" for i in range(AHEAD + 10)]


def folder_of_small_files() -> MemoryStore:
    store = MemoryStore()
    for name in NAMES:
        store.put(f"dir/{name}", name.encode() * 100)
    return store


async def listed_folder(fs: Filesystem) -> int:
    folder = await fs.lookup(ROOT_INODE, "dir")
    await fs.namespace.entries(folder)
    return folder.ino


async def open_and_close(fs: Filesystem, folder_ino: int, name: str) -> None:
    node = await fs.lookup(folder_ino, name)
    fh, _ = await fs.open(node.ino, os.O_RDONLY)
    fs.release(fh)
    await trio.testing.wait_all_tasks_blocked()


def fetched(store: MemoryStore) -> list[str]:
    return sorted({str(key).removeprefix("dir/") for key, _, _ in store.reads})


def test_the_first_file_opened_brings_the_window_and_the_next_slides_it(tmp_path):
    store = folder_of_small_files()

    async def body(fs: Filesystem) -> None:
        folder = await listed_folder(fs)
        await open_and_close(fs, folder, NAMES[0])
        # opening reads nothing itself; the next AHEAD files come ahead
        assert fetched(store) == NAMES[1:1 + AHEAD]
        await open_and_close(fs, folder, NAMES[1])
        assert fetched(store) == NAMES[1:2 + AHEAD]  # one more
        assert len(store.reads) == 1 + AHEAD  # each file once

    run_with_fs(store, tmp_path, body)


def test_another_file_opened_alone_brings_nothing(tmp_path):
    store = folder_of_small_files()

    async def body(fs: Filesystem) -> None:
        folder = await listed_folder(fs)
        await open_and_close(fs, folder, NAMES[5])
        assert fetched(store) == []

    run_with_fs(store, tmp_path, body)
