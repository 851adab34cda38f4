"""A signalled mount stops in bounded time, and loses nothing.

SIGTERM, SIGINT or SIGHUP (and ``vagonfs unmount``) uploads what is pending for
at most ``--stop-timeout`` (a second signal: not at all), then unmounts and
exits with status 75; what
was not uploaded stays in the journal, and the next mount of the same cache
dir uploads it. Each test runs its daemon in the foreground (``-f``), as
systemd does, so it can read the exit status; the store refuses every upload
(503), is not running at all, or answers too late, so without the bound the
daemon would wait for ever (or for the store). The timeouts here only keep a
broken daemon from hanging the test: what proves the bound is the reason the
daemon logs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from vagonfs.control.mounttable import is_mounted

from support import wait_until

from .conftest import Mount, check_daemon_logs, vagonfs

UPLOADS_LEFT = 75  # the daemon's exit status when it leaves uploads in the journal
HANG = 30  # seconds after which a daemon that should have exited is a failure


@pytest.fixture
def foreground(emulator_factory, tmp_path, request):
    """``start(emulator, *options)``: a tenant mount served by ``vagonfs mount
    -f`` as a child of the test; its (Mount, Popen). Teardown unmounts what is
    still mounted, reaps the child and scans the daemon logs."""
    started: list[tuple[Mount, subprocess.Popen]] = []

    def start(emulator, *options: str) -> tuple[Mount, subprocess.Popen]:
        workdir = tmp_path / f"f{len(started)}"
        workdir.mkdir()
        mount = Mount(emulator, "tenant", workdir, options=options)
        with open(mount.log, "ab") as log:  # a traceback on stderr lands in the scanned log
            proc = subprocess.Popen(
                [sys.executable, "-m", "vagonfs", "mount", *mount.args(), "--foreground"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        started.append((mount, proc))
        def mounted() -> bool:
            assert proc.poll() is None, f"the mount exited: {mount.log_text()}"
            return is_mounted(mount.path)

        wait_until(mounted, HANG, message=lambda: f"not mounted: {mount.log_text()}")
        return mount, proc

    yield start
    for mount, proc in started:
        mount.stop()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=HANG)
    check_daemon_logs(request, [mount.daemon_log for mount, _ in started])


def block_uploads(emulator, how: str) -> None:
    if how == "refused":
        emulator.set_faults({"rules": [{"route": "tenant.upload", "status": 503}]})
    else:
        emulator.stop()


def unblock_uploads(emulator, how: str) -> None:
    if how == "refused":
        emulator.clear_faults()
    else:
        emulator.start()  # the same port and data


def on_the_store(emulator, path: str) -> bytes:
    """The file's bytes as the emulator serves them, not through any mount."""
    reply = httpx.get(f"{emulator.url}/api/v1/files/download", params={"path": path},
                      headers={"Authorization": f"Bearer {emulator.api_key}"})
    reply.raise_for_status()
    return reply.content


def the_last_line(mount: Mount, why: str) -> None:
    """The daemon said, once, how many files it left and where they wait."""
    journal = mount.cache / "emu" / "journal"
    line = (f"WARNING vagonfs.mount: stopped with 1 file(s) not uploaded ({why}); they stay "
            f"in the journal in {journal} and the next mount of emu with this cache dir "
            "uploads them")
    assert mount.log_text().count(line) == 1, mount.log_text()


def remount_uploads(mount: Mount, emulator, payload: bytes) -> None:
    """A fresh mount of the same cache dir, the store back, uploads what was left."""
    mount.options = ()  # the default --write-back-delay of the test mounts
    mount.start()
    mount.wait_uploaded()
    assert on_the_store(emulator, "report.bin") == payload
    assert "resuming upload of report.bin (300000 bytes) left by an earlier run" \
        in mount.log_text()


def wait_for(done, mount: Mount) -> None:
    """Until ``done()``; past ``HANG`` s, a failure showing the daemon's log."""
    wait_until(done, HANG, message=mount.log_text)


@pytest.mark.parametrize("how", ["refused", "unreachable"])
def test_sigterm_stops_after_the_stop_timeout_and_the_next_mount_uploads(foreground,
                                                                         emulator_factory,
                                                                         how):
    emulator = emulator_factory()
    # the upload waits for the stop itself: nothing reaches the store before the signal
    mount, daemon = foreground(emulator, "--stop-timeout", "2s", "--write-back-delay", "60s")
    payload = os.urandom(300_000)
    (mount.path / "report.bin").write_bytes(payload)  # closed: journaled
    block_uploads(emulator, how)

    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=HANG) == UPLOADS_LEFT
    assert not is_mounted(mount.path)
    the_last_line(mount, "the 2 s --stop-timeout passed")
    assert "SIGTERM: uploading what is pending for at most 2 s" in mount.log_text()
    if how == "refused":  # the upload was tried, and refused, before the deadline
        assert emulator.stats()["errors"]["tenant.upload"] >= 1

    unblock_uploads(emulator, how)
    remount_uploads(mount, emulator, payload)


