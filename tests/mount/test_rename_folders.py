"""rename(2) of a folder onto a name that is taken, with ``mv -T`` and
``os.rename`` on real mounts (docs/SEMANTICS.md's table): POSIX's rules where
the store can move (the tenant store), and on Vagon, which cannot, the errno
that lets ``mv`` copy instead."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from .conftest import sh
from .test_api_calls import calls_since
from .test_tools import STORES


@pytest.fixture(params=sorted(STORES))
def tree(request, mount_factory):
    """A mount with ``src/`` (two files), ``empty/``, ``full/`` (one file) and ``file.txt``."""
    mount = mount_factory(request.param, subpath=STORES[request.param])
    root = mount.path
    sh(f"mkdir {root}/src {root}/empty {root}/full && echo one > {root}/src/a.txt && "
       f"echo two > {root}/src/b.txt && echo kept > {root}/full/f.txt && "
       f"echo file > {root}/file.txt")
    mount.wait_uploaded()
    return mount


def rename_errno(source, target) -> int:
    with pytest.raises(OSError) as caught:
        os.rename(source, target)
    return caught.value.errno or 0


def test_a_folder_over_an_empty_folder_takes_its_place(tree):
    root = tree.path
    if tree.store == "tenant":  # POSIX: the empty folder goes, then the move
        before = tree.calls()
        sh(f"mv -T {root}/src {root}/empty")
        spent = calls_since(tree, before)  # and listings: is it empty? where did it go?
        assert (spent.pop("tenant.delete"), spent.pop("tenant.move")) == (1, 1)
        assert set(spent) <= {"tenant.list"}, spent  # nothing copied
        os.rename(root / "empty", root / "src")  # and back, with os.rename, over nothing
        os.mkdir(root / "empty")
        os.rename(root / "src", root / "empty")
    else:  # no move on Vagon: EXDEV, and mv copies into the empty folder
        assert rename_errno(root / "src", root / "empty") == errno.EXDEV
        sh(f"mv -T {root}/src {root}/empty")
    assert sorted(os.listdir(root)) == ["empty", "file.txt", "full"]
    tree.remount()
    assert sorted(os.listdir(root)) == ["empty", "file.txt", "full"]
    assert [(root / "empty" / n).read_text() for n in ("a.txt", "b.txt")] == ["one\n", "two\n"]


def test_a_folder_over_a_folder_that_is_not_empty_is_enotempty(tree):
    root = tree.path
    assert rename_errno(root / "src", root / "full") == errno.ENOTEMPTY
    moved = subprocess.run(["mv", "-T", str(root / "src"), str(root / "full")],
                           capture_output=True, text=True)
    assert moved.returncode != 0 and "Directory not empty" in moved.stderr
    assert sorted(os.listdir(root / "full")) == ["f.txt"]
    assert sorted(os.listdir(root / "src")) == ["a.txt", "b.txt"]


def test_a_folder_over_a_file_is_enotdir_and_a_file_over_a_folder_eisdir(tree):
    root = tree.path
    assert rename_errno(root / "src", root / "file.txt") == errno.ENOTDIR
    assert rename_errno(root / "file.txt", root / "empty") == errno.EISDIR
    assert (root / "file.txt").read_text() == "file\n"
    assert sorted(os.listdir(root)) == ["empty", "file.txt", "full", "src"]
