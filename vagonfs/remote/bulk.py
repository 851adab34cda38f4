"""File bodies moved in worker threads: received straight into the reader's
buffers, and sent from local files (``file_range``).

Why not httpx for these: measured on this machine against the emulator (one
256 MiB GET of a Vagon download link), httpx reads 250-300 MB/s, async or
sync, because h11 parses and copies every 64 KiB chunk on the calling thread
(for the mount, the one trio thread that also answers FUSE). The standard
library's ``http.client`` fills a preallocated 1 MiB buffer with ``readinto``
(``recv_into`` under the hood, the GIL released while the socket receives) at
1.0-1.9 GB/s in a worker thread, as fast as ``curl`` of the same link; no
installed library does better (urllib3 and pycurl are not dependencies). So
GETs of file bytes go through here, and httpx keeps the API calls, where its
auth, pooling and JSON handling serve and the bytes are few. The API calls
made once per file, a Vagon download link and an upload's create, part and
complete of a small file, are sent from here too (``Reply.whole``; why:
``HttpClient.request``).

The request is still built by the mount's httpx client (its default headers,
the store's auth), and failures leave as httpx's own exception and reply
types, so one retry policy (``HttpClient._failed``) judges both paths.
Connections are kept alive per origin, used by one thread at a time, and go
through the environment's proxy as httpx's would (proxy credentials are not
supported here).
"""

from __future__ import annotations

import collections
import functools
import http.client
import os
import select
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable

import httpx
import outcome
import trio

from vagonfs import threads
from vagonfs.errors import LocalCopyLost, RemoteIOError
from vagonfs.remote import buffers

# an idle connection older than this may have been closed by the server: not reused
_IDLE_EXPIRY = 20.0
_IDLE_PER_ORIGIN = 64  # as many as links asked at once: over a real link a new one costs a round trip
_ERROR_BODY_LIMIT = 64 * 1024
SMALL_REPLY_LIMIT = 16 * 1024 * 1024  # an API reply read whole (Reply.whole): a listing's page too


