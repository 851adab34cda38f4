"""rename(2) of a folder onto a taken name, in the core (the mount tests run
``mv -T`` in tests/mount/test_rename_folders.py): what each case costs on a
store that can move and the errno on one that cannot."""

from __future__ import annotations

import errno

import pytest

from vagonfs.core.fs import Filesystem
from vagonfs.core.inodes import ROOT_INODE
from vagonfs.errors import RemoteIOError

from .conftest import error_from, names, run_with_fs
from .memory_store import MemoryStore


def folders(can_rename: bool) -> MemoryStore:
    """``src/`` with a file, ``empty/``, ``full/`` with a file, and ``file.txt``."""
    store = MemoryStore(can_rename=can_rename)
    store.put("src/a.txt", b"a")
    store.mkdirs("empty")
    store.put("full/f.txt", b"f")
    store.put("file.txt", b"file")
    return store


def test_a_folder_over_an_empty_folder_deletes_it_then_moves(tmp_path):
    store = folders(can_rename=True)

    async def body(fs: Filesystem) -> None:
        await fs.rename(ROOT_INODE, "src", ROOT_INODE, "empty")
        assert (store.calls["delete"], store.calls["rename"]) == (1, 1)
        assert store.names() == ["empty", "file.txt", "full"]
        assert store.data("empty/a.txt") == b"a"
        assert sorted(await names(fs)) == ["empty", "file.txt", "full"]

    run_with_fs(store, tmp_path, body)


def test_a_move_that_fails_after_the_empty_folder_went_makes_it_again(tmp_path):
    store = folders(can_rename=True)
    store.fail("rename", RemoteIOError("the store failed"))

    async def body(fs: Filesystem) -> None:
        error = await error_from(fs.rename(ROOT_INODE, "src", ROOT_INODE, "empty"))
        assert error.errno == errno.EIO
        assert store.names() == ["empty", "file.txt", "full", "src"]
        assert store.names("empty") == [] and store.names("src") == ["a.txt"]

    run_with_fs(store, tmp_path, body)


@pytest.mark.parametrize("can_rename", [True, False], ids=["moves", "cannot-move"])
def test_what_a_folder_rename_onto_a_taken_name_answers(tmp_path, can_rename):
    store = folders(can_rename)

    async def body(fs: Filesystem) -> None:
        async def rename_errno(source: str, target: str) -> int:
            return (await error_from(fs.rename(ROOT_INODE, source, ROOT_INODE, target))).errno

        assert await rename_errno("src", "full") == errno.ENOTEMPTY
        assert await rename_errno("src", "file.txt") == errno.ENOTDIR
        assert await rename_errno("file.txt", "empty") == errno.EISDIR
        if not can_rename:  # mv copies instead
            assert await rename_errno("src", "empty") == errno.EXDEV
        assert store.calls["delete"] == store.calls["rename"] == 0
        assert store.names() == ["empty", "file.txt", "full", "src"]

    run_with_fs(store, tmp_path, body)
