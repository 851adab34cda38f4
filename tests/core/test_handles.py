"""Handles the kernel should not have sent are EBADF, not a crash of the mount."""

from __future__ import annotations

import errno

import pytest

from vagonfs.core.fs import Filesystem
from vagonfs.errors import FsError

from .conftest import error_from, run_with_fs
from .memory_store import MemoryStore


def test_unknown_handles_answer_ebadf(tmp_path):
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        dir_fh = await fs.opendir(1)
        for call in (lambda: fs.read(dir_fh, 0, 10), lambda: fs.write(4242, 0, b"x"),
                     lambda: fs.fsync(4242), lambda: fs.flush(4242)):
            assert (await error_from(call())).errno == errno.EBADF
        with pytest.raises(FsError) as caught:
            async for _ in fs.readdir(4242, 0):
                pass
        assert caught.value.errno == errno.EBADF
        fs.releasedir(dir_fh)
        assert sum(store.calls.values()) == 0  # refused before the store was asked

    run_with_fs(store, tmp_path, body)
