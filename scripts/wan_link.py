#!/usr/bin/env python3
"""A simulated wide-area link: a TCP proxy on loopback that delays, caps and counts.

Every figure measured on loopback is CPU; a user 20 to 100 ms from the store
waits for round trips instead. This kernel has no netem qdisc, so the
benchmark puts this delay line in front of each server it measures (the
emulator, rclone's WebDAV server) to see the round trips a client makes.

The model, per direction (client to server is "up", server to client "down"):

- A chunk read from one side goes out on the link when the link is free; the
  link is shared by every connection in that direction and sends ``rate``
  bytes a second. The chunk reaches the other side one-way delay (RTT/2)
  after its last byte went out.
- A connection has at most ``window`` bytes in flight: bytes count from when
  they are read until one-way delay after they were written to the other
  side (the acknowledgement travelling back). So one connection carries at
  most window/RTT, as TCP does, and a reader that stops reading stops its
  sender instead of filling the proxy's memory.
- Nothing moves on a new connection until one RTT after it was accepted (the
  handshake): a request sent at once lands 1.5 RTT after ``connect``, its
  answer 2 RTT after.
- An EOF (a half-close) travels as data does, one-way delay behind the bytes
  before it. A reset or error on either side aborts both sides at once (with
  a reset: the peer sees what it would see over a real link, an error).

The upstream must be a loopback address: this is a test rig, nothing else.
Run it in-process with ``running_link`` (its own thread and trio loop; the
benchmark and the tests do) or as a script::

    python scripts/wan_link.py --upstream 127.0.0.1:8765 --rtt 40ms --window 2M --rate 1gbit
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import ipaddress
import math
import re
import signal
import socket
import struct
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vagonfs.cli.parser import checked  # noqa: E402
from vagonfs.config import parse_duration, parse_size  # noqa: E402
from vagonfs.errors import ConfigError  # noqa: E402

MiB = 1 << 20
CHUNK = 64 * 1024  # largest read from a socket: 0.5 ms of a 1 Gbit/s link
# how far ahead of the clock a direction's link may be booked before a sender
# waits: the sleeps only give backpressure (each chunk's time is computed, not
# slept), and sleeping chunk by chunk would cost trio's millisecond timer
# granularity per 64 KiB, a third of a 1 Gbit/s link
QUEUE = 0.005
LISTENING = "wan_link listening on "


@dataclass(frozen=True)
class LinkSettings:
    rtt: float  # seconds, both ways
    window: int = 2 * MiB  # bytes in flight per connection, each direction
    rate: float = 1e9 / 8  # bytes a second, each direction, all connections together

    def __post_init__(self):
        if self.rtt < 0 or self.window <= 0 or self.rate <= 0:
            raise ValueError(f"a link needs rtt >= 0, window > 0 and rate > 0: {self}")

    @property
    def one_way(self) -> float:
        return self.rtt / 2

    def describe(self) -> str:
        return (f"RTT {self.rtt * 1000:g} ms, {self.window / MiB:g} MiB in flight per "
                f"connection, {self.rate * 8 / 1e9:g} Gbit/s")


@dataclass
class Counters:
    """What went through the link since it started.

    Written only by the link's own trio thread; other threads read plain ints
    (``snapshot``), at worst a chunk apart from each other."""

    connections: int = 0  # accepted, ever
    open: int = 0  # connections carried now
    bytes_up: int = 0  # client to server, as delivered
    bytes_down: int = 0  # server to client, as delivered

    def snapshot(self) -> Counters:
        return dataclasses.replace(self)

    def since(self, earlier: Counters) -> Counters:
        """What went through after ``earlier`` (``open``: now)."""
        return Counters(self.connections - earlier.connections, self.open,
                        self.bytes_up - earlier.bytes_up, self.bytes_down - earlier.bytes_down)


class _Wire:
    """One direction of the link, shared by all its connections: when it is free again."""

    def __init__(self, rate: float):
        self.rate = rate
        self.free_at = 0.0  # trio clock

    async def put(self, size: int) -> float:
        """Book ``size`` bytes on the link; when their last byte has gone out."""
        now = trio.current_time()
        self.free_at = max(now, self.free_at) + size / self.rate
        if self.free_at - now > QUEUE:
            await trio.sleep_until(self.free_at - QUEUE)
        return self.free_at


class _Window:
    """One direction of one connection: its bytes in flight, freed by acknowledgements."""

    def __init__(self, size: int, one_way: float):
        self.size = size
        self.one_way = one_way
        self.in_flight = 0
        self._acks: deque[tuple[float, int]] = deque()  # (when it arrives, bytes)
        self._acked = trio.Event()

    async def room(self) -> int:
        """Bytes that may be sent now, waiting for acknowledgements while there are none."""
        while True:
            now = trio.current_time()
            while self._acks and self._acks[0][0] <= now:
                self.in_flight -= self._acks.popleft()[1]
            if self.in_flight < self.size:
                return self.size - self.in_flight
            if self._acks:
                await trio.sleep_until(self._acks[0][0])
            else:
                self._acked = trio.Event()
                await self._acked.wait()

    def delivered(self, size: int) -> None:
        """``size`` bytes reached the other side: their acknowledgement is on its way."""
        self._acks.append((trio.current_time() + self.one_way, size))
        self._acked.set()


def _abort(stream: trio.SocketStream) -> None:
    """Close with a reset (SO_LINGER 0), as a broken connection would reach its peer."""
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


class WanLink:
    """The link in front of one upstream ``(host, port)``, on loopback."""

    def __init__(self, upstream: tuple[str, int], settings: LinkSettings):
        host = "127.0.0.1" if upstream[0] == "localhost" else upstream[0]
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the link's upstream must be on loopback, not {upstream[0]}")
        self.upstream = (host, upstream[1])
        self.settings = settings
        self.counters = Counters()
        self._wires = {"up": _Wire(settings.rate), "down": _Wire(settings.rate)}

    async def serve(self, port: int = 0, *,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1:``port`` (0: any free one, given to ``task_status``)
        and carry connections until cancelled; cancelling closes every one."""
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._carry, listeners)
            task_status.started(listeners[0].socket.getsockname()[1])

    async def _carry(self, client: trio.SocketStream) -> None:
        self.counters.connections += 1
        self.counters.open += 1
        established = trio.current_time() + self.settings.rtt
        try:
            upstream = await trio.open_tcp_stream(*self.upstream)
        except OSError:
            _abort(client)  # as a refused connection looks once it was accepted
            self.counters.open -= 1
            return
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._direction, "up", client, upstream, established)
                nursery.start_soon(self._direction, "down", upstream, client, established)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            _abort(client)
            _abort(upstream)
        finally:
            self.counters.open -= 1
            with trio.CancelScope(shield=True):
                await client.aclose()
                await upstream.aclose()

    async def _direction(self, way: str, source: trio.SocketStream, sink: trio.SocketStream,
                         established: float) -> None:
        """Carry one direction until its EOF has been delivered."""
        window = _Window(self.settings.window, self.settings.one_way)
        wire = self._wires[way]
        sending, arriving = trio.open_memory_channel[tuple[float, bytes]](math.inf)  # window-bound
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._deliver, way, arriving, sink, window)
            async with sending:
                while True:
                    data = await source.receive_some(min(CHUNK, await window.room()))
                    await trio.sleep_until(established)
                    if not data:
                        await sending.send((trio.current_time() + self.settings.one_way, b""))
                        return
                    window.in_flight += len(data)
                    gone = await wire.put(len(data))
                    await sending.send((gone + self.settings.one_way, data))

    async def _deliver(self, way: str, arriving: trio.MemoryReceiveChannel[tuple[float, bytes]],
                       sink: trio.SocketStream, window: _Window) -> None:
        async with arriving:
            async for due, data in arriving:
                await trio.sleep_until(due)
                if not data:
                    await sink.send_eof()
                    return
                await sink.send_all(data)
                if way == "up":
                    self.counters.bytes_up += len(data)
                else:
                    self.counters.bytes_down += len(data)
                window.delivered(len(data))


