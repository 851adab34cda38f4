"""What ``vagonfs status`` shows of a running mount: one JSON object, and its text.

The daemon builds the object (``report``) and sends it as it is over the
control socket; the command prints it (``text``, or as it is with
``--json``). Both ends are here because its keys are the contract between
them. Loaded by the command too, so it imports nothing of the daemon's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vagonfs.cache.writeback import Pending
    from vagonfs.config import MountOptions
    from vagonfs.core.fs import Filesystem


def upload(fs: Filesystem, pending: Pending) -> dict:
    """One file not on the store yet, as ``status`` and ``sync`` show it."""
    return {
        "path": fs.inodes.path(pending.node), "size": pending.spool.size,
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
    uploads = [upload(fs, p) for p in fs.writeback.all()]
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


# why an upload in each state has not reached the store yet
_WAITING = {"open": "still open by a program; uploads once closed",
            "queued": "waiting for the write-back delay or a free upload slot",
            "uploading": "uploading",
            "failed": "refused by the store",
            "lost": "its local copy is gone or unreadable; never uploaded, not retried"}


def text(status: dict) -> str:
    """What a user asks first (is everything uploaded? if not, what and why),
    then the mount itself, its cache and its requests."""
    waiting = [u for u in status["uploads"] if u["state"] != "synced"]
    lines = [f"not uploaded yet: {len(waiting)} file(s)" if waiting
             else "everything is uploaded"]
    for u in waiting:
        percent = 100 * u["progress"] // u["size"] if u["size"] else 100
        why = _WAITING.get(u["state"], u["state"])
        if u["state"] == "queued" and u["error"]:
            why = f"to be retried (attempt {u['attempts'] + 1})"
        path = os.path.join(status["mountpoint"], u["path"])
        line = f"  {path}: {why}, {u['progress']}/{u['size']} bytes ({percent}%)"
        if u["error"]:
            line += f"; last error: {u['error']}"
        if u["spool"]:
            line += f"; its content is kept in {u['spool']}"
        lines.append(line)
    lines += conflict_lines(status)
    cache = status["cache"]
    lines += ["", f"{status['remote']}:{status['subpath']} ({status['type']}) on "
                  f"{status['mountpoint']}, pid {status['pid']}",
              f"cache: {cache['used'] >> 20} MiB of {cache['max'] >> 20} MiB in "
              f"{cache['dir']}"
              + ("; the cache disk is full: keeping only what fits" if cache.get("disk_full")
                 else "")]
    lines += [f"{name}: {value}" for name, value in sorted(status["requests"].items())]
    lines.append("kernel requests: " + (", ".join(
        f"{name} {count}" for name, count in sorted(status["kernel_requests"].items()))
        or "none"))
    lines += [f"{name}: {value}" for name, value in sorted(status.get("kernel", {}).items())]
    return "\n".join(lines)


def conflict_lines(status: dict) -> list[str]:
    """The conflicts kept since the mount started (``vagonfs.core.conflicts``):
    a version changed elsewhere that this mount's upload did not write over."""
    conflicts = status.get("conflicts") or []
    if not conflicts:
        return []
    lines = [f"conflicts kept since the mount started: {len(conflicts)} (both versions "
             "are on the store)"]
    for conflict in conflicts:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(conflict["at"]))
        lines.append(f"  {os.path.join(status['mountpoint'], conflict['path'])} changed "
                     f"elsewhere; this mount's version kept as "
                     f"{os.path.join(status['mountpoint'], conflict['kept_as'])} ({when})")
    return lines
