"""How ``vagonfs unmount`` and ``vagonfs status`` talk to a running mount.

Each mount daemon listens on a Unix socket in Linux's abstract namespace,
named from the mount's owner (its uid) and the mountpoint's real path alone,
so a command finds it from the mountpoint whatever its environment: a mount
made over ssh, su, cron or a system unit (no ``XDG_RUNTIME_DIR``, another
``/tmp``) is found from a desktop terminal, and by root. An abstract socket
is no file: nothing to clean up after a killed daemon, no directory whose
location depends on the environment, none that logout or ``/tmp`` cleaning
removes. Having no file permissions, both ends check the other's
credentials instead: the daemon answers only its own uid and root, and a
command talks only to a process of the uid the kernel's mount table names
as the mount's owner (``user_id``), so a socket of another user's never
passes for the daemon. Requests and replies are JSON lines; ``unmount``
streams progress lines until the uploads are done.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
from collections.abc import Iterator

# the daemon's exit status, and so ``unmount``'s, when uploads are left in
# the journal: sysexits.h's EX_TEMPFAIL ("the user is invited to retry the
# operation later"), as the next mount finishes them; not 1, which says the
# mount itself failed
EXIT_UPLOADS_LEFT = 75
from typing import Protocol

from vagonfs.control import mounttable

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def address(mountpoint: str | os.PathLike, owner: int) -> bytes:
    """The abstract socket address of the mount of ``owner`` at ``mountpoint``."""
    digest = hashlib.sha256(mounttable.canonical(mountpoint).encode()).hexdigest()[:20]
    return f"\0vagonfs/{owner}/{digest}".encode()


class _Connected(Protocol):
    """A connected socket: the stdlib's (the commands') or trio's (the daemon's)."""

    def getsockopt(self, level: int, optname: int, buflen: int, /) -> bytes: ...


def peer_credentials(sock: _Connected) -> tuple[int, int]:
    """The pid and uid of the process at the other end of a connected Unix socket."""
    pid, uid, _ = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return pid, uid


def request(mountpoint: str | os.PathLike, command: dict, timeout: float | None = 10.0
            ) -> Iterator[dict]:
    """Send one command to the mount at ``mountpoint``; yield its reply lines.

    With no vagonfs mount there, the daemon asked is this user's (one
    unmounted from outside goes on finishing its uploads, and answers).
    Raises ConnectionRefusedError when no daemon answers (a stale mount, or
    none), PermissionError when the process answering is not the mount's
    owner's.
    """
    owner = mounttable.vagonfs_owner(mountpoint)
    if owner is None:
        owner = os.getuid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address(mountpoint, owner))
        pid, uid = peer_credentials(sock)
        if uid != owner:
            raise PermissionError(f"the control socket of {mountpoint} is held by process "
                                  f"{pid} of uid {uid}, not by the mount's owner (uid {owner})")
        sock.sendall(json.dumps(command).encode() + b"\n")
        with sock.makefile("rb") as replies:
            for line in replies:
                yield json.loads(line)
