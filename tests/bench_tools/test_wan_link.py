"""The benchmark's simulated link (``scripts/wan_link.py``): it delays, it caps, it
closes cleanly, and it counts.

Real servers on loopback behind it, no mocks. Times are asserted only as lower
bounds on the link's own delays (what the link is for), with upper bounds far
enough off that a loaded two-core machine cannot miss them; every socket has
a timeout, so no test can hang.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from wan_link import LISTENING, LinkSettings, WanLink, running_link
from support import wait_until

RTT = 0.04
TIMEOUT = 10  # seconds any socket of these tests waits before failing
SLACK = 0.002  # the test's clock against the link's (both monotonic, read apart)
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "wan_link.py"


class _Echo(socketserver.BaseRequestHandler):
    """Sends back what it gets; half-closes after the client's EOF; answers
    ``reset`` with a reset."""

    def handle(self) -> None:
        self.request.settimeout(TIMEOUT)
        while data := self.request.recv(65536):
            if data == b"reset":
                self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        struct.pack("ii", 1, 0))
                self.request.close()  # now, before socketserver's own shutdown sends a FIN
                return
            self.request.sendall(data)


class _Source(socketserver.BaseRequestHandler):
    """Sends as many bytes as the 8-byte number the client sends first, then closes."""

    def handle(self) -> None:
        self.request.settimeout(TIMEOUT)
        size = struct.unpack("!Q", receive_exactly(self.request, 8))[0]
        self.request.sendall(bytes(size))


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(handler) -> Iterator[tuple[str, int]]:
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield "127.0.0.1", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    yield from serve(_Echo)


@pytest.fixture
def source() -> Iterator[tuple[str, int]]:
    yield from serve(_Source)


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(size - got, 1 << 20))
        if not chunk:
            raise EOFError(f"EOF after {got} of {size} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.settimeout(TIMEOUT)
    return sock


def exchange(sock: socket.socket, data: bytes) -> float:
    start = time.monotonic()
    sock.sendall(data)
    assert receive_exactly(sock, len(data)) == data
    return time.monotonic() - start


def download(port: int, size: int) -> float:
    """Seconds from connect until all of ``size`` bytes from the source came back."""
    start = time.monotonic()
    with connect(port) as sock:
        sock.sendall(struct.pack("!Q", size))
        receive_exactly(sock, size)
        assert sock.recv(1) == b""
    return time.monotonic() - start


def link_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "wan-link"]


def test_a_new_connection_costs_a_round_trip_and_each_exchange_one(echo):
    with running_link(echo, LinkSettings(RTT)) as link, connect(link.port) as sock:
        first = exchange(sock, b"ping")
        second = exchange(sock, b"pong")
    assert first >= 2 * RTT - SLACK  # the handshake, then the exchange
    assert RTT - SLACK <= second < RTT + 2


def test_an_http_server_answers_through_the_link_over_one_connection(tmp_path):
    (tmp_path / "page.txt").write_bytes(b"hello " * 1000)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection for the three requests

        def __init__(self, *args, **kw):
            super().__init__(*args, directory=str(tmp_path), **kw)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        with running_link(("127.0.0.1", server.server_address[1]), LinkSettings(RTT)) as link:
            with httpx.Client(base_url=link.url, timeout=TIMEOUT) as client:
                start = time.monotonic()
                bodies = [client.get("/page.txt").content for _ in range(3)]
                seconds = time.monotonic() - start
            counted = link.counters
    finally:
        server.shutdown()
        server.server_close()
    assert bodies == [b"hello " * 1000] * 3
    assert seconds >= (2 + 2) * RTT - SLACK  # connect, then three requests one after another
    assert counted.connections == 1
    assert counted.bytes_down > 3 * 6000 > counted.bytes_up > 0


def test_one_connection_carries_at_most_a_window_a_round_trip(source):
    window = 64 * 1024
    with running_link(source, LinkSettings(RTT, window=window)) as link:
        seconds = download(link.port, 8 * window)
    # the handshake, the request's way there, then 8 windows each a round trip
    # after the one before, the last one way behind
    assert 9 * RTT - SLACK <= seconds < 9 * RTT + 5


def test_the_rate_is_shared_by_all_connections(source):
    rate = 1e6  # bytes a second
    size = 250_000
    with running_link(source, LinkSettings(0.0, window=8 << 20, rate=rate)) as link:
        alone = download(link.port, size)
        with ThreadPoolExecutor(2) as pool:
            start = time.monotonic()
            list(pool.map(lambda _: download(link.port, size), range(2)))
            together = time.monotonic() - start
    assert size / rate - SLACK <= alone < size / rate + 5
    assert 2 * size / rate - SLACK <= together < 2 * size / rate + 5


def test_eof_travels_both_ways_after_the_data(echo):
    with running_link(echo, LinkSettings(RTT)) as link, connect(link.port) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)  # the server sees EOF, echoes, and closes
        assert receive_exactly(sock, 10) == b"last words"
        assert sock.recv(1) == b""  # the server's EOF came back
        assert link.counters.bytes_up == link.counters.bytes_down == 10


def test_a_reset_reaches_the_other_side(echo):
    with running_link(echo, LinkSettings(RTT)) as link, connect(link.port) as sock:
        sock.sendall(b"reset")
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
        wait_until(lambda: link.counters.open == 0, TIMEOUT,
                   message=lambda: f"{link.counters.open} connections still open")


def test_stop_closes_every_connection_and_the_thread(echo):
    with running_link(echo, LinkSettings(RTT)) as link:
        socks = [connect(link.port) for _ in range(3)]
        for sock in socks:
            exchange(sock, b"up")
        assert link.counters.open == 3
        assert len(link_threads()) == 1
    try:
        for sock in socks:  # each ended by the link: EOF, not a timeout
            assert sock.recv(1) == b""
        assert link.counters.connections == 3
        assert link.counters.open == 0
        assert link_threads() == []
        with pytest.raises(ConnectionRefusedError):
            connect(link.port)
    finally:
        for sock in socks:
            sock.close()


def test_the_upstream_must_be_on_loopback():
    with pytest.raises(ValueError, match="loopback"):
        WanLink(("192.0.2.1", 80), LinkSettings(RTT))


def test_the_script_carries_until_a_signal(echo):
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--upstream", f"{echo[0]}:{echo[1]}", "--rtt", "20ms"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(LISTENING), line
        port = int(line[len(LISTENING):].split()[0].rsplit(":", 1)[1])
        with connect(port) as sock:
            assert exchange(sock, b"ping") >= 2 * 0.02 - SLACK
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "carried 1 connections, 4 bytes up, 4 down" in err
