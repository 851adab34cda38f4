"""A mount's life: start, serve FUSE, answer the control socket, stop cleanly.

``vagonfs mount`` without ``-f`` starts this same program again in the
background and returns once the child says the mount is ready (or prints why
it failed), as ``mount`` users expect. The daemon then runs, in one trio
nursery: pyfuse3's request loop, the write-back queue, the block fetches and
the control socket. A SIGINT/SIGTERM or ``vagonfs unmount`` uploads what is
pending, then unmounts. A plain ``fusermount3 -u`` ends the FUSE session; the
daemon still finishes its uploads before it exits, and whatever a kill
interrupts stays in the journal for the next mount.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyfuse3
import trio

from vagonfs import control
from vagonfs.config import MountOptions
from vagonfs.core.fs import Filesystem, FsOptions
from vagonfs.errors import ConfigError, StoreError
from vagonfs.fuse_ops import FuseOperations
from vagonfs.remote.base import resolve
from vagonfs.remote.factory import open_store

log = logging.getLogger("vagonfs.mount")

READY_FD_ENV = "VAGONFS_READY_FD"


def mount_type(mountpoint: str | os.PathLike) -> str | None:
    """The file system type mounted at ``mountpoint`` (``fuse.vagonfs``), or None."""
    target = control.canonical(mountpoint)
    found = None
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields, _, tail = line.partition(" - ")
            fields = fields.split()
            if len(fields) > 4 and _unescape(fields[4]) == target:
                found = tail.split()[0]  # the last mount on a path is the one seen
    return found


def is_mounted(mountpoint: str | os.PathLike) -> bool:
    return mount_type(mountpoint) is not None


def _unescape(field: str) -> str:
    return re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), field)


# -- the launcher -----------------------------------------------------------

def launch_background(argv: list[str], log_file: Path, timeout: float = 60.0) -> int:
    """Start the daemon (``argv`` plus ``--foreground``) and wait until it is ready."""
    read_fd, write_fd = os.pipe()
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(log_file, "ab") as log_fh:
        child = subprocess.Popen(
            [sys.executable, "-m", "vagonfs", *argv, "--foreground"],
            stdin=subprocess.DEVNULL, stdout=log_fh, stderr=log_fh,
            pass_fds=(write_fd,), env={**os.environ, READY_FD_ENV: str(write_fd)},
            start_new_session=True)
    os.close(write_fd)
    deadline = time.monotonic() + timeout
    message = b""
    with os.fdopen(read_fd, "rb") as ready:
        while time.monotonic() < deadline and b"\n" not in message:
            chunk = ready.readline()
            if not chunk:
                break
            message += chunk
    text = message.decode(errors="replace").strip()
    if text == "ready":
        return 0
    if child.poll() is None and not text:
        child.terminate()
        text = f"the mount did not become ready in {timeout:.0f} s"
    print(f"vagonfs: {text or 'the mount daemon exited'} (log: {log_file})", file=sys.stderr)
    return 1


def _tell_parent(message: str) -> None:
    """Say "ready" (or why not) to ``vagonfs mount``'s launcher, and to systemd."""
    if message == "ready":
        _notify_systemd(b"READY=1")
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is None:
        return
    try:
        os.write(int(fd), message.encode() + b"\n")
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


# -- the daemon -------------------------------------------------------------