@dataclass
class RunningLink:
    """A link served by ``running_link``: where it listens and what it carried."""

    link: WanLink
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def counters(self) -> Counters:
        return self.link.counters.snapshot()


@contextlib.contextmanager
def running_link(upstream: tuple[str, int], settings: LinkSettings,
                 port: int = 0) -> Iterator[RunningLink]:
    """The link served from a thread of its own, with its own trio loop, until the
    block ends; then every connection is closed and the thread joined."""
    link = WanLink(upstream, settings)
    ready = threading.Event()
    state: dict = {}  # port, token, scope: set by the thread before `ready`; error on failure

    async def main() -> None:
        with trio.CancelScope() as scope:
            state["scope"], state["token"] = scope, trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                state["port"] = await nursery.start(link.serve, port)
                ready.set()

    def thread_main() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # handed to the caller, who raises it
            state["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=thread_main, name="wan-link", daemon=True)
    thread.start()
    ready.wait()
    try:
        if "error" in state:
            raise RuntimeError(f"the link did not start: {state['error']!r}") from state["error"]
        yield RunningLink(link, state["port"])
    finally:
        if "scope" in state:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(state["scope"].cancel, trio_token=state["token"])
        thread.join(30)
        if thread.is_alive():
            raise RuntimeError("the link's thread did not stop within 30 s")
    if "error" in state:
        raise RuntimeError(f"the link failed: {state['error']!r}") from state["error"]


def parse_rate(text: str) -> float:
    """Bytes a second from a rate in bits, decimal as networks count: '1gbit', '100M', '500k'."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)(?:bit|bps)?(?:/s)?\s*", text,
                         re.IGNORECASE)
    if not match:
        raise ConfigError(f"not a rate: {text!r} (try 1gbit or 100mbit)")
    number, unit = match.groups()
    return float(number) * 1000 ** " kmg".index(unit.lower() or " ") / 8


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"not HOST:PORT: {text!r}")
    return host, int(port)


def settings_arguments(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The link's window and rate as options (the benchmark's WAN mode takes them too)."""
    p.add_argument("--window", type=checked(parse_size), default="2M",
                   help="bytes in flight per connection and direction (default 2M)")
    p.add_argument("--rate", type=checked(parse_rate), default="1gbit",
                   help="the link's rate per direction, in bits a second (default 1gbit)")


def link_settings(args: argparse.Namespace, rtt: float) -> LinkSettings:
    return LinkSettings(rtt, parse_size(args.window), parse_rate(args.rate))


async def _serve_until_signal(link: WanLink, port: int) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(link.serve, port)
            print(f"{LISTENING}127.0.0.1:{listening} ({link.settings.describe()})", flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", type=checked(parse_address), required=True, metavar="HOST:PORT",
                   help="the server behind the link (loopback only)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: any free "
                   "one, printed)")
    p.add_argument("--rtt", type=checked(parse_duration), required=True,
                   help="round-trip time: 40ms, 0.1s")
    settings_arguments(p)
    args = p.parse_args()
    link = WanLink(parse_address(args.upstream), link_settings(args, parse_duration(args.rtt)))
    trio.run(_serve_until_signal, link, args.port)
    c = link.counters
    print(f"wan_link carried {c.connections} connections, {c.bytes_up:,} bytes up, "
          f"{c.bytes_down:,} down", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
