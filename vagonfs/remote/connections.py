"""Kept-alive HTTP/1.1 connections per origin, for the worker-thread client.

Taken and given back by worker threads (``vagonfs.remote.worker_http``), one
thread at a time on each; made through the environment's proxy as httpx's
would be (proxy credentials are not supported here). An idle connection the
server may have closed is not reused: a request that may not be sent twice
must not go into it.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import time
import urllib.request

import httpx

# an idle connection older than this may have been closed by the server: not reused
_IDLE_EXPIRY = 20.0
_IDLE_PER_ORIGIN = 64  # as many as links asked at once: over a real link a new one costs a round trip


class ProxiedConnection(http.client.HTTPConnection):
    """Plain http through a proxy: a request names its absolute URL."""


class Connections:
    """Keep-alive connections per origin, taken and given back by worker threads."""

    def __init__(self, timeout: httpx.Timeout):
        self._connect_timeout = timeout.connect
        self._read_timeout = timeout.read
        self._idle: dict[tuple, list[tuple[float, http.client.HTTPConnection]]] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def connect(self, origin: tuple) -> http.client.HTTPConnection:
        """A new connection to ``origin``; through the environment's proxy when
        httpx would use one (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``,
        ``NO_PROXY``): a tunnel for https, absolute URLs for http."""
        scheme, host, port = origin
        proxy = _proxy_for(scheme, host)
        to_host, to_port = proxy or (host, port)
        conn: http.client.HTTPConnection
        if scheme == "https":
            if self._tls is None:
                self._tls = httpx.create_ssl_context()
            conn = http.client.HTTPSConnection(to_host, to_port, timeout=self._connect_timeout,
                                               context=self._tls)
            if proxy is not None:
                conn.set_tunnel(host, port)
        elif proxy is not None:
            conn = ProxiedConnection(to_host, to_port, timeout=self._connect_timeout)
        else:
            conn = http.client.HTTPConnection(to_host, to_port, timeout=self._connect_timeout)
        try:
            conn.connect()
        except OSError as exc:
            conn.close()
            raise httpx.ConnectError(str(exc)) from None
        conn.sock.settimeout(self._read_timeout)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def take(self, origin: tuple) -> http.client.HTTPConnection | None:
        """A kept-alive connection to ``origin`` that is still open, if one is
        idle: one the server closed (its socket reads as ready: the end, or
        bytes nobody asked for) is dropped here, as httpcore does, so that a
        request that may not be sent twice is not sent into it."""
        now = time.monotonic()
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                since, conn = idle.pop()
                if now - since < _IDLE_EXPIRY and not _readable(conn):
                    return conn
                conn.close()
        return None

    def give_back(self, origin: tuple, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < _IDLE_PER_ORIGIN:
                idle.append((time.monotonic(), conn))
                return
        conn.close()


def _readable(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle connection's socket has something to read (or is gone)."""
    if conn.sock is None:
        return True
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(0))


def _proxy_for(scheme: str, host: str) -> tuple[str, int] | None:
    """(host, port) of the proxy the environment names for this origin, if any."""
    # urllib.request has it (undocumented); its stubs do not:
    if urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return None
    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url:
        return None
    proxy = httpx.URL(url if "://" in url else f"http://{url}")
    return proxy.host, proxy.port or 80
