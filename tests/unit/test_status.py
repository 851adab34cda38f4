"""``vagonfs status``'s text from the daemon's JSON: the conflicts kept, and a
daemon from before conflicts (no such key) read as none."""

from __future__ import annotations

from vagonfs.control import status

REPORT = {"remote": "emu", "type": "vagon", "subpath": "shared", "mountpoint": "/mnt/w",
          "pid": 42, "since": 0.0, "uploads": [],
          "cache": {"used": 0, "max": 1 << 30, "dir": "/c", "disk_full": False},
          "requests": {}, "kernel_requests": {"lookup": 3}}


def test_conflicts_kept_are_listed_after_the_uploads():
    text = status.text({**REPORT, "conflicts": [
        {"path": "docs/plan.txt", "kept_as": "docs/plan (conflict 2026-12-07 101500).txt",
         "at": 1_796_638_500.0}]})
    lines = text.splitlines()
    assert lines[0] == "everything is uploaded"
    assert lines[1] == "conflicts kept since the mount started: 1 (both versions are on the store)"
    assert lines[2].startswith("  /mnt/w/docs/plan.txt changed elsewhere; this mount's version "
                               "kept as /mnt/w/docs/plan (conflict 2026-12-07 101500).txt (")


def test_no_conflicts_add_no_line():
    for report in (REPORT, {**REPORT, "conflicts": []}):
        assert "conflict" not in status.text(report)
