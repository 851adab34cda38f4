"""``vagonfs sync MOUNTPOINT [--timeout S]``: what is pending goes up now,
without the write-back delay, and the command returns once the store has
confirmed it; or, non-zero, names each file not uploaded and why.

Every mount here has a write-back delay of an hour: only the sync can have
sent the files. What is on the store is read from the emulator, not through
the mount."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import vagonfs
from .test_signal_stop import on_the_store

NO_DELAY = ("--write-back-delay", "1h")


def test_sync_returns_once_the_store_has_every_pending_file(mount_factory):
    mount = mount_factory("tenant", options=NO_DELAY)
    payloads = {f"f{n}.bin": os.urandom(100_000 + n) for n in range(5)}
    for name, data in payloads.items():
        (mount.path / name).write_bytes(data)
    assert mount.calls().get("tenant.upload", 0) == 0  # the delay holds them

    result = vagonfs("sync", str(mount.path), "--timeout", "60", check=False)
    assert (result.returncode, result.stderr) == (0, "")
    for name, data in payloads.items():
        assert on_the_store(mount.emulator, name) == data
    assert mount.calls()["tenant.upload"] == len(payloads)
    assert mount.status()["uploads"] == []
    assert vagonfs("sync", str(mount.path)).returncode == 0  # nothing pending: at once


def test_sync_names_what_the_store_did_not_confirm_within_its_timeout(mount_factory):
    mount = mount_factory("tenant", options=NO_DELAY)
    (mount.path / "slow.bin").write_bytes(b"slow")
    mount.emulator.set_faults({"rules": [{"route": "tenant.upload", "latency_ms": 5_000}]})

    result = vagonfs("sync", str(mount.path), "--timeout", "0.5", check=False)
    assert result.returncode == 1
    assert result.stderr == (f"vagonfs: not uploaded: {mount.path}/slow.bin: not confirmed "
                             "by the store within 0.5 s (uploading)\n")
    mount.emulator.clear_faults()
    assert vagonfs("sync", str(mount.path), "--timeout", "60").returncode == 0
    assert on_the_store(mount.emulator, "slow.bin") == b"slow"


def test_sync_names_an_upload_the_store_refused_and_why(mount_factory):
    mount = mount_factory("tenant", "--tenant-quota", "100000", options=NO_DELAY)
    mount.expect_log(r"upload of big.bin refused by the store: .*quota exceeded \(HTTP 507\)")
    (mount.path / "small.txt").write_bytes(b"fits")
    (mount.path / "big.bin").write_bytes(os.urandom(300_000))

    result = vagonfs("sync", str(mount.path), check=False)  # no timeout: the refusal answers
    assert result.returncode == 1
    spool = mount.status()["uploads"][0]["spool"]
    assert result.stderr == (f"vagonfs: not uploaded: {mount.path}/big.bin: refused by the "
                             f"store (POST {mount.emulator.url}/api/v1/files/upload: quota "
                             f"exceeded (HTTP 507)); kept in {spool}\n")
    assert on_the_store(mount.emulator, "small.txt") == b"fits"


def test_sync_loads_neither_trio_nor_pyfuse3(mount_factory):
    """The command only connects and reads one line."""
    mount = mount_factory("tenant", options=NO_DELAY)
    check = ("import sys\n"
             "from vagonfs.cli.main import main\n"
             "code = main(sys.argv[1:])\n"
             "assert not {'trio', 'pyfuse3'} & set(sys.modules), 'loaded'\n"
             "sys.exit(code)\n")
    result = subprocess.run([sys.executable, "-c", check, "sync", str(mount.path)],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")


def test_sync_of_a_folder_that_is_no_mount_says_so(tmp_path):
    result = vagonfs("sync", str(tmp_path), check=False)
    assert (result.returncode, result.stderr) == (1, f"vagonfs: {tmp_path}: not a vagonfs "
                                                     "mount\n")
