"""Bigger FUSE reads: the kernel's read-ahead for this mount.

The kernel sends a FUSE daemon reads no larger than the mount's read-ahead,
``/sys/class/bdi/<major>:<minor>/read_ahead_kb`` (128 KiB unless raised),
whatever size a program asks for, and each read is a round trip through the
daemon. With a pyfuse3 filesystem that does no work at all, ``dd bs=1M``
reads several times faster at 1024 KiB than at 128 KiB (more is no better,
and libfuse's buffer stops single reads at 1 MiB anyway). Only root may write that
file: a root mount (fstab, ``mount -t``, a system unit) sets it once FUSE is
up; a user's mount says once, in the log, how to get the same.

The kernel's answer to FUSE's INIT caps the read-ahead at what it offered
(its default): so the setting waits for a first request after INIT, a
``stat`` of the mountpoint from a worker thread (from the trio thread it would
wait for this very daemon to answer it), which also gives the device number.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from vagonfs.runtime import threads

log = logging.getLogger("vagonfs.mount")

BDI = Path("/sys/class/bdi")
UDEV_RULE = ('ACTION=="add", SUBSYSTEM=="bdi", KERNEL=="0:*", '
             'ATTR{read_ahead_kb}="1024"')


async def raise_read_ahead(mountpoint: str | os.PathLike, size: int) -> None:
    """Set the mount's read-ahead to ``size`` bytes (0: leave the kernel's)."""
    if size <= 0:
        return
    kib = max(4, size // 1024)
    st = await threads.run_sync(os.stat, mountpoint)
    setting = BDI / f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}" / "read_ahead_kb"
    try:
        await threads.run_sync(setting.write_text, f"{kib}\n")
    except PermissionError:
        log.info("FUSE reads stay at the kernel's %s KiB (only root may raise them). For "
                 "%d KiB reads, as root: echo %d > %s ; or for every FUSE mount, a udev "
                 "rule in /etc/udev/rules.d/99-fuse-readahead.rules: %s",
                 _current(setting), kib, kib, setting, UDEV_RULE)
    except OSError as exc:
        log.warning("read-ahead: cannot set %s: %s", setting, exc.strerror or exc)
    else:
        log.info("FUSE reads of up to %d KiB (%s)", min(kib, 1024), setting)


def _current(setting: Path) -> str:
    try:
        return setting.read_text().strip()
    except OSError:
        return "default"
