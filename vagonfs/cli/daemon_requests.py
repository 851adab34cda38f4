"""``vagonfs status``, ``sync`` and ``unmount``: requests to a running mount.

Each is a request over the mount's control socket, answered by its daemon,
plus a look at the kernel's mount table when no daemon answers. They import
only the control side, never the daemon's libraries: ``status --watch`` runs
in a loop, and a user without FUSE can still ask a mount's state
(tests/cli/test_light_commands.py runs them and checks what they loaded).
``sync`` and ``unmount`` name each file the store does not have the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from vagonfs.control.channel import EXIT_UPLOADS_LEFT


def unmount(args: argparse.Namespace) -> int:
    from vagonfs.control import channel, mounttable

    try:
        replies = channel.request(args.mountpoint, {"cmd": "unmount", "timeout": args.timeout},
                                  timeout=None)
        tty = sys.stderr.isatty()
        for reply in replies:
            if "progress" in reply and tty:
                pending = reply["progress"]
                done = sum(u["progress"] for u in pending)
                total = sum(u["size"] for u in pending)
                print(f"\ruploading {len(pending)} file(s): {done >> 20}/{total >> 20} MiB",
                      end="", file=sys.stderr, flush=True)
            if "done" in reply:
                if tty:
                    print(file=sys.stderr)
                if not reply["done"] and not _unmounted_soon(args.mountpoint):
                    print(f"vagonfs: uploads still pending after {args.timeout} s; "
                          "still mounted", file=sys.stderr)
                    return 1
                for upload in reply["uploads"]:
                    if upload["state"] in ("failed", "lost"):
                        print(f"vagonfs: {_not_uploaded(args.mountpoint, upload)}",
                              file=sys.stderr)
                left = [u for u in reply["uploads"] if u["state"] not in ("failed", "lost")]
                if left or not reply["done"]:  # the stop timeout, or a signal, came first
                    print(f"vagonfs: unmounted with {len(left)} file(s) not uploaded; they "
                          "stay in the journal, and the next mount of this remote with the "
                          "same cache dir uploads them", file=sys.stderr)
                    _unmounted_soon(args.mountpoint, 10)
                    return EXIT_UPLOADS_LEFT
    except PermissionError as exc:
        print(f"vagonfs: {exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ConnectionRefusedError):
        if mounttable.is_stale(args.mountpoint):
            print(f"vagonfs: {args.mountpoint}: its daemon is gone (stale mount); "
                  "cleaning up with fusermount3 -u", file=sys.stderr)
            os.execvp("fusermount3", ["fusermount3", "-u", "-z", args.mountpoint])
        print(f"vagonfs: no vagonfs mount at {args.mountpoint}", file=sys.stderr)
        return 1
    _unmounted_soon(args.mountpoint, 10)
    return 0


def sync(args: argparse.Namespace) -> int:
    """One request; the daemon answers once the store has, or the timeout passed."""
    from vagonfs.control import channel

    try:
        reply = next(channel.request(args.mountpoint,
                                     {"cmd": "sync", "timeout": args.timeout}, timeout=None),
                     None)
    except (PermissionError, FileNotFoundError, ConnectionRefusedError) as exc:
        return _no_daemon(args.mountpoint, exc)
    if reply is None:
        print(f"vagonfs: {args.mountpoint}: the mount stopped before the store confirmed "
              "its uploads", file=sys.stderr)
        return 1
    for upload in reply["left"]:
        print(f"vagonfs: {_not_uploaded(args.mountpoint, upload, args.timeout)}",
              file=sys.stderr)
    return 0 if reply["done"] else 1


def _no_daemon(mountpoint: str, why: BaseException | None = None) -> int:
    """No daemon answers at ``mountpoint``: say whether one died there (or,
    for a daemon of another user's, that it is not ours to ask); status 1."""
    from vagonfs.control import mounttable

    if isinstance(why, PermissionError):
        print(f"vagonfs: {why}", file=sys.stderr)
        return 1
    print(f"vagonfs: {mountpoint}: " + (
        "stale mount, its daemon is gone (vagonfs unmount cleans it up)"
        if mounttable.is_stale(mountpoint) else "not a vagonfs mount"), file=sys.stderr)
    return 1


def _not_uploaded(mountpoint: str, upload: dict, timeout: float | None = None) -> str:
    """Which file the store does not have, and why, for ``sync`` and ``unmount``."""
    path = os.path.join(mountpoint, upload["path"])
    if upload["state"] == "failed":
        return (f"not uploaded: {path}: refused by the store ({upload['error']}); "
                f"kept in {upload['spool']}")
    if upload["state"] == "lost":
        return f"not uploaded: {path}: {upload['error']}"
    last = f"; last error: {upload['error']}" if upload["error"] else ""
    within = f" within {timeout:g} s" if timeout is not None else ""
    return f"not uploaded: {path}: not confirmed by the store{within} ({upload['state']}{last})"


def _unmounted_soon(mountpoint: str, seconds: float = 3) -> bool:
    """Whether the mount is gone within ``seconds``."""
    from vagonfs.control import mounttable

    deadline = time.monotonic() + seconds
    while mounttable.is_mounted(mountpoint):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def status(args: argparse.Namespace) -> int:
    from vagonfs.control import channel
    from vagonfs.control import status as status_report

    while True:
        try:
            status = next(channel.request(args.mountpoint, {"cmd": "status"}))
        except (PermissionError, FileNotFoundError, ConnectionRefusedError,
                StopIteration) as exc:
            return _no_daemon(args.mountpoint, exc)
        text = json.dumps(status, indent=2) if args.json else status_report.text(status)
        if not args.watch:
            print(text)
            return 0
        # on a terminal the screen is redrawn in place; elsewhere one report a second
        print(("\033[H\033[J" if sys.stdout.isatty() else "") + text, flush=True)
        time.sleep(1)

