"""The HTTP layer every store shares: one pool, one retry policy, one error shape.

A mount opens one :class:`httpx.AsyncClient` (keep-alive, enough connections
for parallel part uploads) and wraps it in :class:`HttpClient`, which every
store module uses for every request. httpx runs under trio through anyio.

Retries: one loop here, asking :func:`~vagonfs.remote.failures.is_temporary`
whether a failure is worth another attempt (see that module). A request that
is not idempotent (a Vagon create, a tenant move) is retried only when the
server cannot have acted on it: the connection never opened, or the server
answered 429/503 ("not now").

Every final failure leaves as exactly one :class:`~vagonfs.errors.FsError`
built by the store's error mapper from the server's reply. Messages and log
lines name a URL only without its query string (presigned URLs carry their
signature there) and never include request headers, so credentials cannot
leak through either.

Streaming reads survive a connection cut mid-body: :meth:`HttpClient.stream_range`
asks again from the first byte not yet delivered, so its caller sees one
continuous run of chunks. Their bodies are received in worker threads by
:mod:`vagonfs.remote.bulk` (why not httpx: see there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import (AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable,
                             Generator)
from dataclasses import dataclass

import httpx
import trio

from vagonfs.errors import FsError, RemoteIOError, Stale
from vagonfs.remote import bulk
from vagonfs.remote.failures import (ErrorMapper, RetryPolicy, is_temporary, redact, retry_after,
                                     safe_url, status_error)
from vagonfs.runtime import buffers, threads

log = logging.getLogger("vagonfs.http")

TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# 32 connections: parallel part uploads of one file plus the reads and
# listings that the filesystem keeps serving meanwhile.
LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=32, keepalive_expiry=30.0)

# Bodies of file reads come in buffers of this size: the block cache's block.
BODY_CHUNK = buffers.RECEIVE_SIZE

# The body of a request: bytes, or a factory giving a fresh stream per attempt.
Body = bytes | Callable[[], AsyncIterable[bytes]] | None


def new_client() -> httpx.AsyncClient:
    """The mount's one client. ``identity`` encoding keeps ranged byte counts exact."""
    return httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS, follow_redirects=False,
                             headers={"Accept-Encoding": "identity",
                                      "User-Agent": "vagonfs"})


class Stats:
    """Counters for ``vagonfs status``: one per request attempt, retry and final error."""

    def __init__(self) -> None:
        self.requests = 0
        self.retries = 0
        self.errors = 0
        self.bytes_in = 0
        self.bytes_out = 0

    def snapshot(self) -> dict[str, int]:
        return {"requests": self.requests, "retries": self.retries, "errors": self.errors,
                "bytes_in": self.bytes_in, "bytes_out": self.bytes_out}


class HeaderAuth(httpx.Auth):
    """A fixed credential header (tenant Bearer token, Shannon X-API-Key),
    attached per request so presigned URLs on other hosts never receive it."""

    def __init__(self, name: str, value: str):
        self._name = name
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._name] = self._value
        yield request

    def __repr__(self) -> str:
        return f"HeaderAuth({self._name})"


def _signed(request: httpx.Request, auth: httpx.Auth | None) -> httpx.Request:
    """A request sent outside httpx's client (``bulk``), with ``auth`` applied."""
    return request if auth is None else next(auth.sync_auth_flow(request))


