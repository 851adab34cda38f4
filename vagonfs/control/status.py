"""What ``vagonfs status`` prints of a running mount: the text of its report.

The daemon builds the report (``vagonfs.daemon.status_report``) and sends it
as one JSON object over the control socket; the command prints it here as
text, or as it is with ``--json``. Its keys are the contract between the two
modules. Loaded by the command, so it imports nothing of the daemon's.
"""

from __future__ import annotations

import os
import time


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
