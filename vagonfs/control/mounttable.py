"""What the kernel's mount table says of a path: ours, someone else's, or nothing.

Read from ``/proc/self/mountinfo``, never by touching the mountpoint: on a
mount whose daemon is busy or gone, even an lstat of it would block or fail.
"""

from __future__ import annotations

import os
import re

VAGONFS_TYPE = "fuse.vagonfs"


def canonical(mountpoint: str | os.PathLike) -> str:
    """The mountpoint's absolute path with its parents' symlinks resolved.

    Never touches the mountpoint itself: on a mount whose daemon is busy or
    gone, even an lstat of it would block or fail.
    """
    path = os.path.abspath(mountpoint)
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _mount_at(mountpoint: str | os.PathLike) -> tuple[str, list[str]] | None:
    """The type and the superblock options (``user_id=1000``, ...) of what is
    mounted at ``mountpoint``, or None."""
    target = canonical(mountpoint)
    found = None
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            head, _, tail = line.partition(" - ")
            fields = head.split()
            if len(fields) > 4 and _unescape(fields[4]) == target:
                fs_type, _, options = tail.split()[:3]
                found = fs_type, options.split(",")  # the last mount on a path is the one seen
    return found


def mount_type(mountpoint: str | os.PathLike) -> str | None:
    """The file system type mounted at ``mountpoint`` (``fuse.vagonfs``), or None."""
    found = _mount_at(mountpoint)
    return found[0] if found else None


def vagonfs_owner(mountpoint: str | os.PathLike) -> int | None:
    """The uid that made the vagonfs mount at ``mountpoint`` (FUSE's
    ``user_id``: its daemon's), or None when no vagonfs mount is there."""
    found = _mount_at(mountpoint)
    if found is None or found[0] != VAGONFS_TYPE:
        return None
    return next((int(option[len("user_id="):]) for option in found[1]
                 if option.startswith("user_id=")), None)


def is_mounted(mountpoint: str | os.PathLike) -> bool:
    return mount_type(mountpoint) is not None


def is_stale(mountpoint: str) -> bool:
    """A vagonfs mount whose daemon no longer answers its control socket: the
    caller has just found the socket dead; the mount table says it is ours."""
    return mount_type(mountpoint) == VAGONFS_TYPE


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), field)
