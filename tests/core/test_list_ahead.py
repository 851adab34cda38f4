"""Listing ahead: the subfolders of a folder read are listed before a walk
steps into them, within their bounds, and by the rules of any listing."""

from __future__ import annotations

import trio
import trio.testing

from vagonfs.core.fs import Filesystem
from vagonfs.core.inodes import ROOT_INODE, Node
from vagonfs.errors import RemoteIOError

from .conftest import names, run_with_fs
from .memory_store import MemoryStore

SUBFOLDERS = [f"d{i:02}" for i in range(10)]


def tree() -> MemoryStore:
    """``top`` with ten subfolders, each holding a file and a folder of its own."""
    store = MemoryStore()
    for name in SUBFOLDERS:
        store.put(f"top/{name}/file", b"x")
        store.mkdirs(f"top/{name}/below")
    return store


async def read_top(fs: Filesystem) -> Node:
    """``ls top``: the folder looked up and read, as a reader does; its node."""
    top = await fs.lookup(ROOT_INODE, "top")
    await names(fs, top.ino)
    return top


async def settled() -> None:
    """Until the listings started ahead have been fetched."""
    await trio.testing.wait_all_tasks_blocked()


def test_reading_a_folder_lists_its_first_subfolders_and_no_deeper(tmp_path):
    store = tree()

    async def body(fs: Filesystem) -> None:
        top = await fs.lookup(ROOT_INODE, "top")
        assert await names(fs, top.ino) == SUBFOLDERS
        await settled()
        # top, then four of its subfolders; none of theirs (a listing ahead
        # starts no listing ahead: it would walk the whole tree)
        assert store.calls["list"] == 1 + 4
        assert fs.list_ahead.started == 4

    run_with_fs(store, tmp_path, body, list_ahead=4)


def test_a_walk_lists_each_folder_once_and_the_window_slides_with_it(tmp_path):
    store = tree()

    async def body(fs: Filesystem) -> None:
        top = await read_top(fs)
        for name in SUBFOLDERS:  # as find goes: into each folder, then below it
            sub = await fs.lookup(top.ino, name)
            assert await names(fs, sub.ino) == ["below", "file"]
            assert await names(fs, (await fs.lookup(sub.ino, "below")).ino) == []
        await settled()
        assert store.calls["list"] == 1 + 2 * len(SUBFOLDERS)  # each folder once
        assert fs.list_ahead.started == 2 * len(SUBFOLDERS)

    run_with_fs(store, tmp_path, body, list_ahead=3)


def test_a_subfolder_entered_while_its_listing_ahead_is_on_its_way_waits_for_it(tmp_path):
    store = tree()
    gate = store.gate("list", key="top/d00")

    async def body(fs: Filesystem) -> None:
        top = await read_top(fs)
        await gate.reached.wait()
        sub = await fs.lookup(top.ino, "d00")
        async with trio.open_nursery() as nursery:
            listed: list[list[str]] = []

            async def read() -> None:
                listed.append(await names(fs, sub.ino))

            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            assert not listed  # waiting for the fetch ahead, not asking again
            gate.open()
        assert listed == [["below", "file"]]
        await settled()
        # top, d00 and d01 ahead of the walk; once d00 was read, d02 (the
        # window slid) and d00/below: d00 itself once
        assert store.calls["list"] == 1 + 2 + 2

    run_with_fs(store, tmp_path, body, list_ahead=2)


def test_a_listing_ahead_that_fails_is_not_kept_and_its_reader_asks_again(tmp_path):
    store = tree()
    store.fail("list", RemoteIOError("page refused"), nth=2)  # d00's, the one ahead

    async def body(fs: Filesystem) -> None:
        top = await read_top(fs)
        await settled()
        assert store.calls["list"] == 1 + 1
        sub = await fs.lookup(top.ino, "d00")
        assert await names(fs, sub.ino) == ["below", "file"]
        await settled()
        # d00 asked again by its reader, then ahead of the walk d00/below and d01
        assert store.calls["list"] == 1 + 1 + 1 + 2

    run_with_fs(store, tmp_path, body, list_ahead=1)


def test_listing_ahead_off(tmp_path):
    store = tree()

    async def body(fs: Filesystem) -> None:
        top = await read_top(fs)
        await settled()
        assert store.calls["list"] == 1
        assert fs.list_ahead.started == 0

    run_with_fs(store, tmp_path, body, list_ahead=0)