class HttpClient:
    """Requests with retries, error mapping and statistics, over one shared client."""

    def __init__(self, client: httpx.AsyncClient, policy: RetryPolicy | None = None,
                 stats: Stats | None = None):
        self.client = client
        self.bulk = bulk.Connections(TIMEOUT)
        self.policy = policy or RetryPolicy()
        self.stats = stats or Stats()

    async def request(self, method: str, url: httpx.URL | str, *, params=None,
                      headers: dict[str, str] | None = None, content: Body = None,
                      auth: httpx.Auth | None = None, idempotent: bool = True,
                      errors: ErrorMapper = status_error,
                      in_worker: bool = False) -> httpx.Response:
        """Send until success or a final failure; the reply's body is read.

        ``in_worker``: a request with a small body and reply, sent over
        ``bulk``'s connections in a worker thread, for the calls made once
        per file (a Vagon download link; an upload's create, part and
        complete). Measured against the emulator, eight at a time: 0.9 ms of
        CPU a request this way, 1.5-1.6 ms through httpx's async transport,
        all of it on the trio thread that also answers FUSE (a folder of
        small files copied out spent 45% of it asking links; uploading 1,000
        small files, 62% of it in httpx's ``send``). The request is still
        httpx's, built and signed as any other, and its failures are judged
        by the same retry policy.
        """
        if in_worker and callable(content):
            raise ValueError("a streamed body is sent through httpx, not a worker thread")
        failures = 0
        while True:
            body = content() if callable(content) else content
            request = self.client.build_request(method, url, params=params, headers=headers,
                                                content=body)
            try:
                if in_worker:
                    response = await self._send_in_worker(request, auth, idempotent)
                else:
                    response = await self._send(request, auth)
                    await response.aread()
            except httpx.TransportError as exc:
                failures = await self._failed(request, exc, failures, idempotent)
                continue
            self.stats.bytes_in += len(response.content)
            if response.is_success:
                return response
            if response.status_code < 400:
                raise self._final(RemoteIOError(
                    f"{method} {safe_url(request.url)}: unexpected HTTP {response.status_code}",
                    status=response.status_code))
            failures = await self._failed(request, response, failures, idempotent, errors)

    async def stream_range(self, locate: Callable[[bool], Awaitable[str | httpx.URL]],
                           offset: int = 0, end: int | None = None, *,
                           auth: httpx.Auth | None = None, errors: ErrorMapper = status_error,
                           whole_reply: Callable[[], None] | None = None,
                           expected_size: int | None = None, chunk_size: int = BODY_CHUNK
                           ) -> AsyncGenerator[memoryview, None]:
        """Yield the bytes [offset, end) of a resource in buffers of ``chunk_size``
        (the last one may be shorter), each received in a worker thread (see
        :mod:`vagonfs.remote.bulk`), and never copied after.

        Buffers start at ``offset + k * chunk_size`` whatever happens to the
        connection, so a reader asking from a block boundary gets whole blocks.
        ``locate(fresh)`` gives the URL; it is asked once more with
        ``fresh=True`` after a 403, so an expired presigned link is replaced
        once. A cut connection resumes from the next byte with a new ranged
        request. A server that ignores ``Range`` (200 instead of 206) is
        handled by skipping the unwanted prefix; ``whole_reply`` is told.
        A reply whose total size is not ``expected_size`` means the file was
        replaced since it was listed: Stale, rather than bytes of two versions.
        A body encoded against our ``identity`` (a proxy that compresses anyway)
        is refused (EIO): it would otherwise be kept as the file's content.
        """
        stream = _Stream(offset, end, chunk_size)
        refreshed, fresh = False, False
        while not stream.done:
            url = await locate(fresh)
            fresh = False
            request = self._range_request(url, stream, auth)
            reply = bulk.Reply(self.bulk, request)
            try:
                await self._send_bulk(reply, reply.open, stream.small())
            except httpx.TransportError as exc:
                stream.failures = await self._failed(request, exc, stream.failures, True)
                continue
            try:
                if reply.status_code == 416:
                    break
                if reply.status_code == 403 and not refreshed:
                    log.debug("GET %s: 403, asking for a fresh link", safe_url(url))
                    refreshed = fresh = True
                    continue
                if not 200 <= reply.status_code < 300:
                    response = await threads.run_sync(reply.error_reply)
                    stream.failures = await self._failed(request, response, stream.failures,
                                                         True, errors)
                    continue
                _check_body(reply, url, expected_size)
                if reply.status_code == 200 and stream.position:
                    if "Range" in request.headers and whole_reply is not None:
                        whole_reply()
                    await self._skip(reply, stream.position)
                async for buffer in self._body(reply, stream):
                    yield buffer
                break  # the body ended; a short one is for the caller to judge
            except httpx.TransportError as exc:
                stream.failures = await self._failed(request, exc, stream.failures, True)
            finally:
                reply.close()
        if stream.filled and stream.filled < len(stream.buffer):
            yield stream.buffer[:stream.filled]

    def _range_request(self, url: str | httpx.URL, stream: _Stream,
                       auth: httpx.Auth | None) -> httpx.Request:
        """The GET of what the stream still wants, signed by ``auth`` if given."""
        headers = {}
        if stream.position or stream.end is not None:
            last = "" if stream.end is None else str(stream.end - 1)
            headers["Range"] = f"bytes={stream.position}-{last}"
        return _signed(self.client.build_request("GET", url, headers=headers), auth)

    async def _body(self, reply: bulk.Reply, stream: _Stream) -> AsyncIterator[memoryview]:
        """The reply's body into the stream's buffers (received in one worker
        thread), each yielded once full; a transport failure leaves the stream
        where the bytes stopped."""
        left = None if stream.end is None else stream.end - stream.position
        body: bulk.Body | bulk.Received
        if reply.first is not None:  # a small body, received with the reply's head
            body = bulk.Received(reply.first)
        else:
            body = bulk.Body(reply, stream.buffer[stream.filled:], left, stream.chunk_size)
        try:
            while (fill := await body.next()) is not None:
                buffer, got, failure = fill
                if buffer is not None:
                    stream.buffer, stream.filled = buffer, 0
                self.stats.bytes_in += got
                stream.advance(got)
                if failure is not None:
                    raise failure
                if stream.filled == len(stream.buffer):
                    # handed over: the reader may give it back for reuse at once
                    full, stream.buffer, stream.filled = stream.buffer, memoryview(b""), 0
                    yield full
                elif not stream.done:
                    return
        finally:
            await body.stop()

    async def _send_bulk(self, reply: bulk.Reply, send: Callable, *args):
        """``send(*args)`` (the reply's ``open`` or ``whole``) in a worker
        thread, counted and logged as a request; its result."""
        self.stats.requests += 1
        self.stats.bytes_out += len(reply.request.content)
        started = time.monotonic()
        result = await self._receive(reply, send, *args)
        if log.isEnabledFor(logging.DEBUG):  # redacting a URL costs ~0.1 ms: only when shown
            log.debug("%s %s -> %d (%.0f ms)", reply.request.method, safe_url(reply.request.url),
                      reply.status_code, (time.monotonic() - started) * 1000)
        return result

    async def _skip(self, reply: bulk.Reply, count: int) -> None:
        """Read past the first ``count`` bytes of a body, in bounded memory."""
        scratch = memoryview(bytearray(min(count, BODY_CHUNK)))
        while count:
            got = await self._receive(reply, reply.fill, scratch[:min(count, len(scratch))])
            self.stats.bytes_in += got
            if reply.failure is not None:
                raise reply.failure
            if not got:
                return
            count -= got

    async def _receive(self, reply: bulk.Reply, work: Callable, *args):
        """``work(*args)`` (a read of the reply) in a worker thread; its result."""
        try:
            return await threads.run_sync(work, *args, abandon_on_cancel=True)
        except trio.Cancelled:
            reply.abort()  # the abandoned worker wakes and ends, its connection closed
            raise

    async def _send_in_worker(self, request: httpx.Request, auth: httpx.Auth | None,
                              idempotent: bool) -> httpx.Response:
        reply = bulk.Reply(self.bulk, _signed(request, auth), resend=idempotent)
        return await self._send_bulk(reply, reply.whole)

    async def _send(self, request: httpx.Request, auth: httpx.Auth | None,
                    stream: bool = False) -> httpx.Response:
        self.stats.requests += 1
        self.stats.bytes_out += int(request.headers.get("Content-Length", 0))
        started = time.monotonic()
        response = await self.client.send(request, auth=auth or httpx.USE_CLIENT_DEFAULT,
                                          stream=stream)
        if log.isEnabledFor(logging.DEBUG):  # redacting a URL costs ~0.1 ms: only when shown
            log.debug("%s %s -> %d (%.0f ms)", request.method, safe_url(request.url),
                      response.status_code, (time.monotonic() - started) * 1000)
        return response

    async def _failed(self, request: httpx.Request,
                      failure: httpx.Response | httpx.TransportError, failures: int,
                      idempotent: bool, errors: ErrorMapper = status_error) -> int:
        """Sleep before the next attempt and return the failure count, or raise
        the final error."""
        failures += 1
        where = f"{request.method} {safe_url(request.url)}"
        if isinstance(failure, httpx.Response):
            what = f"HTTP {failure.status_code}"
            wait = retry_after(failure)
        else:
            what = f"{type(failure).__name__}: {redact(str(failure))}"
            wait = None
        if failures >= self.policy.attempts or not is_temporary(failure, idempotent=idempotent):
            if isinstance(failure, httpx.Response):
                raise self._final(errors(failure))
            raise self._final(RemoteIOError(f"{where}: {what}"))
        delay = self.policy.delay(failures, wait)
        self.stats.retries += 1
        log.info("%s: %s; retry %d of %d in %.2f s", where, what, failures,
                 self.policy.attempts - 1, delay)
        await trio.sleep(delay)
        return failures

    def _final(self, error: FsError) -> FsError:
        self.stats.errors += 1
        log.debug("giving up: %s", error)
        return error


