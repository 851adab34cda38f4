"""Every way a mount ends gives its pending uploads at most ``--stop-timeout``.

Whatever the store does (gone; hanging: it accepts connections and never
answers; the cache disk full besides), a SIGTERM or an unmount from outside
(``umount``, ``fusermount3 -u``, lazy or not) ends the daemon within the stop
timeout: it keeps what is not uploaded in the journal, says so in one line and
exits with 75; the next mount, the store back, uploads it. Before, an unmount
from outside waited for the uploads with no bound at all. An upload whose
local copy is gone fails once, loudly, and is not retried.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from vagonfs.control.mounttable import is_mounted

from .conftest import Mount, vagonfs
from .hanging_store import HangingStore
from .test_signal_stop import (HANG, UPLOADS_LEFT, foreground, on_the_store,  # noqa: F401
                               remount_uploads, the_last_line)
from .test_writes import small_cache_dir  # noqa: F401

STOP_TIMEOUT = 2.0  # seconds; every test mounts with it
# past the stop timeout: the 1 s given to FUSE requests in flight, and the exit itself
EXIT_SLACK = 5.0
ENDS = ["SIGTERM", "vagonfs unmount", "umount", "fusermount3 -u", "fusermount3 -uz"]


@contextlib.contextmanager
def store_down(emulator, how: str) -> Iterator[HangingStore | None]:
    """The emulator stopped, and in its place, if ``how`` is "hanging", a
    store that never answers; inside, the store is down. On the way out the
    emulator starts again on the same port and data."""
    emulator.stop()
    hanging = HangingStore(emulator.port) if how == "hanging" else None
    try:
        yield hanging
    finally:
        if hanging is not None:
            hanging.close()
        emulator.start()


def end_mount(mount: Mount, daemon: subprocess.Popen, how: str) -> None:
    if how == "SIGTERM":
        daemon.send_signal(signal.SIGTERM)
    elif how == "vagonfs unmount":  # returns once the daemon gave up on the store
        result = vagonfs("unmount", str(mount.path), check=False, timeout=HANG)
        assert result.returncode == UPLOADS_LEFT, result.stderr
        assert "unmounted with 1 file(s) not uploaded" in result.stderr
    else:
        subprocess.run([*how.split(), str(mount.path)], check=True, timeout=HANG)


def assert_exits_within_the_stop_timeout(mount: Mount, daemon: subprocess.Popen,
                                         how: str) -> None:
    started = time.monotonic()
    assert daemon.wait(timeout=HANG) == UPLOADS_LEFT, mount.log_text()
    assert time.monotonic() - started < STOP_TIMEOUT + EXIT_SLACK, mount.log_text()
    assert not is_mounted(mount.path)
    said = {"SIGTERM": f"SIGTERM: uploading what is pending for at most {STOP_TIMEOUT:g} s",
            "vagonfs unmount": ""}.get(
        how, f"unmounted from outside; uploading what is pending for at most {STOP_TIMEOUT:g} s")
    assert said in mount.log_text()


@pytest.mark.parametrize("how", ENDS)
@pytest.mark.parametrize("store", ["gone", "hanging"])
def test_a_mount_whose_store_is_down_ends_within_the_stop_timeout_and_keeps_its_uploads(
        foreground, emulator_factory, store, how):
    emulator = emulator_factory()
    # the upload waits for the stop itself: nothing reaches the store before it
    mount, daemon = foreground(emulator, "--stop-timeout", f"{STOP_TIMEOUT:g}s",
                               "--write-back-delay", "60s")
    payload = os.urandom(300_000)
    (mount.path / "report.bin").write_bytes(payload)  # closed: journaled
    with store_down(emulator, store) as hanging:
        end_mount(mount, daemon, how)
        assert_exits_within_the_stop_timeout(mount, daemon, how)
        if hanging is not None:  # the upload went to the store and got no answer
            assert hanging.accepted >= 1
    the_last_line(mount, f"the {STOP_TIMEOUT:g} s --stop-timeout passed")
    remount_uploads(mount, emulator, payload)


@pytest.mark.parametrize("small_cache_dir", ["tmpfs"], indirect=True)
@pytest.mark.parametrize("how", ["SIGTERM", "fusermount3 -uz"])
def test_a_full_cache_disk_and_a_store_gone_still_end_within_the_stop_timeout(
        small_cache_dir, foreground, emulator_factory, how):
    """The case that ran on for an hour: a write just refused for a full cache
    disk, the store gone, then the mount ended."""
    cache_dir, disk_size = small_cache_dir
    emulator = emulator_factory()
    mount, daemon = foreground(emulator, "--stop-timeout", f"{STOP_TIMEOUT:g}s",
                               "--write-back-delay", "60s", "--cache-dir", str(cache_dir))
    earlier = os.urandom(1024 * 1024)
    (mount.path / "report.bin").write_bytes(earlier)  # closed, journaled, not yet uploaded
    fd = os.open(mount.path / "w40", os.O_WRONLY | os.O_CREAT, 0o644)
    written = 0
    try:
        with pytest.raises(OSError) as caught:
            while written < 10 * disk_size:
                written += os.write(fd, b"x" * 1024 * 1024)
        assert caught.value.errno == errno.ENOSPC
    finally:
        with contextlib.suppress(OSError):  # the journal record may not fit either
            os.close(fd)
    os.unlink(mount.path / "w40")  # room for the next mount's own files
    with store_down(emulator, "gone"):
        end_mount(mount, daemon, how)
        assert_exits_within_the_stop_timeout(mount, daemon, how)
    line = re.findall(r"stopped with \d+ file\(s\) not uploaded \(the 2 s --stop-timeout "
                      r"passed\); they stay in the journal", mount.log_text())
    assert len(line) == 1, mount.log_text()

    mount.options = ("--cache-dir", str(cache_dir))
    mount.start()
    mount.wait_uploaded()
    assert on_the_store(emulator, "report.bin") == earlier
    assert "w40" not in os.listdir(mount.path)


def test_an_upload_whose_local_copy_is_gone_fails_once_and_is_not_replayed(mount_factory):
    """Its spool removed under the mount: one ERROR line, ``status`` and
    ``sync`` name it, no retry, and the next mount does not try it again."""
    mount = mount_factory("tenant", options=("--write-back-delay", "60s"))
    (mount.path / "w40").write_bytes(os.urandom(300_000))  # closed: journaled
    [spool] = [p for p in (mount.cache / "emu" / "spool").iterdir()
               if p.stat().st_size == 300_000]
    spool.unlink()
    mount.expect_log(r"ERROR vagonfs.upload: upload of w40 failed for good: its local copy "
                     r".* cannot be read: No such file or directory; not retried")
    before = mount.calls()

    result = vagonfs("sync", str(mount.path), check=False)
    assert result.returncode == 1
    assert f"not uploaded: {mount.path}/w40: its local copy" in result.stderr
    [upload] = mount.status()["uploads"]
    assert upload["state"] == "lost" and upload["attempts"] == 1
    assert "its local copy is gone or unreadable" in vagonfs("status", str(mount.path)).stdout
    assert vagonfs("sync", str(mount.path), check=False).returncode == 1
    assert mount.status()["uploads"][0]["attempts"] == 1  # not tried again
    assert mount.calls().get("tenant.upload", 0) == before.get("tenant.upload", 0)
    assert mount.log_text().count("upload of w40 failed for good") == 1

    mount.remount()
    assert mount.status()["uploads"] == []  # the journal no longer names it
    assert "resuming upload of w40" not in mount.log_text()
