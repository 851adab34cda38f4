"""Bigger FUSE reads: a root mount raises its read-ahead (README, --read-ahead)."""

from __future__ import annotations

import os

import pytest
from support import wait_until


def read_ahead_kb(path) -> int:
    st = os.stat(path)
    with open(f"/sys/class/bdi/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/read_ahead_kb") as fh:
        return int(fh.read())


def settled(path, want: int) -> int:
    """The mount's read-ahead once the daemon has set it (just after FUSE's INIT)."""
    wait_until(lambda: read_ahead_kb(path) == want, 10,
               message=lambda: f"read_ahead_kb is {read_ahead_kb(path)}, not {want}")
    return want


@pytest.mark.parametrize("option,want", [((), 1024), (("--read-ahead", "4M"), 4096),
                                         (("--read-ahead", "0"), None)])
def test_a_root_mount_sets_its_read_ahead(mount_factory, option, want):
    if os.geteuid() != 0:
        pytest.skip("only root may set a mount's read-ahead")
    mount = mount_factory("vagon", options=option)
    if want is None:  # left alone: the kernel's default, and nothing said about it
        assert read_ahead_kb(mount.path) == 128
        assert "FUSE reads" not in mount.log_text()
    else:
        assert settled(mount.path, want) == want
        said = f"FUSE reads of up to {min(want, 1024)} KiB"
        wait_until(lambda: said in mount.log_text(), 10, message=mount.log_text)