def _total_size(response: httpx.Response | bulk.Reply) -> int | None:
    """The whole resource's size as a 200 or 206 reply states it, if it does."""
    if response.status_code == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


@dataclass
class _Stream:
    """Where a ranged read has got to, across reconnections: the buffer being
    filled holds the bytes from ``position - filled``."""

    position: int
    end: int | None
    chunk_size: int
    buffer: memoryview = memoryview(b"")
    filled: int = 0
    failures: int = 0  # in a row, without a byte received

    @property
    def done(self) -> bool:
        return self.end is not None and self.position >= self.end

    def small(self) -> int:
        """The bytes still wanted when they fit one buffer, at a buffer's
        start (a whole small file): received with the reply's head. 0 else."""
        if self.end is None or self.filled:
            return 0
        left = self.end - self.position
        return left if 0 < left <= self.chunk_size else 0

    def advance(self, got: int) -> None:
        self.filled += got
        self.position += got
        if got:
            self.failures = 0


def _check_body(reply: bulk.Reply, url: str | httpx.URL, expected_size: int | None) -> None:
    """Refuse a body that is not the bytes of the file as listed."""
    encoding = reply.headers.get("Content-Encoding", "identity").lower()
    if encoding != "identity":  # asked for identity: these are not the file's bytes
        raise RemoteIOError(f"GET {safe_url(url)}: the reply is encoded as "
                            f"{encoding!r}, not the file's own bytes")
    total = _total_size(reply)
    if expected_size is not None and total is not None and total != expected_size:
        raise Stale(f"{safe_url(url)} changed on the store while being read "
                    f"({expected_size} bytes when listed, {total} now)")
