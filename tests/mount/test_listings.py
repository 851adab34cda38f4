"""Listings are whole or an error, on every store, through real mounts.

A listing that failed on one page and showed the others as if they were the
whole folder would make ``rsync --delete`` from the mount delete what did not
show. Each test fails one page (the first, one in the middle, the last) with
an emulator fault and checks that ``ls`` fails with EIO and prints no entry,
that the failure is told once in the log, and that the failed listing was not
kept: the next ``ls`` shows the whole folder.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from support import populate, wait_until

from .conftest import Mount

FILES = [f"f{i:06d}" for i in range(1000)]  # ten Vagon pages of 100
# for a fault set up for a folder after its parent was listed: listed ahead
# with its parent, it would be listed before the fault
NOT_AHEAD = ("--list-ahead", "0")


def ls(path) -> subprocess.CompletedProcess:
    return subprocess.run(["ls", "-1", str(path)], capture_output=True, text=True, timeout=60)


def assert_listing_failed(mount: Mount, path, route: str, before: int) -> None:
    result = ls(path)
    assert result.returncode != 0, f"ls succeeded with {len(result.stdout.split())} entries"
    assert "Input/output error" in result.stderr
    assert result.stdout == ""  # not one entry of the pages that did arrive
    assert mount.calls()[route] > before
    failures = [line for line in mount.log_text().splitlines()
                if "listing" in line and "fault injected" in line]
    assert len(failures) == 1, failures


@pytest.mark.parametrize("page,after", [("first", 0), ("middle", 4), ("last", 9)])
def test_vagon_listing_failing_on_any_page_is_an_error(mount_factory, emulator_factory,
                                                       page, after):
    emulator = emulator_factory()
    populate(emulator, count=len(FILES), prefix="f")
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    # a 400 is not retried: the page fails for good, after `after` pages went well
    emulator.set_faults({"rules": [{"route": "vagon.files", "status": 400, "after": after,
                                    "times": 1}]})
    before = mount.calls().get("vagon.files", 0)
    assert_listing_failed(mount, mount.path, "vagon.files", before)
    assert mount.calls()["vagon.files"] - before >= after + 1  # the failing page was asked
    assert ls(mount.path).stdout.split() == FILES


def test_tenant_listing_failing_is_an_error(mount_factory, emulator_factory):
    emulator = emulator_factory()
    populate(emulator, "tenant", path="dir", count=300, prefix="f")
    # no listing ahead: dir must not be listed before the fault
    mount = mount_factory("tenant", emulator=emulator, options=NOT_AHEAD)
    assert os.listdir(mount.path) == ["dir"]  # the root is listed (and kept) before the fault
    # the tenant API lists a folder in one reply: its first page is its last
    emulator.set_faults({"rules": [{"route": "tenant.list", "status": 400, "times": 1}]})
    before = mount.calls().get("tenant.list", 0)
    assert_listing_failed(mount, mount.path / "dir", "tenant.list", before)
    assert ls(mount.path / "dir").stdout.split() == FILES[:300]


@pytest.mark.parametrize("route", ["shannon.sessions", "shannon.list"])
def test_shannon_listing_failing_is_an_error(mount_factory, emulator_factory, route):
    emulator = emulator_factory("--seed-demo")
    mount = mount_factory("shannon", emulator=emulator, options=NOT_AHEAD)
    sessions = sorted(os.listdir(mount.path)) if route == "shannon.list" else None
    target = mount.path / sessions[0] if sessions else mount.path
    emulator.set_faults({"rules": [{"route": route, "status": 400, "times": 1}]})
    before = mount.calls().get(route, 0)
    assert_listing_failed(mount, target, route, before)
    assert ls(target).stdout.split()  # whole again, and not empty


def test_vagon_listing_that_changes_between_pages_is_read_again(mount_factory,
                                                                emulator_factory):
    emulator = emulator_factory()
    populate(emulator, count=len(FILES), prefix="f")
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    # slow pages, so a file can be added after page 1 was answered and before
    # the pages after it are: their `count` then differs from page 1's
    emulator.set_faults({"rules": [{"route": "vagon.files", "latency_ms": 400}]})
    before = mount.calls().get("vagon.files", 0)
    listing = subprocess.Popen(["ls", "-1", str(mount.path)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: mount.calls().get("vagon.files", 0) >= before + 2,
                   message="the listing never asked for page 2")
        populate(emulator, count=1, prefix="g")
        out, err = listing.communicate(timeout=60)
    finally:
        listing.kill()
    assert listing.returncode == 0, err
    assert out.split() == FILES + ["g000000"]  # one listing of one moment, not stitched
    assert mount.calls()["vagon.files"] - before > 10  # read again after the change
    assert "changed while it was read" in mount.log_text()
