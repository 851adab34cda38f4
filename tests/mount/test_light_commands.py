"""``vagonfs status``, ``sync`` and ``unmount`` of a live mount load neither
trio nor pyfuse3 (the cheap tier, ``tests/cli/test_light_commands.py``, runs
them where no daemon answers; here they read a daemon's replies too)."""

from __future__ import annotations

import json

import pytest

from support import run_and_tell

from vagonfs.control.mounttable import is_mounted

pytestmark = pytest.mark.mount


def test_status_sync_and_unmount_of_a_mount_load_no_daemon_library(tenant_mount):
    (tenant_mount.path / "new.txt").write_text("pending")
    status = run_and_tell("status", "--json", str(tenant_mount.path))
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["mountpoint"] == str(tenant_mount.path)
    assert "loaded: []" in status.stderr.splitlines()
    text = run_and_tell("status", str(tenant_mount.path))
    assert text.returncode == 0 and "tenant" in text.stdout
    assert "loaded: []" in text.stderr.splitlines()
    synced = run_and_tell("sync", str(tenant_mount.path))
    assert synced.returncode == 0, synced.stderr
    assert "loaded: []" in synced.stderr.splitlines()
    unmounted = run_and_tell("unmount", str(tenant_mount.path), "--timeout", "30")
    assert unmounted.returncode == 0, unmounted.stderr
    assert "loaded: []" in unmounted.stderr.splitlines()
    assert not is_mounted(tenant_mount.path)