class Reply:
    """One request: made on the trio thread, sent (``open``) and received
    (``fill``) in worker threads, one at a time. The trio thread may ``abort``
    it at any stage (the reader was cancelled): a worker blocked on the socket
    wakes, and a connection not yet made is closed as soon as it is. Its body,
    if any, is bytes (a file's GET has none; an API call's JSON is small).

    ``resend``: a request that failed on a kept-alive connection (the server
    may have closed it just as it was taken) is sent again on a new one. Only
    for an idempotent request: one that is not (a Vagon create) fails instead,
    as it does through httpx, and the retry policy judges it."""

    def __init__(self, pool: Connections, request: httpx.Request, *, resend: bool = True):
        self._pool = pool
        self.request = request
        self._resend = resend
        url = request.url
        self._origin = (url.scheme, url.host, url.port)
        self._conn: http.client.HTTPConnection | None = None
        self._response: http.client.HTTPResponse | None = None
        self._aborted = False
        self._lock = threading.Lock()  # _conn and _aborted, between worker and trio thread
        self._failure: httpx.TransportError | None = None
        self.status_code = 0
        self.headers = httpx.Headers()
        self.first: Fill | None = None  # what ``open`` received of a small body

    def open(self, small: int = 0) -> None:
        """Send the request and read the status and headers; a kept-alive
        connection that the server had closed meanwhile is replaced once
        (``resend``).
        A body of the ``small`` bytes asked for (a whole small file, as a
        copied folder's are) is received in the same worker trip, into
        ``first``: a second thread for it cost the trio thread as much as
        the rest of the GET."""
        headers = {k: v for k, v in self.request.headers.items() if k.lower() != "host"}
        method, body = self.request.method, self.request.content or None
        reused = self._pool.take(self._origin)
        while True:
            conn = reused or self._pool.connect(self._origin)
            target = (str(self.request.url) if isinstance(conn, _ProxiedConnection)
                      else self.request.url.raw_path.decode("ascii"))
            with self._lock:
                if self._aborted:
                    conn.close()
                    raise httpx.ReadError("cancelled", request=self.request)
                self._conn = conn
            try:
                conn.request(method, target, body=body, headers=headers)
                self._response = conn.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused is None or not self._resend or self._aborted:
                    raise _transport_error(exc, self.request, reading=False) from None
                reused = None
        response = self._opened()
        self.status_code = response.status
        self.headers = httpx.Headers(response.getheaders())
        # from where it was asked (a 200 to a ranged request starts at byte 0)
        from_start = self.request.headers.get("Range", "bytes=0-").startswith("bytes=0-")
        if (small and (self.status_code == 206 or self.status_code == 200 and from_start)
                and response.length is not None and response.length <= small):
            view = buffers.receive_buffer(small)
            self.first = (view, self.fill(view), self._failure)

    def fill(self, view: memoryview) -> int:
        """Receive into ``view`` until it is full or the body ends; the bytes
        received. A failure on the way is kept as ``failure``, so that the
        bytes that did arrive are counted first."""
        response = self._opened()
        filled = 0
        try:
            while filled < len(view):
                got = response.readinto(view[filled:])
                if not got:
                    if response.length:  # http.client ends a cut body quietly
                        raise http.client.IncompleteRead(b"", response.length)
                    break
                filled += got
        except http.client.IncompleteRead as exc:  # a chunked body's part is in view
            filled += len(exc.partial)
            self._fail(exc)
        except (OSError, http.client.HTTPException) as exc:
            self._fail(exc)
        return filled

    def _opened(self) -> http.client.HTTPResponse:
        if self._response is None:
            raise RuntimeError("the reply is read before it was opened")
        return self._response

    def _fail(self, exc: BaseException) -> None:
        conn = self._conn  # None once the trio thread closed the reply of an abandoned fill
        if conn is not None:
            conn.close()
        self._failure = _transport_error(exc, self.request, reading=True)

    @property
    def failure(self) -> httpx.TransportError | None:
        """The failure that ended the last ``fill``, if one did."""
        return self._failure


    def error_reply(self) -> httpx.Response:
        """An error reply as httpx's type, body read (bounded), for the error mappers."""
        try:
            body = self._opened().read(_ERROR_BODY_LIMIT)
        except (OSError, http.client.HTTPException):
            body = b""
        self.close()
        return self._as_response(body)

    def whole(self) -> httpx.Response:
        """In a worker thread: send the request and read its whole reply, a
        small one (an API call's JSON, at most ``SMALL_REPLY_LIMIT`` bytes),
        as httpx's type; a failure on the way is httpx's exception."""
        try:
            self.open()
            response = self._opened()
            declared = response.length
            try:
                # read() of a declared length raises on a cut body; read(n) would not
                body = (b"" if declared is not None and declared > SMALL_REPLY_LIMIT
                        else response.read() if declared is not None
                        else response.read(SMALL_REPLY_LIMIT + 1))
            except (OSError, http.client.HTTPException) as exc:
                raise _transport_error(exc, self.request, reading=True) from None
            if (declared or len(body)) > SMALL_REPLY_LIMIT:
                raise RemoteIOError(f"{self.request.method} {self.request.url.path}: a reply "
                                    f"of more than {SMALL_REPLY_LIMIT} bytes where a small "
                                    f"one was expected")
        finally:
            self.close()
        return self._as_response(body)

    def _as_response(self, body: bytes) -> httpx.Response:
        return httpx.Response(self.status_code, headers=self.headers, content=body,
                              request=self.request)

    def close(self) -> None:
        """Done with the reply: its connection is kept for the next GET when the
        body was read to its end, else closed (the server is still sending)."""
        conn = self._conn
        if conn is None:
            return
        if (self._response is not None and self._response.isclosed()
                and conn.sock is not None and not self._aborted):
            self._pool.give_back(self._origin, conn)
        else:
            conn.close()
        self._conn = None

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# What one fill of a body gave: the new buffer it went into (None: the rest of
# the one before), the bytes received, and the failure that cut it short
Fill = tuple[memoryview | None, int, httpx.TransportError | None]
# fills a body's worker may be ahead of the trio thread: a slow reader holds
# the sender back here, and memory stays bounded, whatever the body's length
_AHEAD = 16


class Received:
    """A body ``open`` already received whole (``Reply.first``), read as a
    :class:`Body` is."""

    def __init__(self, fill: Fill):
        self._fill: Fill | None = fill

    async def next(self) -> Fill | None:
        fill, self._fill = self._fill, None
        return fill

    async def stop(self) -> None:
        pass