def test_a_second_signal_stops_at_once(foreground, emulator_factory):
    emulator = emulator_factory()
    mount, daemon = foreground(emulator, "--stop-timeout", "10m", "--write-back-delay", "60s")
    payload = os.urandom(300_000)
    (mount.path / "report.bin").write_bytes(payload)
    block_uploads(emulator, "refused")

    daemon.send_signal(signal.SIGTERM)
    wait_for(lambda: emulator.stats()["errors"].get("tenant.upload"), mount)  # draining
    daemon.send_signal(signal.SIGINT)
    assert daemon.wait(timeout=HANG) == UPLOADS_LEFT  # not the ten minutes
    assert not is_mounted(mount.path)
    assert "SIGINT again: unmounting now, without waiting for the uploads" in mount.log_text()
    the_last_line(mount, "a second signal, SIGINT")

    unblock_uploads(emulator, "refused")
    remount_uploads(mount, emulator, payload)


def test_vagonfs_unmount_waits_at_most_the_stop_timeout_and_says_where_the_files_wait(
        foreground, emulator_factory):
    """``vagonfs unmount`` (without its own ``--timeout``) uploads for at most
    the ``--stop-timeout``, as a signal does, then unmounts; the command says
    what stays in the journal and exits with 75 too."""
    emulator = emulator_factory()
    mount, daemon = foreground(emulator, "--stop-timeout", "1s", "--write-back-delay", "60s")
    payload = os.urandom(300_000)
    (mount.path / "report.bin").write_bytes(payload)
    block_uploads(emulator, "refused")
    unmount = vagonfs("unmount", str(mount.path), check=False, timeout=HANG)
    assert unmount.returncode == UPLOADS_LEFT
    assert "unmounted with 1 file(s) not uploaded; they stay in the journal" \
        in unmount.stderr and "still mounted" not in unmount.stderr
    assert daemon.wait(timeout=HANG) == UPLOADS_LEFT
    assert not is_mounted(mount.path)
    assert emulator.stats()["errors"]["tenant.upload"] >= 1  # tried before the bound
    the_last_line(mount, "the 1 s --stop-timeout passed")

    unblock_uploads(emulator, "refused")
    remount_uploads(mount, emulator, payload)


def test_a_file_still_open_for_writing_when_signalled_is_kept(foreground, emulator_factory):
    """Written but never closed, so never journaled by a ``close``: the stop
    journals it before it gives up on the store."""
    emulator = emulator_factory()
    mount, daemon = foreground(emulator, "--stop-timeout", "2s")
    block_uploads(emulator, "refused")
    payload = os.urandom(300_000)
    fd = os.open(mount.path / "report.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, payload) == len(payload)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=HANG) == UPLOADS_LEFT
    finally:
        with contextlib.suppress(OSError):  # the daemon is gone: ENOTCONN
            os.close(fd)
    the_last_line(mount, "the 2 s --stop-timeout passed")

    unblock_uploads(emulator, "refused")
    remount_uploads(mount, emulator, payload)


def test_a_request_waiting_on_the_store_does_not_hold_the_stop(foreground, emulator_factory):
    """An ``fsync`` whose upload the store answers only after 20 s: the stop
    waits for it for one more second, then drops it; the caller gets an error
    and the journal keeps the file."""
    emulator = emulator_factory()
    mount, daemon = foreground(emulator, "--stop-timeout", "1s")
    emulator.set_faults({"rules": [{"route": "tenant.upload", "latency_ms": 20_000}]})
    payload = os.urandom(300_000)
    outcome: list[BaseException | None] = []

    def write_and_fsync() -> None:
        fd = os.open(mount.path / "report.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, payload)
            os.fsync(fd)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)

    writer = threading.Thread(target=write_and_fsync)
    writer.start()
    wait_for(lambda: any(u["state"] == "uploading" for u in mount.status()["uploads"]),
               mount)

    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=HANG) == UPLOADS_LEFT
    writer.join(timeout=HANG)
    assert outcome and isinstance(outcome[0], OSError), outcome
    assert outcome[0].errno in (errno.ECONNABORTED, errno.ENOTCONN)  # the daemon is gone
    assert "requests still waiting 1 s after the unmount were dropped" in mount.log_text()
    the_last_line(mount, "the 1 s --stop-timeout passed")

    emulator.clear_faults()
    remount_uploads(mount, emulator, payload)


def test_a_signal_with_nothing_pending_exits_0(foreground, emulator_factory):
    emulator = emulator_factory()
    mount, daemon = foreground(emulator, "--stop-timeout", "10m")
    (mount.path / "report.bin").write_bytes(b"uploaded\n")
    mount.wait_uploaded()
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=HANG) == 0
    assert not is_mounted(mount.path)
    assert "INFO vagonfs.mount: stopped\n" in mount.log_text()
    assert "not uploaded" not in mount.log_text()


def test_a_bad_stop_timeout_is_refused_before_mounting(tmp_path):
    result = vagonfs("mount", "emu:", str(tmp_path), "--stop-timeout", "soon", check=False)
    assert result.returncode == 2
    assert "argument --stop-timeout: not a duration: 'soon'" in result.stderr
