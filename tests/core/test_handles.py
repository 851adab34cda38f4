"""The filesystem core driven directly (no kernel), against the emulator over loopback."""

from __future__ import annotations

import errno

import pytest
import trio

from vagonfs.core.fs import Filesystem, FsOptions
from vagonfs.errors import StoreError

from remote.conftest import store_of  # tests/ is on sys.path: rootdir-relative packages


async def _with_fs(emulator, tmp_path, body) -> None:
    async with store_of(emulator, "tenant") as (store, _stats):
        async with trio.open_nursery() as nursery:
            fs = Filesystem(store, await store.root(), FsOptions(uid=0, gid=0), tmp_path,
                            nursery)
            await fs.start()
            try:
                await body(fs)
            finally:
                fs.close()
                nursery.cancel_scope.cancel()


def test_unknown_handles_answer_ebadf(emulator_factory, tmp_path):
    emulator = emulator_factory()

    async def body(fs: Filesystem) -> None:
        dir_fh = await fs.opendir(1)
        for call in (lambda: fs.read(dir_fh, 0, 10), lambda: fs.write(4242, 0, b"x"),
                     lambda: fs.fsync(4242), lambda: fs.flush(4242)):
            with pytest.raises(StoreError) as caught:
                await call()
            assert caught.value.errno == errno.EBADF
        with pytest.raises(StoreError) as caught:
            async for _ in fs.readdir(4242, 0):
                pass
        assert caught.value.errno == errno.EBADF
        fs.releasedir(dir_fh)

    trio.run(_with_fs, emulator, tmp_path, body)
