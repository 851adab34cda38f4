"""A mount's life: start, serve FUSE, stop cleanly.

``vagonfs mount`` without ``-f`` starts this same program again in the
background and returns once the child says the mount is ready (or prints why
it failed), as ``mount`` users expect. The daemon then runs, in one trio
nursery: pyfuse3's request loop, the write-back queue, the block fetches and
the control socket. Every way a mount ends gives the uploads pending at
most ``--stop-timeout``, whatever the store does (gone, hanging, refusing),
then unmounts anyway: a SIGINT/SIGTERM/SIGHUP, ``vagonfs unmount`` (unless
its own ``--timeout`` says to stay mounted past it) and an unmount from
outside (``umount``, ``fusermount3 -u``, lazy or not). A service manager
kills what does not stop in time (systemd after 90 s by default), and a
store that cannot be reached would otherwise keep the daemon retrying for
ever; a second signal unmounts at once. Whatever is not uploaded when the
daemon exits stays in the journal, and the next mount with the same cache
dir uploads it; the daemon says so in one line and exits with
``EXIT_UPLOADS_LEFT``. ``vagonfs sync`` uploads what is pending without the
write-back delay and answers once the store confirmed it.

The daemon's pieces are its package's modules: ``launcher`` (background
start, the ready handshake, sd_notify; the command's end of it too),
``store_check`` (the mount-time question to the store), ``control_server``
(the daemon's end of ``vagonfs.control.channel``), ``fuse_ops`` (the
pyfuse3 adapter), ``kernel_pages`` and the kernel's read-ahead setting. What
the commands read without the daemon (the mount table, the control channel,
the status report's text) is in ``vagonfs.control``, which loads neither
trio nor pyfuse3 (an import-linter contract checks it).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import re
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import pyfuse3
import trio

from vagonfs.cache.reader import MAX_INFLIGHT_BYTES
from vagonfs.cache.upload_states import State
from vagonfs.config import MountOptions
from vagonfs.control.channel import EXIT_UPLOADS_LEFT
from vagonfs.control.mounttable import is_mounted
from vagonfs.core.fs import Filesystem, FsOptions
from vagonfs.core.symlinks import LinkStore
from vagonfs.daemon import kernel_read_ahead, status_report
from vagonfs.daemon.control_server import ControlServer, claim
from vagonfs.daemon.fuse_ops import FuseOperations
from vagonfs.daemon.kernel_pages import KernelPages
from vagonfs.daemon.launcher import tell_parent
from vagonfs.daemon.store_check import check_store
from vagonfs.errors import ConfigError, FsError
from vagonfs.remote.base import resolve
from vagonfs.remote.factory import open_store
from vagonfs.runtime import supervise

log = logging.getLogger("vagonfs.mount")

GIL_SWITCH_INTERVAL = 0.0005  # seconds; see run()
FUSE_GRACE = 1.0  # seconds a signalled daemon gives requests in flight once it unmounts


def cache_root(options: MountOptions) -> Path:
    """The remote's own area in the cache dir: spools, journal, blocks, attrs."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", options.remote.name)
    return options.cache_dir / safe


def run(options: MountOptions) -> int:
    """Serve the mount in this process until it is unmounted.

    The daemon works from ``/`` (its paths are absolute), so it keeps no
    folder busy: the one it was started from can be unmounted or removed.
    """
    os.chdir("/")
    # the trio thread answers FUSE while worker threads receive bodies and
    # write the cache: with Python's default 5 ms switch interval a thread
    # waiting for the GIL stalls a whole block's worth of data; a tenth of it
    # made cold and warm reads clearly faster, measured back to back
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    try:
        return trio.run(_serve, options)
    except (ConfigError, FsError, OSError) as exc:
        log.error("mount failed: %s", exc)
        tell_parent(f"cannot mount {options.remote.name}: {exc}")
        return 1


def _check_mountpoint(options: MountOptions) -> None:
    mountpoint = str(options.mountpoint)
    if is_mounted(mountpoint):
        raise ConfigError(f"{mountpoint} is already a mount point")
    if not os.path.isdir(mountpoint):
        raise ConfigError(f"{mountpoint} is not a folder")
    if not options.allow_non_empty and _holds_files(mountpoint):
        raise ConfigError(f"{mountpoint} is not empty, and a mount would hide what it "
                          "holds; use an empty folder, or --allow-non-empty "
                          "(-o allow_non_empty) to mount over it anyway")


def _holds_files(folder: str) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is not None


