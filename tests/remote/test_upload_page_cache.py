"""An upload reads its local copy without leaving it in the page cache
(``file_bodies.file_range``): the mount's spools are written around the page cache so
that a big copy does not evict what the machine caches, and reading one back
must not undo that."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest
import trio

from vagonfs.remote.vagon.upload import MiB

from .conftest import find, read_all, store_of

TMPFS_MAGIC = 0x01021994


def _resident(path) -> int:
    """Bytes of ``path`` in the page cache, as ``fincore`` (util-linux) counts them."""
    done = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                          check=True, capture_output=True, text=True, timeout=30)
    return int(done.stdout)


def _on_tmpfs(path) -> bool:
    done = subprocess.run(["stat", "-f", "-c", "%t", str(path)], check=True,
                          capture_output=True, text=True, timeout=30)
    return int(done.stdout, 16) == TMPFS_MAGIC


@pytest.mark.parametrize("kind,folder", [("vagon", "shared"), ("tenant", "")])
def test_an_upload_leaves_none_of_its_local_copy_in_the_page_cache(emulator_factory, tmp_path,
                                                                    kind, folder):
    if _on_tmpfs(tmp_path):
        pytest.skip("the temporary dir is a tmpfs, whose pages are the files: none to drop")
    emulator = emulator_factory()
    data = os.urandom(6 * MiB)  # one Vagon part, streamed a chunk at a time
    path = tmp_path / "spool"
    path.write_bytes(data)
    with open(path, "rb") as source:
        os.fsync(source.fileno())
        os.posix_fadvise(source.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        assert _resident(path) == 0  # as a spool written with O_DIRECT starts

        async def main():
            async with store_of(emulator, kind) as (store, _):
                parent = await find(store, folder) if folder else await store.root()
                entry = await store.upload(parent, "big.bin", source, len(data),
                                           content_type="application/octet-stream")
                return await read_all(store, entry)

        stored = trio.run(main)
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
    # read back through the page cache without the drop, all 6 MiB stayed there
    assert _resident(path) == 0
