"""The block cache's disk: full, or holding a damaged block, the mount reads on
and never serves wrong bytes (docs/SEMANTICS.md, "Reading and caching")."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from vagonfs.control.mounttable import is_mounted

from support import populate, wait_until

from .conftest import sh, vagonfs
from .test_tools import sha256

MiB = 1024 * 1024


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 30 MB tmpfs for the cache dir; unmounted at teardown (after the mount,
    which is set up later and so torn down first)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "small-disk"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(path)],
                   check=True, timeout=30)
    yield path
    subprocess.run(["umount", str(path)], timeout=30, check=False)
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", str(path)], timeout=30, check=False)


def test_a_full_cache_disk_still_reads_right_and_says_so_once(small_tmpfs, mount_factory,
                                                              emulator_factory):
    emulator = emulator_factory()
    populate(emulator, prefix="big", count=1, size=100 * MiB + 12345)
    reference = mount_factory("vagon", emulator=emulator, subpath="shared")
    expected = sha256(reference.path / "big000000")
    reference.stop()

    mount = mount_factory("vagon", emulator=emulator, subpath="shared",
                          options=("--cache-dir", str(small_tmpfs)))
    assert sha256(mount.path / "big000000") == expected
    assert is_mounted(mount.path) and "big000000" in sh(f"ls {mount.path}")
    log = mount.log_text()
    assert log.count("the cache disk is full") == 1, log
    assert "unexpected" not in log, log
    status = mount.status()
    assert status["cache"]["disk_full"] is True
    assert status["cache"]["used"] <= 30 * MiB
    text = vagonfs("status", str(mount.path)).stdout
    assert "the cache disk is full" in text
    assert json.loads(vagonfs("status", str(mount.path), "--json").stdout)["cache"]["disk_full"]
    mount.remount()  # the kernel's page cache goes; what the small disk kept is read back
    assert sha256(mount.path / "big000000") == expected


def test_a_damaged_block_on_disk_is_fetched_again_not_served(mount_factory, emulator_factory):
    emulator = emulator_factory()
    populate(emulator, prefix="f", count=1, size=5 * MiB + 777)
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    expected = sha256(mount.path / "f000000")
    # the disk writes follow the reads
    wait_until(lambda: mount.status()["cache"]["used"] >= 5 * MiB + 777, 20,
               message=lambda: str(mount.status()["cache"]))
    mount.stop()
    [damaged] = (mount.cache / "emu" / "blocks").glob("*.blocks")  # one sparse file per object
    with open(damaged, "r+b") as fh:  # block 1: one byte changed
        fh.seek(MiB + 4321)
        byte = fh.read(1)
        fh.seek(MiB + 4321)
        fh.write(bytes([byte[0] ^ 0x5A]))

    mount.start()
    emulator.reset_stats()
    assert sha256(mount.path / "f000000") == expected
    assert emulator.stats()["requests"].get("s3.get_object", 0) == 1  # block 1, once
    assert "dropped, fetching it again" in mount.log_text()
