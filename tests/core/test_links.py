"""Links without ``--links``: readlink(2) of a file is EINVAL, symlink(2) EPERM."""

from __future__ import annotations

import errno

from vagonfs.core.fs import Filesystem

from .conftest import create, error_from, run_with_fs
from .memory_store import MemoryStore


def test_readlink_of_a_file_not_yet_uploaded_is_einval(tmp_path):
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        fh, node = await create(fs, "new.txt", b"not a link")
        assert node.entry is None  # only here: its upload waits for the close
        assert (await error_from(fs.readlink(node.ino))).errno == errno.EINVAL
        assert sum(store.calls.values()) == 0  # answered here, the store never asked

    run_with_fs(store, tmp_path, body)


def test_symlink_without_links_is_eperm_and_asks_the_store_nothing(tmp_path):
    """No store holds links (docs/SEMANTICS.md): the core refuses, not the adapter."""
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        assert (await error_from(fs.symlink(1, "ln", b"a.txt"))).errno == errno.EPERM
        assert sum(store.calls.values()) == 0

    run_with_fs(store, tmp_path, body)
