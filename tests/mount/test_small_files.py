"""Small files, counted: a folder copied file by file in listing order is
fetched ahead (``vagonfs/core/folder_prefetch.py``), each file still once."""

from __future__ import annotations

import time

import pytest

from support import populate, wait_until

from .conftest import sh, vagon_folder

FILES = 40
SIZE = 4096
GETS = {"vagon": "s3.get_object", "tenant": "tenant.download"}
# seconds watched for a fetch that must not happen: no condition can say "never"
QUIET = 1.0


def _populate(emulator, store: str) -> str:
    """A folder of FILES small files; its path under the mount."""
    if store == "vagon":
        vagon_folder(emulator, "copy", count=FILES, prefix="f", size=SIZE)
    else:
        populate(emulator, "tenant", path="copy000000", count=FILES, prefix="f", size=SIZE)
    return "copy000000"


@pytest.mark.parametrize("store,subpath", [("vagon", "shared"), ("tenant", "")])
def test_a_folder_read_in_listing_order_is_fetched_ahead_each_file_once(
        mount_factory, emulator_factory, store, subpath):
    emulator = emulator_factory()
    folder = _populate(emulator, store)
    mount = mount_factory(store, emulator=emulator, subpath=subpath)
    path = mount.path / folder
    names = sh(f"ls {path}").split()
    assert len(names) == FILES
    route = GETS[store]
    before = mount.calls().get(route, 0)

    def fetched() -> int:
        return mount.calls().get(route, 0) - before

    for name in names[:2]:  # two files in order: a copy of the folder
        assert len((path / name).read_bytes()) == SIZE
    wait_until(lambda: fetched() >= 12, 20, message="the next files were not fetched ahead")

    for name in names[2:]:
        assert len((path / name).read_bytes()) == SIZE
    assert fetched() == FILES  # each file once: read-ahead is never fetched twice


def test_files_opened_out_of_order_fetch_nothing_ahead(mount_factory, emulator_factory):
    emulator = emulator_factory()
    folder = _populate(emulator, "tenant")
    mount = mount_factory("tenant", emulator=emulator)
    path = mount.path / folder
    names = sh(f"ls {path}").split()
    before = mount.calls().get("tenant.download", 0)
    for name in (names[30], names[3], names[17]):
        assert len((path / name).read_bytes()) == SIZE
    time.sleep(QUIET)  # what is asserted is that nothing is fetched ahead meanwhile
    assert mount.calls().get("tenant.download", 0) - before == 3


def test_uploads_wait_while_a_copy_keeps_closing_files(mount_factory):
    """A copy's FUSE requests and the uploads share the daemon's one thread:
    while files keep being closed, uploads wait (and then each file uploads once)."""
    mount = mount_factory("vagon", subpath="shared", options=("--write-back-delay", "1.5s"))
    before = mount.calls().get("vagon.complete", 0)
    for i in range(20):
        (mount.path / f"copied{i:02d}.txt").write_text(f"file {i}\n")
        time.sleep(0.15)  # the subject: ten closes within one delay, a copy still going
    assert mount.calls().get("vagon.complete", 0) == before  # nothing uploaded during it
    mount.wait_uploaded()
    assert mount.calls().get("vagon.complete", 0) - before == 20
    assert (mount.path / "copied07.txt").read_text() == "file 7\n"