class Body:
    """A reply's body received in one worker thread, buffer after buffer, each
    handed to the trio thread the moment it is full. A thread trip per buffer
    (``trio.to_thread``) cost ~0.3 ms of CPU here, a quarter of what a cold
    read cost the daemon; a hand-over is one ``run_sync_soon``.

    The worker starts at once: into ``first`` (the rest of a buffer a cut
    connection left part-filled, or empty), then into new buffers of
    ``chunk`` bytes until ``left`` bytes are in (None: the body's end), the
    body ends short, or it fails. ``stop`` ends it early."""

    def __init__(self, reply: Reply, first: memoryview, left: int | None, chunk: int):
        self._reply = reply
        self._token = trio.lowlevel.current_trio_token()
        self._fills: collections.deque[Fill] = collections.deque()
        self._wakeup = trio.Event()
        self._room = threading.Semaphore(_AHEAD)
        self._stopping = False
        self._ended = trio.Event()
        self._outcome: outcome.Outcome | None = None
        trio.lowlevel.start_thread_soon(
            functools.partial(self._receive, first, left, chunk),
            lambda result: self._token.run_sync_soon(self._end, result))

    async def next(self) -> Fill | None:
        """The next fill, in order; None once the body is over."""
        while not self._fills:
            if self._outcome is not None:
                self._outcome.unwrap()  # the worker's own failure, not the body's
                return None
            self._wakeup = trio.Event()
            await self._wakeup.wait()
        self._room.release()
        return self._fills.popleft()

    async def stop(self) -> None:
        """Until the worker is done with the reply: cut short if still receiving."""
        if self._ended.is_set():
            return
        self._stopping = True
        self._room.release()  # a worker waiting for room wakes and ends
        self._reply.abort()  # one blocked on the socket too
        with trio.CancelScope(shield=True):  # it ends as soon as it wakes
            await self._ended.wait()

    def _receive(self, view: memoryview, left: int | None, chunk: int) -> None:
        """In the worker thread."""
        new = False
        while True:
            if not view:
                if left is not None and left <= 0:
                    return
                view, new = buffers.receive_buffer(chunk if left is None else min(chunk, left)), True
            self._room.acquire()
            if self._stopping:
                return
            got = self._reply.fill(view)
            failure = self._reply.failure
            over = got < len(view) or failure is not None
            # the view is the trio thread's from here on: not even its length is read
            self._token.run_sync_soon(self._arrived, (view if new else None, got, failure))
            if over:
                return
            if left is not None:
                left -= got
            view, new = memoryview(b""), False

    def _arrived(self, fill: Fill) -> None:
        self._fills.append(fill)
        self._wakeup.set()

    def _end(self, result: outcome.Outcome) -> None:
        self._outcome = result
        self._ended.set()
        self._wakeup.set()


class _ProxiedConnection(http.client.HTTPConnection):
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
            conn = _ProxiedConnection(to_host, to_port, timeout=self._connect_timeout)
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


def _transport_error(exc: BaseException, request: httpx.Request, *,
                     reading: bool) -> httpx.TransportError:
    """The httpx exception that ``exc`` is, for the one retry policy."""
    message = f"{type(exc).__name__}: {exc}"
    kind: type[httpx.TransportError]
    if isinstance(exc, TimeoutError):
        kind = httpx.ReadTimeout if reading else httpx.ConnectTimeout
    elif isinstance(exc, http.client.HTTPException):
        kind = httpx.RemoteProtocolError
    elif isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
        kind = httpx.ConnectError
    else:
        kind = httpx.ReadError
    return kind(message, request=request)


FILE_CHUNK = 1024 * 1024


async def file_range(fd: int, offset: int, length: int,
                     progress: Callable[[int], None] | None = None) -> AsyncIterator[bytes]:
    """An upload body streamed from a local file, a chunk at a time, read off
    the trio thread: memory stays at one chunk whatever the file's size.
    ``progress`` hears the bytes handed on so far.

    A body longer than a chunk leaves the page cache as it found it. What it
    sends is a spool, read once and deleted once uploaded, and written around
    the page cache (``O_DIRECT``) so that a big copy does not evict what the
    machine caches; read back through it, a 1 GiB upload held the whole
    spool there until its end (``fincore``), evicting as much. So the pages
    read are dropped behind the reader (``POSIX_FADV_DONTNEED``), over a
    trailing window: the kernel caches a file in folios of up to 2 MiB and
    drops only those wholly inside the range, so a range of one chunk drops
    nothing. A small body keeps its pages, which a small spool's buffered
    writes may still hold dirty."""
    drop_from = offset if length > FILE_CHUNK else None
    done = 0
    while done < length:
        try:
            data = await threads.run_sync(_read, fd, min(FILE_CHUNK, length - done),
                                          offset + done, drop_from)
        except OSError as exc:
            raise LocalCopyLost(f"its local copy cannot be read: {exc.strerror or exc}",
                                exc.errno) from None
        if not data:
            raise LocalCopyLost(f"its local copy ended at {offset + done} bytes where "
                                f"{offset + length} were to be uploaded")
        done += len(data)
        yield data
        if progress is not None:
            progress(done)


_DROP_WINDOW = 8 * FILE_CHUNK  # more than the page cache's largest folio


def _read(fd: int, length: int, offset: int, drop_from: int | None) -> bytes:
    """``pread``; then, unless ``drop_from`` is None, what the body read up to
    here dropped from the page cache, back to ``drop_from`` (the body's start:
    before it are another body's bytes) at most."""
    data = os.pread(fd, length, offset)
    if drop_from is not None:
        end = offset + len(data)
        since = max(drop_from, end - _DROP_WINDOW)
        os.posix_fadvise(fd, since, end - since, os.POSIX_FADV_DONTNEED)
    return data