def _lock_cache(root: Path):
    """One mount per remote and cache dir: the journal and spools are its alone."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(root.parent, 0o700)
    os.chmod(root, 0o700)
    handle = open(root / "lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ConfigError(f"another vagonfs mount already uses {root}; unmount it or give "
                          "this one its own --cache-dir") from None
    return handle


def _fs_options(options: MountOptions) -> FsOptions:
    return FsOptions(
        uid=options.uid, gid=options.gid, umask=options.umask,
        read_only=options.read_only, attr_timeout=options.attr_timeout,
        dir_cache_time=options.dir_cache_time, write_back_delay=options.write_back_delay,
        cache_max_size=options.cache_max_size, list_ahead=options.list_ahead)


def _fuse_options(options: MountOptions) -> set[str]:
    fuse_options = set(pyfuse3.default_options) | {
        f"fsname=vagonfs:{options.remote.name}", "subtype=vagonfs", "noatime"}
    if options.allow_other:
        fuse_options.add("allow_other")
    if options.read_only:
        fuse_options.add("ro")
    return fuse_options


async def _serve(options: MountOptions) -> int:
    _check_mountpoint(options)
    control_socket = claim(options.mountpoint)
    if options.delay_connect:
        log.info("not checking %s before mounting (--delay-connect)", options.remote.url)
    else:
        await check_store(options.remote)
    root = cache_root(options)
    lock = _lock_cache(root)
    async with open_store(options.remote) as (store, stats):
        if options.links:
            store = LinkStore(store)
        root_entry = await resolve(store, options.subpath)
        if not root_entry.is_dir:
            raise ConfigError(f"{options.subpath} is a file; mount a folder")
        async with trio.open_nursery() as nursery:
            # store-ahead's queue to the kernel is bounded as read-ahead is
            pages = KernelPages(nursery, MAX_INFLIGHT_BYTES) if options.store_ahead else None
            fs = Filesystem(store, root_entry, _fs_options(options), root, nursery, pages)
            await fs.start()
            if not options.delay_connect:
                await _ask_capacity(fs)
            daemon = _Daemon(fs, options, stats, pages)
            await _serve_fuse(fs, daemon, options, control_socket, nursery)
    lock.close()
    left = [p for p in fs.uploads.all() if p.state is not State.LOST]  # lost: said once
    if not left:
        log.info("stopped")
        return 0
    why = f" ({daemon.cut_short})" if daemon.cut_short else ""
    log.warning("stopped with %d file(s) not uploaded%s; they stay in the journal in %s "
                "and the next mount of %s with this cache dir uploads them",
                len(left), why, root / "journal", options.remote.name)
    return EXIT_UPLOADS_LEFT


async def _ask_capacity(fs: Filesystem) -> None:
    """The capacity, asked before the mount is offered: the first ``df`` or
    ``find`` then waits for nothing, and the connection it opened is there
    for the first lookups (over a link of 40 ms, a round trip less before
    the first bytes of a file). A store that will not say is no reason not
    to mount."""
    try:
        await fs.statfs()
    except FsError as exc:
        log.warning("the store's capacity is not known yet (%s); df will ask again", exc)


async def _serve_fuse(fs: Filesystem, daemon: _Daemon, options: MountOptions,
                      control_socket: socket.socket,
                      nursery: trio.Nursery) -> None:
    """Mount, answer FUSE until unmounted, then finish and close."""
    mountpoint = str(options.mountpoint)
    control = ControlServer(control_socket, daemon.status, daemon.stop, daemon.sync)
    # before init: once mounted, even a stat of the mountpoint waits for
    # pyfuse3.main() to answer, and this thread would wait on itself
    await nursery.start(control.serve)
    operations = FuseOperations(fs, options.xattrs, daemon.kernel_requests)
    daemon.operations = operations
    pyfuse3.init(operations, mountpoint, _fuse_options(options))
    supervise.spawn(nursery, "read-ahead", kernel_read_ahead.raise_read_ahead, mountpoint,
                    options.read_ahead)
    log.info("mounted %s:%s on %s", options.remote.name, options.subpath, mountpoint)
    nursery.start_soon(daemon.on_signals, nursery)
    tell_parent("ready")
    unmounted = False
    try:
        daemon.serving = True
        with daemon.fuse_scope:
            await pyfuse3.main()
        if daemon.fuse_scope.cancelled_caught:
            log.info("requests still waiting %g s after the unmount were dropped; their "
                     "callers get an error", FUSE_GRACE)
        unmounted = not daemon.stopping  # umount or fusermount3 -u from outside
    finally:
        daemon.serving = False
        with trio.CancelScope(shield=True):
            if unmounted:
                timeout = daemon.bound_by_stop_timeout()
                log.info("unmounted from outside; uploading what is pending for at most "
                         "%g s", timeout)
                await daemon.drain()
            if daemon.pages is not None:  # unmounted from outside, or a second signal
                with trio.move_on_after(FUSE_GRACE):  # its reads are answered no more
                    await daemon.pages.stop()
            pyfuse3.close(unmount=not unmounted)
            fs.close()
            nursery.cancel_scope.cancel()


class _Daemon:
    """How one mount stops: after its uploads or ``--stop-timeout``, whichever
    comes first (``vagonfs unmount --timeout`` instead stays mounted when its
    own timeout comes first)."""

    def __init__(self, fs: Filesystem, options: MountOptions, stats,
                 pages: KernelPages | None):
        self.fs = fs
        self.options = options
        self.stats = stats
        self.pages = pages
        self.operations: FuseOperations | None = None  # once pyfuse3 has them
        self.stopping = False  # this daemon ended the FUSE loop (not fusermount -u)
        self.serving = False  # pyfuse3.main() runs: only then may it be terminated
        self.fuse_scope = trio.CancelScope()  # around pyfuse3.main(), for a signal's bound
        self.cut_short = ""  # why a drain gave up with uploads left, for the last log line
        self.started = time.time()
        self.kernel_requests: Counter[str] = Counter()  # counted by FuseOperations
        self._deadline = math.inf  # the stop's (a signal, an unmount): no drain waits past it
        self._why = ""  # what set that deadline
        self._signalled = False  # a first signal came: the next one unmounts at once
        self._drains: set[trio.CancelScope] = set()

    async def stop(self, timeout: float | None) -> bool:
        """``vagonfs unmount``: upload everything, then end the FUSE loop.
        With ``timeout``, False and still mounted if it came first; without,
        the ``--stop-timeout`` bounds the uploads and the mount ends all the
        same (what is left stays in the journal)."""
        if timeout is None:
            self.bound_by_stop_timeout()
        if not await self.drain(timeout) and timeout is not None:
            return False
        await self._end_fuse()
        return True

    async def sync(self, timeout: float | None) -> list[dict]:
        """``vagonfs sync``: upload what is pending now; what is not uploaded
        once the store answered for each, or ``timeout`` passed."""
        left = await self.fs.uploads.upload_all(timeout)
        return [status_report.upload(self.fs, p) for p in left]

    def bound_by_stop_timeout(self) -> float:
        """No drain waits past ``--stop-timeout`` from now (nor past a bound
        set before); the timeout."""
        timeout = self.options.stop_timeout
        if self._deadline == math.inf:
            self._hurry(trio.current_time() + timeout,
                        f"the {timeout:g} s --stop-timeout passed")
        return timeout

    async def drain(self, timeout: float | None = None) -> bool:
        """Upload everything; False when ``timeout``, or a signal's deadline,
        came first."""
        with trio.CancelScope(deadline=self._deadline) as scope:
            self._drains.add(scope)
            try:
                return await self.fs.uploads.drain(timeout)
            finally:
                self._drains.discard(scope)
        self.cut_short = self._why
        return False

    async def on_signals(self, nursery: trio.Nursery) -> None:
        """SIGHUP too: a foreground mount whose terminal closes still uploads
        and removes its control socket. The stop runs beside this loop, so a
        second signal still reaches it."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self._signalled:
                    self._signalled = True
                    timeout = self.bound_by_stop_timeout()
                    log.info("%s: uploading what is pending for at most %g s, then unmounting "
                             "(a second signal unmounts at once)", name, timeout)
                    nursery.start_soon(self._stop_on_signal)
                else:
                    log.info("%s again: unmounting now, without waiting for the uploads", name)
                    self._hurry(trio.current_time(), f"a second signal, {name}")
                    if self.stopping:  # requests still in flight: not waited for either
                        self.fuse_scope.cancel()

    def _hurry(self, deadline: float, why: str) -> None:
        """No drain, running or to come, waits past ``deadline``."""
        self._deadline, self._why = deadline, why
        for scope in self._drains:
            scope.deadline = min(scope.deadline, deadline)

    async def _stop_on_signal(self) -> None:
        await self.drain()
        await self._end_fuse()

    async def _end_fuse(self) -> None:
        """Store-ahead ends first, while FUSE reads are still answered: a store
        can wait for a page the kernel is reading through this daemon."""
        if not self.serving or self.stopping:
            return
        self.stopping = True
        if self.pages is not None:
            await self.pages.stop()
        if self.serving:
            pyfuse3.terminate()
            # a request waiting on the store (an fsync, a read) is not waited for long
            self.fuse_scope.deadline = trio.current_time() + FUSE_GRACE

    def status(self) -> dict:
        kernel = {"fuse_read_bytes": self.operations.read_bytes if self.operations else 0}
        if self.pages is not None:
            kernel.update(self.pages.counts, page_cache_pending_bytes=self.pages.pending_bytes)
        return status_report.report(self.fs, self.options, self.stats, self.started,
                                    cache_root(self.options), self.kernel_requests, kernel)
