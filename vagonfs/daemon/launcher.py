"""``vagonfs mount`` in the background, and the daemon's word that it is ready.

The command starts the daemon as a child and returns only once the child
writes one line on an inherited pipe: ``ready``, or why it failed, so a
mount that cannot start fails the command that asked for it, as ``mount``
users expect. The wait is a ``poll`` with a deadline, never a blocking read,
so ``--mount-timeout`` holds whatever the daemon does (alive and silent, or
writing half a line); past it the daemon is stopped and the command says so.
A daemon started by systemd (``Type=notify``) says the same with sd_notify
instead.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import vagonfs

log = logging.getLogger("vagonfs.mount")

STOP_WAIT = 10.0  # seconds a daemon stopped for being late has to exit before it is killed

READY_FD_ENV = "VAGONFS_READY_FD"


def launch_background(argv: list[str], log_file: Path, timeout: float) -> int:
    """Start the daemon (``argv`` plus ``--foreground``, its paths absolute)
    and wait at most ``timeout`` seconds until it is ready."""
    read_fd, write_fd = os.pipe()
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(log_file, "ab") as log_fh:
        child = subprocess.Popen(
            vagonfs.command(*argv, "--foreground"), cwd="/",
            stdin=subprocess.DEVNULL, stdout=log_fh, stderr=log_fh,
            pass_fds=(write_fd,), env={**os.environ, READY_FD_ENV: str(write_fd)},
            start_new_session=True)
    os.close(write_fd)
    try:
        message, complete = _read_line(read_fd, time.monotonic() + timeout)
    finally:
        os.close(read_fd)
    text = message.decode(errors="replace").strip()
    if complete and text == "ready":
        return 0
    if not complete and child.poll() is None:
        _stop(child)
        text = (f"the mount did not become ready in {timeout:g} s; stopped its daemon "
                f"(pid {child.pid})")
    print(f"vagonfs: {text or 'the mount daemon exited'} (log: {log_file})", file=sys.stderr)
    return 1


def _read_line(fd: int, deadline: float) -> tuple[bytes, bool]:
    """What the daemon wrote on ``fd`` up to its first newline, and whether
    that newline came before ``deadline`` (False too when the daemon closed
    the pipe without one: it died)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    message = b""
    while b"\n" not in message:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            return message, False
        chunk = os.read(fd, 4096)
        if not chunk:
            return message, False
        message += chunk
    return message.split(b"\n", 1)[0], True


def _stop(child: subprocess.Popen) -> None:
    """A late daemon: SIGTERM (it unmounts if it got that far), then SIGKILL."""
    child.terminate()
    try:
        child.wait(timeout=STOP_WAIT)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def tell_parent(message: str) -> None:
    """Say "ready" (or why not) to ``vagonfs mount``'s launcher, and to systemd."""
    if message == "ready":
        _notify_systemd(b"READY=1")
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is None:
        return
    try:  # one line: the launcher reads up to the first newline
        os.write(int(fd), " ".join(message.split()).encode() + b"\n")
        os.close(int(fd))
    except OSError:
        pass


def _notify_systemd(state: bytes) -> None:
    """sd_notify(3) for ``Type=notify`` units: one datagram to $NOTIFY_SOCKET."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state, address)
        except OSError as exc:
            log.warning("could not notify systemd: %s", exc)