def cache_root(options: MountOptions) -> Path:
    """The remote's own area in the cache dir: spools, journal, blocks, attrs."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", options.remote.name)
    return options.cache_dir / safe


def run(options: MountOptions) -> int:
    """Serve the mount in this process until it is unmounted."""
    try:
        return trio.run(_serve, options)
    except (ConfigError, StoreError, OSError) as exc:
        log.error("mount failed: %s", exc)
        _tell_parent(f"cannot mount {options.remote.name}: {exc}")
        return 1


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


async def _serve(options: MountOptions) -> int:
    mountpoint = str(options.mountpoint)
    if is_mounted(mountpoint):
        raise ConfigError(f"{mountpoint} is already a mount point")
    if not os.path.isdir(mountpoint):
        raise ConfigError(f"{mountpoint} is not a folder")
    root = cache_root(options)
    lock = _lock_cache(root)
    fs_options = FsOptions(
        uid=options.uid, gid=options.gid, umask=options.umask,
        read_only=options.read_only, attr_timeout=options.attr_timeout,
        dir_cache_time=options.dir_cache_time, write_back_delay=options.write_back_delay,
        cache_max_size=options.cache_max_size)
    fuse_options = set(pyfuse3.default_options) | {
        f"fsname=vagonfs:{options.remote.name}", "subtype=vagonfs", "noatime"}
    if options.allow_other:
        fuse_options.add("allow_other")
    if options.read_only:
        fuse_options.add("ro")

    async with open_store(options.remote) as (store, stats):
        root_entry = await resolve(store, options.subpath)
        if not root_entry.is_dir:
            raise ConfigError(f"{options.subpath} is a file; mount a folder")
        async with trio.open_nursery() as nursery:
            fs = Filesystem(store, root_entry, fs_options, root, nursery)
            await fs.start()
            daemon = _Daemon(fs, options, stats)
            # before init: once mounted, even a stat of the mountpoint waits for
            # pyfuse3.main() to answer, and this thread would wait on itself
            await nursery.start(daemon.serve_control)
            pyfuse3.init(FuseOperations(fs, options.attr_timeout, options.xattrs), mountpoint, fuse_options)
            log.info("mounted %s:%s on %s", options.remote.name, options.subpath, mountpoint)
            nursery.start_soon(daemon.on_signals)
            _tell_parent("ready")
            unmounted = False
            try:
                await pyfuse3.main()
                unmounted = not daemon.stopping  # fusermount -u from outside
            finally:
                with trio.CancelScope(shield=True):
                    if unmounted:
                        log.info("unmounted from outside; finishing pending uploads")
                        await fs.writeback.drain()
                    pyfuse3.close(unmount=not unmounted)
                    fs.close()
                    nursery.cancel_scope.cancel()
    lock.close()
    log.info("stopped")
    return 0


class _Daemon:
    """Serves the control socket and signals for one mount."""

    def __init__(self, fs: Filesystem, options: MountOptions, stats):
        self.fs = fs
        self.options = options
        self.stats = stats
        self.stopping = False
        self.started = time.time()

    async def stop(self, timeout: float | None) -> bool:
        """Upload everything, then end the FUSE loop; False if the timeout came first."""
        if not await self.fs.writeback.drain(timeout):
            return False
        self.stopping = True
        pyfuse3.terminate()
        return True

    async def on_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("%s: uploading what is pending, then unmounting",
                         signal.Signals(signum).name)
                await self.stop(None)

    async def serve_control(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        path = control.socket_path(self.options.mountpoint)
        path.unlink(missing_ok=True)
        listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen()
        listeners = [trio.SocketListener(listener)]
        try:
            await trio.serve_listeners(self._client, listeners, task_status=task_status)
        finally:
            path.unlink(missing_ok=True)

    async def _client(self, stream: trio.SocketStream) -> None:
        async with stream:
            buffered = b""
            while b"\n" not in buffered:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                buffered += chunk
            try:
                command = json.loads(buffered.split(b"\n", 1)[0])
            except ValueError:
                return

            async def send(reply: dict) -> None:
                await stream.send_all(json.dumps(reply).encode() + b"\n")

            if command.get("cmd") == "status":
                await send(self.status())
            elif command.get("cmd") == "unmount":
                async def report() -> None:
                    while True:
                        await send({"progress": self.status()["uploads"]})
                        await trio.sleep(0.5)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(report)
                    ok = await self.stop(command.get("timeout"))
                    nursery.cancel_scope.cancel()
                await send({"done": ok, "uploads": self.status()["uploads"]})

    def status(self) -> dict:
        fs = self.fs
        uploads = [{
            "path": fs.inodes.path(p.node), "size": p.spool.size, "state": p.state.value,
            "progress": p.progress, "attempts": p.attempts,
            "error": str(p.error) if p.error else None,
            "spool": str(p.spool.path) if p.state.value == "failed" else None,
        } for p in fs.writeback.all()]
        return {
            "remote": self.options.remote.name, "type": self.options.remote.type,
            "subpath": self.options.subpath, "mountpoint": str(self.options.mountpoint),
            "pid": os.getpid(), "since": self.started, "uploads": uploads,
            "cache": {"used": fs.blocks.used_bytes, "max": fs.blocks.max_bytes,
                      "dir": str(cache_root(self.options))},
            "requests": self.stats.snapshot() if self.stats is not None else {},
        }


def is_stale(mountpoint: str) -> bool:
    """A vagonfs mount whose daemon no longer answers its control socket: the
    caller has just found the socket dead; the mount table says it is ours."""
    return mount_type(mountpoint) == "fuse.vagonfs"
