"""How long the kernel is told to keep what it learns of a node: as long as
the listing (or lookup) it came from stays fresh here, since until then the
mount would answer the same (a warm ``ls -l`` of a big folder then asks
nothing again), and never longer (a change elsewhere shows once the listing
is read again)."""

from __future__ import annotations

from vagonfs.core.fs import Filesystem
from vagonfs.core.inodes import ROOT_INODE

from .conftest import run_with_fs
from .memory_store import MemoryStore

LISTING_TIME = 300.0  # the default --dir-cache-time


def store_with_a_folder() -> MemoryStore:
    store = MemoryStore()
    store.put("dir/a.txt", b"a")
    return store


def test_an_entry_is_kept_while_its_listing_is_fresh(tmp_path):
    async def body(fs: Filesystem) -> None:
        folder = await fs.lookup(ROOT_INODE, "dir")
        await fs.namespace.entries(folder)
        listed = await fs.lookup(folder.ino, "a.txt")
        assert LISTING_TIME - 5 < fs.attributes(listed).kept_for <= LISTING_TIME
        fs.namespace.forget(folder.ino)  # its listing is no longer kept
        assert fs.attributes(listed).kept_for == 0
        _, created = await fs.create(folder.ino, "new.txt")  # only this mount knows it
        assert fs.attributes(created).kept_for == LISTING_TIME

    run_with_fs(store_with_a_folder(), tmp_path, body)


def test_a_name_looked_up_in_a_folder_not_listed_is_kept_as_long(tmp_path):
    async def body(fs: Filesystem) -> None:
        folder = await fs.lookup(ROOT_INODE, "dir")
        looked_up = await fs.lookup(folder.ino, "a.txt")
        assert fs.namespace.listings.fresh_for(folder.ino) is None  # not listed
        assert LISTING_TIME - 5 < fs.attributes(looked_up).kept_for <= LISTING_TIME

    run_with_fs(store_with_a_folder(), tmp_path, body)


def test_attr_timeout_bounds_it(tmp_path):
    async def body(fs: Filesystem) -> None:
        folder = await fs.lookup(ROOT_INODE, "dir")
        await fs.namespace.entries(folder)
        assert fs.attributes(await fs.lookup(folder.ino, "a.txt")).kept_for == 1.0
        _, created = await fs.create(folder.ino, "new.txt")
        assert fs.attributes(created).kept_for == 1.0

    run_with_fs(store_with_a_folder(), tmp_path, body, attr_timeout=1.0)


def test_what_this_mount_made_in_a_folder_not_listed_is_kept_and_costs_no_lookup(tmp_path):
    store = store_with_a_folder()

    async def body(fs: Filesystem) -> None:
        folder = await fs.lookup(ROOT_INODE, "dir")
        made = await fs.mkdir(folder.ino, "new")
        assert fs.namespace.listings.fresh_for(folder.ino) is None  # not listed
        assert LISTING_TIME - 5 < fs.attributes(made).kept_for <= LISTING_TIME
        before = store.calls.copy()
        assert await fs.lookup(folder.ino, "new") is made
        assert store.calls == before  # answered from what the mkdir said

    run_with_fs(store, tmp_path, body)
