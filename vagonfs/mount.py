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
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyfuse3
import trio

import vagonfs
from vagonfs import control, readahead
from vagonfs.config import MountOptions, Remote
from vagonfs.core import supervise
from vagonfs.core.fs import Filesystem, FsOptions
from vagonfs.core.links import LinkStore
from vagonfs.errors import ConfigError, NotFound, PermissionDenied, StoreError
from vagonfs.fuse_ops import FuseOperations
from vagonfs.remote.base import resolve
from vagonfs.remote.factory import open_store
from vagonfs.remote.http import RetryPolicy

log = logging.getLogger("vagonfs.mount")

READY_FD_ENV = "VAGONFS_READY_FD"
GIL_SWITCH_INTERVAL = 0.0005  # seconds; see run()
CHECK_TIMEOUT = 10.0  # seconds the store has to answer the mount-time check
# a busy store (429, 503) gets a few seconds; a dead one is told within them
CHECK_RETRY = RetryPolicy(attempts=4, base_delay=0.25, max_retry_after=2.0)


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
    """Start the daemon (``argv`` plus ``--foreground``, its paths absolute)
    and wait until it is ready."""
    read_fd, write_fd = os.pipe()
    log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(log_file, "ab") as log_fh:
        child = subprocess.Popen(
            vagonfs.command(*argv, "--foreground"), cwd="/",
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
    try:  # one line: the launcher reads up to the first newline
        os.write(int(fd), " ".join(message.split()).encode() + b"\n")
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
    """Serve the mount in this process until it is unmounted.

    The daemon works from ``/`` (its paths are absolute), so it keeps no
    folder busy: the one it was started from can be unmounted or removed.
    """
    os.chdir("/")
    # the trio thread answers FUSE while worker threads receive bodies and
    # write the cache: with Python's default 5 ms switch interval a thread
    # waiting for the GIL stalls a whole block's worth of data; 0.5 ms gave
    # cold reads ~20% and warm reads ~15% more here, measured back to back
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    try:
        return trio.run(_serve, options)
    except (ConfigError, StoreError, OSError) as exc:
        log.error("mount failed: %s", exc)
        _tell_parent(f"cannot mount {options.remote.name}: {exc}")
        return 1


def _holds_files(folder: str) -> bool:
    with os.scandir(folder) as entries:
        return next(entries, None) is not None


async def check_store(remote: Remote) -> None:
    """Ask the store one cheap authenticated question before the mount is
    offered: a wrong secret, a dead host or a URL that is not the store is
    refused now, naming the remote and the cause, instead of at the first
    ``ls`` (as mountpoint-s3 and s3fs do). Its own client retries little, so
    the answer comes within seconds."""
    async with open_store(remote, retry=CHECK_RETRY) as (store, _):
        with trio.move_on_after(CHECK_TIMEOUT):
            try:
                await store.check()
            except StoreError as exc:
                raise ConfigError(_why_refused(remote, exc)) from None
            return
    raise ConfigError(f"{remote.url} did not answer within {CHECK_TIMEOUT:.0f} s"
                      f"{_DELAY_HINT}")


_DELAY_HINT = " (to mount before the network is up, add --delay-connect)"
_KINDS = {"vagon": "the Vagon Teams API", "tenant": "a tenant file store",
          "shannon": "a Shannon gateway"}


def _why_refused(remote: Remote, exc: StoreError) -> str:
    """The cause of a failed check, in the words a user acts on."""
    transport = exc.__context__
    if isinstance(transport, httpx.TransportError):
        tls = next((e for e in _causes(transport) if isinstance(e, ssl.SSLError)), None)
        if tls is not None:
            return (f"TLS with {remote.url} failed ({tls}): check the url's scheme "
                    "(https only for a TLS server) and the server's certificate")
        reason = str(transport) or type(transport).__name__
        return f"cannot reach {remote.url} ({reason}){_DELAY_HINT}"
    if isinstance(exc, PermissionDenied):
        fields = "api_key and api_secret" if remote.type == "vagon" else "api_key"
        return f"{remote.url} refused the credentials: {exc}; check the remote's {fields}"
    if isinstance(exc, NotFound) or exc.status is None or exc.status < 400:
        # the status, not the body: another server's error page says nothing useful
        request = exc.message.partition(": ")[0]
        detail = f"{request}: HTTP {exc.status}" if exc.status else str(exc)
        return (f"{remote.url} does not answer as {_KINDS[remote.type]} ({detail}): check "
                f"the url and the remote's type ({remote.type})")
    return f"{remote.url} answered the check with an error: {exc}"


def _causes(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


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
    if not options.allow_non_empty and _holds_files(mountpoint):
        raise ConfigError(f"{mountpoint} is not empty, and a mount would hide what it "
                          "holds; use an empty folder, or --allow-non-empty "
                          "(-o allow_non_empty) to mount over it anyway")
    if options.delay_connect:
        log.info("not checking %s before mounting (--delay-connect)", options.remote.url)
    else:
        await check_store(options.remote)
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
        if options.links:
            store = LinkStore(store)
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
            supervise.spawn(nursery, "read-ahead", readahead.raise_read_ahead, mountpoint,
                            options.read_ahead)
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
        # SIGHUP too: a foreground mount whose terminal closes still uploads
        # and removes its control socket
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
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
        """One control connection. A client that goes away mid-reply (``status
        --watch`` ended with Ctrl-C) or sends nonsense ends its connection,
        never the mount."""
        try:
            await self._answer(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.debug("control socket: the client went away")
        except Exception as exc:
            supervise.failure("control socket", exc, logger=log)

    async def _answer(self, stream: trio.SocketStream) -> None:
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
                      "dir": str(cache_root(self.options)),
                      "disk_full": fs.blocks.disk_full},
            "requests": self.stats.snapshot() if self.stats is not None else {},
        }


def is_stale(mountpoint: str) -> bool:
    """A vagonfs mount whose daemon no longer answers its control socket: the
    caller has just found the socket dead; the mount table says it is ours."""
    return mount_type(mountpoint) == "fuse.vagonfs"
