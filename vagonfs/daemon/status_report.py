"""What ``vagonfs status`` shows of a running mount, as the daemon builds it.

One JSON object, sent as it is over the control socket; the command prints it
(``vagonfs.control.status``, which reads these keys: change both together).
Apart from the text so the command loads nothing of the daemon's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vagonfs.cache.upload_states import Pending
    from vagonfs.config import MountOptions
    from vagonfs.core.fs import Filesystem
    from vagonfs.core.inodes import Node


def upload(fs: Filesystem, pending: Pending[Node]) -> dict:
    """One file not on the store yet, as ``status`` and ``sync`` show it."""
    return {
        "path": fs.inodes.path(pending.key), "size": pending.spool.size,
        "state": pending.state.value, "progress": pending.progress,
        "attempts": pending.attempts, "error": str(pending.error) if pending.error else None,
        "spool": str(pending.spool.path) if pending.state.value == "failed" else None,
    }


def report(fs: Filesystem, options: MountOptions, stats, started: float,
           cache_dir: Path, kernel_requests: Mapping[str, int],
           kernel: dict[str, int]) -> dict:
    """``kernel_requests``: the kernel's requests by operation (its FUSE reads
    are ``read``); ``kernel``: the bytes FUSE reads were answered with
    (``fuse_read_bytes``) and what store-ahead did (``page_cache_*``), counted
    since the mount, with the bytes it has yet to hand over
    (``page_cache_pending_bytes``)."""
    uploads = [upload(fs, p) for p in fs.uploads.all()]
    return {
        "remote": options.remote.name, "type": options.remote.type,
        "subpath": options.subpath, "mountpoint": str(options.mountpoint),
        "pid": os.getpid(), "since": started, "uploads": uploads,
        "conflicts": [{"path": c.path, "kept_as": c.kept_as, "at": c.at}
                      for c in fs.writes.conflicts.kept],
        "cache": {"used": fs.blocks.used_bytes, "max": fs.blocks.max_bytes,
                  "dir": str(cache_dir), "disk_full": fs.blocks.disk_full},
        "requests": stats.snapshot() if stats is not None else {},
        "kernel_requests": dict(kernel_requests),
        "kernel": kernel,
    }
