"""The daemon's end of the control socket (``vagonfs.control.channel`` is the commands' end).

Kept apart from ``vagonfs.control.channel`` so ``vagonfs status`` and ``unmount``
load no trio: they only connect and read lines. Each connection asks one
thing: ``status`` (one JSON reply), ``unmount`` (progress lines until the
uploads are done, then the outcome) or ``sync`` (one reply, sent once the
store has answered for every pending upload or the timeout passed: the
command waits on its socket, and the daemon polls nothing for it).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from vagonfs.control import channel
from vagonfs.errors import ConfigError
from vagonfs.runtime import supervise

log = logging.getLogger("vagonfs.mount")

StopFn = Callable[[float | None], Awaitable[bool]]  # upload all, then unmount; False on timeout
SyncFn = Callable[[float | None], Awaitable[list[dict]]]  # upload all now; what is not uploaded


def claim(mountpoint: Path) -> socket.socket:
    """The mount's control socket, bound before anything else of the mount
    starts: a name another process holds (the daemon of an earlier mount of
    this mountpoint, still finishing its uploads after an unmount from
    outside) fails the mount here, saying which process."""
    address = channel.address(mountpoint, os.getuid())
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address)
    except OSError as exc:
        listener.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        raise ConfigError(f"the control socket of {mountpoint} is held by "
                          f"{_holder(address)}; wait for it to exit, or stop it") from None
    return listener


def _holder(address: bytes) -> str:
    """Which process listens on ``address``, as far as it can be told."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(address)
        except OSError:
            return "another process"
        pid, uid = channel.peer_credentials(probe)
        return f"process {pid} (uid {uid}), maybe an earlier vagonfs daemon of it"


class ControlServer:
    """Protects: nothing; each connection is its own task."""

    def __init__(self, listener: socket.socket, status: Callable[[], dict], stop: StopFn,
                 sync: SyncFn):
        self._listener = listener  # bound by claim()
        self._status = status
        self._stop = stop
        self._sync = sync

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listener = trio.socket.from_stdlib_socket(self._listener)
        listener.listen()
        await trio.serve_listeners(self._client, [trio.SocketListener(listener)],
                                   task_status=task_status)

    async def _client(self, stream: trio.SocketStream) -> None:
        """One control connection, from this daemon's user or root only (an
        abstract socket has no file permissions). A client that goes away
        mid-reply (``status --watch`` ended with Ctrl-C) or sends nonsense ends
        its connection, never the mount."""
        uid = channel.peer_credentials(stream.socket)[1]
        if uid not in (os.getuid(), 0):
            log.warning("control socket: refused a connection from uid %d", uid)
            await stream.aclose()
            return
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
                await send(self._status())
            elif command.get("cmd") == "sync":
                left = await self._sync(command.get("timeout"))
                await send({"done": not left, "left": left})
            elif command.get("cmd") == "unmount":
                async def report() -> None:
                    while True:
                        await send({"progress": self._status()["uploads"]})
                        await trio.sleep(0.5)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(report)
                    ok = await self._stop(command.get("timeout"))
                    nursery.cancel_scope.cancel()
                await send({"done": ok, "uploads": self._status()["uploads"]})
