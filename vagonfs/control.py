"""How ``vagonfs unmount`` and ``vagonfs status`` talk to a running mount.

Each mount daemon listens on a Unix socket in a private runtime dir, named by
a hash of the mountpoint's real path, so the commands find it from the
mountpoint alone. Requests and replies are JSON lines; ``unmount`` streams
progress lines until the uploads are done. The socket lives in a 0700 dir, so
only the mounting user can talk to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base) / "vagonfs" if base else Path(f"/tmp/vagonfs-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def canonical(mountpoint: str | os.PathLike) -> str:
    """The mountpoint's absolute path with its parents' symlinks resolved.

    Never touches the mountpoint itself: on a mount whose daemon is busy or
    gone, even an lstat of it would block or fail.
    """
    path = os.path.abspath(mountpoint)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def socket_path(mountpoint: str | os.PathLike) -> Path:
    digest = hashlib.sha256(canonical(mountpoint).encode()).hexdigest()[:20]
    return runtime_dir() / f"{digest}.sock"


def request(mountpoint: str | os.PathLike, command: dict, timeout: float | None = 10.0
            ) -> Iterator[dict]:
    """Send one command to the mount at ``mountpoint``; yield its reply lines.

    Raises ``ConnectionError`` (FileNotFoundError, ConnectionRefusedError) when
    no live daemon serves that mountpoint.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path(mountpoint)))
        sock.sendall(json.dumps(command).encode() + b"\n")
        with sock.makefile("rb") as replies:
            for line in replies:
                yield json.loads(line)
