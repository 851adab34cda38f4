"""Names the store said are absent, in a folder not listed: kept as long as a
name found there is (``dir_cache_time``), so the kernel's own lookup before a
mkdir or create, right after a stat that found nothing, asks nothing; dropped
by this mount's own changes; asked again once stale, so a file made elsewhere
shows as it would in a listing read again."""

from __future__ import annotations

import errno

import trio

from vagonfs.core.fs import Filesystem
from vagonfs.core.inodes import ROOT_INODE, Node

from .conftest import error_from, run_with_fs
from .memory_store import MemoryStore

SHORT = 0.2  # seconds a listing (and a name looked up) stays fresh, in the test of staleness


def store_with_a_folder() -> MemoryStore:
    store = MemoryStore()
    store.put("dir/a.txt", b"a")
    return store


async def absent(fs: Filesystem, folder: Node, name: str) -> None:
    assert (await error_from(fs.lookup(folder.ino, name))).errno == errno.ENOENT


def test_a_name_found_absent_is_not_asked_again_before_the_mkdir(tmp_path):
    store = store_with_a_folder()

    async def body(fs: Filesystem) -> None:
        folder = await fs.lookup(ROOT_INODE, "dir")
        await absent(fs, folder, "new")  # rsync's stat of its destination
        await absent(fs, folder, "new")  # the kernel's lookup before the mkdir
        assert store.calls["lookup"] == 2  # dir, then new once
        made = await fs.mkdir(folder.ino, "new")
        assert await fs.lookup(folder.ino, "new") is made  # the mkdir replaced the absence
        assert store.calls["lookup"] == 2
        assert store.calls["list"] == 0  # no listing: the folder is not listed

    run_with_fs(store, tmp_path, body)


def test_our_own_create_and_rename_replace_an_absence(tmp_path):
    store = store_with_a_folder()

    async def body(fs: Filesystem) -> None:
        folder = await fs.lookup(ROOT_INODE, "dir")
        await absent(fs, folder, "made.txt")
        _, created = await fs.create(folder.ino, "made.txt")
        assert await fs.lookup(folder.ino, "made.txt") is created
        await absent(fs, folder, "moved.txt")
        await fs.rename(folder.ino, "a.txt", folder.ino, "moved.txt")  # on the store
        moved = await fs.lookup(folder.ino, "moved.txt")
        assert moved.entry is not None and store.data("dir/moved.txt") == b"a"
        assert store.calls["lookup"] == 4  # dir, made.txt, moved.txt, the rename's a.txt
        await absent(fs, folder, "a.txt")  # its old name: gone

    run_with_fs(store, tmp_path, body)


async def made_elsewhere_once_absent(fs: Filesystem, store):
    """``dir/theirs.txt`` looked up here (absent), then made by another client."""
    folder = await fs.lookup(ROOT_INODE, "dir")
    await absent(fs, folder, "theirs.txt")
    store.put("dir/theirs.txt", b"made by another client")
    return folder


def test_a_file_made_elsewhere_is_found_once_the_absence_is_stale(tmp_path):
    store = store_with_a_folder()

    async def body(fs: Filesystem) -> None:
        folder = await made_elsewhere_once_absent(fs, store)
        await absent(fs, folder, "theirs.txt")  # within the bound: still absent here
        assert store.calls["lookup"] == 2
        await trio.sleep(SHORT * 1.5)  # past the bound
        found = await fs.lookup(folder.ino, "theirs.txt")
        assert found.entry is not None and found.entry.size == len(b"made by another client")
        assert store.calls["lookup"] == 3

    run_with_fs(store, tmp_path, body, dir_cache_time=SHORT)


def test_a_folder_listed_answers_absent_names_without_asking(tmp_path):
    store = store_with_a_folder()

    async def body(fs: Filesystem) -> None:
        folder = await fs.lookup(ROOT_INODE, "dir")
        await fs.namespace.entries(folder)
        before = store.calls.copy()
        await absent(fs, folder, "new")
        assert store.calls == before

    run_with_fs(store, tmp_path, body)


def test_a_listing_supersedes_an_absence_even_once_it_is_dropped(tmp_path):
    store = store_with_a_folder()

    async def body(fs: Filesystem) -> None:
        folder = await made_elsewhere_once_absent(fs, store)
        assert "theirs.txt" in await fs.namespace.listing(folder)
        fs.namespace.listings.drop(folder.ino)  # as the listing cache's bound drops one
        found = await fs.lookup(folder.ino, "theirs.txt")  # asked again, not the old absence
        assert found.entry is not None
        assert store.calls["lookup"] == 3

    run_with_fs(store, tmp_path, body)
