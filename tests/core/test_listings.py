"""Listing assembly: a folder is shown whole or not at all, once per fetch."""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from vagonfs.core.fs import Filesystem
from vagonfs.core.inodes import ROOT_INODE, Node
from vagonfs.errors import FsError, InvalidName, ListingChanged, RemoteIOError

from .conftest import error_from, held, names, run_with_fs
from .memory_store import MemoryStore

FILES = [f"f{i:02}" for i in range(10)]  # four pages of three


def folder_of_pages(**options) -> MemoryStore:
    store = MemoryStore(page_size=3, **options)
    for name in FILES:
        store.put(f"dir/{name}", name.encode())
    return store


def in_folder(store: MemoryStore, cache: Path,
              test: Callable[[Filesystem, Node], Awaitable[None]]) -> None:
    """``test(fs, folder)`` with ``dir`` looked up (its listing not yet fetched)."""
    async def body(fs: Filesystem) -> None:
        await test(fs, await fs.lookup(ROOT_INODE, "dir"))

    run_with_fs(store, cache, body)


def test_a_folder_of_several_pages_is_listed_whole_once(tmp_path):
    store = folder_of_pages()

    async def body(fs: Filesystem, folder: Node) -> None:
        assert await names(fs, folder.ino) == FILES
        assert (store.calls["list"], store.calls["page"]) == (1, 4)
        assert await names(fs, folder.ino) == FILES  # kept: no second fetch
        assert (await fs.lookup(folder.ino, "f05")).entry == store.entry("dir/f05")
        assert (store.calls["list"], store.calls["lookup"]) == (1, 1)  # "dir" only

    in_folder(store, tmp_path, body)


@pytest.mark.parametrize("page", [1, 2, 4], ids=["first", "middle", "last"])
@pytest.mark.parametrize("error", [RemoteIOError("bad gateway", status=502),
                                   InvalidName("bad request", status=400)],
                         ids=["eio", "einval"])
def test_a_failed_page_fails_the_listing_with_eio_and_is_not_kept(tmp_path, page, error):
    store = folder_of_pages()
    store.fail("list", error, at=page - 1)

    async def body(fs: Filesystem, folder: Node) -> None:
        fh = await fs.opendir(folder.ino)
        shown = []
        with pytest.raises(FsError) as caught:
            async for _, node in fs.readdir(fh, 0):
                shown.append(node.name)
        fs.releasedir(fh)
        assert caught.value.errno == errno.EIO  # whatever the page said: ls gets EIO
        assert shown == []  # nothing of the pages that came
        assert store.calls["page"] == page
        assert await names(fs, folder.ino) == FILES  # asked again, not kept failed
        assert store.calls["list"] == 2

    in_folder(store, tmp_path, body)


def test_concurrent_listings_of_one_folder_share_one_fetch(tmp_path):
    store = folder_of_pages()

    async def body(fs: Filesystem, folder: Node) -> None:
        first_page = store.gate("list", key="dir")
        results: list[list[str]] = []

        async def ls() -> None:
            results.append(await names(fs, folder.ino))

        async with held(first_page, ls, ls) as returned:
            assert not returned  # the second waits on the first one's fetch
        assert results == [FILES, FILES]
        assert (store.calls["list"], store.calls["page"]) == (1, 4)

    in_folder(store, tmp_path, body)


def test_a_failed_fetch_fails_every_listing_waiting_on_it(tmp_path):
    store = folder_of_pages()
    store.fail("list", RemoteIOError("reset", status=503), at=2)

    async def body(fs: Filesystem, folder: Node) -> None:
        first_page = store.gate("list", key="dir")
        errors: list[int] = []

        async def ls() -> None:
            errors.append((await error_from(names(fs, folder.ino))).errno)

        async with held(first_page, ls, ls) as returned:
            assert not returned
        assert errors == [errno.EIO, errno.EIO]
        assert store.calls["list"] == 1

    in_folder(store, tmp_path, body)


def test_a_folder_that_changes_between_pages_is_read_again(tmp_path):
    store = folder_of_pages()

    async def body(fs: Filesystem, folder: Node) -> None:
        second_page = store.gate("list", key="dir", at=1)
        listed: list[list[str]] = []

        async def ls() -> None:
            listed.append(await names(fs, folder.ino))

        async with held(second_page, ls):
            store.put("dir/a-new", b"added elsewhere")  # shifts every later page
        assert listed == [["a-new", *FILES]]
        assert (store.calls["list"], store.calls["page"]) == (2, 2 + 4)

    in_folder(store, tmp_path, body)


@pytest.mark.parametrize("changes", [2, 3])
def test_a_folder_that_never_holds_still_is_an_error_after_three_reads(tmp_path, changes):
    store = folder_of_pages()
    for nth in range(1, changes + 1):
        store.fail("list", ListingChanged("count changed"), nth=nth, at=1)

    async def body(fs: Filesystem, folder: Node) -> None:
        if changes < 3:
            assert await names(fs, folder.ino) == FILES
        else:
            assert (await error_from(names(fs, folder.ino))).errno == errno.EIO
        assert store.calls["list"] == min(changes + 1, 3)

    in_folder(store, tmp_path, body)


def test_on_a_store_without_lookups_concurrent_lookups_share_one_listing(tmp_path):
    store = folder_of_pages(lookup_lists=True)  # as the tenant API

    async def body(fs: Filesystem, folder: Node) -> None:  # "dir" found by listing the root
        first_page = store.gate("list", key="dir")
        found: list[str] = []

        async def lookup(name: str) -> None:
            found.append((await fs.lookup(folder.ino, name)).name)

        async with held(first_page, lambda: lookup("f01"), lambda: lookup("f09")) as returned:
            assert not returned
        assert sorted(found) == ["f01", "f09"]
        # the kept listing says so
        assert (await error_from(fs.lookup(folder.ino, "absent"))).errno == errno.ENOENT
        assert (store.calls["list"], store.calls["lookup"]) == (2, 0)

    in_folder(store, tmp_path, body)
