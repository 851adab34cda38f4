"""The HTTP layer every store shares: one pool, one retry policy, one error shape.

A mount opens one :class:`httpx.AsyncClient` (keep-alive, enough connections
for parallel part uploads) and wraps it in :class:`HttpClient`, which every
store module uses for every request. httpx runs under trio through anyio.

Retries: one policy (``failures.Retries``, one per request, whichever
transport carries it and however many times a streamed read resumes), asking
:func:`~vagonfs.remote.failures.is_temporary` whether a failure is worth
another attempt (see that module). A request that is not idempotent (a Vagon
create, a tenant move) is retried only when the server cannot have acted on
it: the connection never opened, or the server answered 429/503 ("not now").
An attempt goes through a transport (``vagonfs.remote.transports``): httpx's
async client, or the worker-thread client for the calls made once per file.

Every final failure leaves as exactly one :class:`~vagonfs.errors.FsError`
built by the store's error mapper from the server's reply. Messages and log
lines name a URL only without its query string (presigned URLs carry their
signature there) and never include request headers, so credentials cannot
leak through either.

Streaming reads survive a connection cut mid-body: :meth:`HttpClient.stream_range`
asks again from the first byte not yet delivered, so its caller sees one
continuous run of chunks. Their bodies are received in worker threads by
:mod:`vagonfs.remote.worker_http` (why not httpx: see there).
"""

from __future__ import annotations

import logging
import time
from collections.abc import (AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable,
                             Generator)
from dataclasses import dataclass
from typing import TypeVar

import httpx

from vagonfs.errors import RemoteIOError, Stale
from vagonfs.remote.connections import Connections
from vagonfs.remote.failures import ErrorMapper, Retries, RetryPolicy, Stats, safe_url, status_error
from vagonfs.remote.transports import HttpxTransport, Transport, WorkerTransport, signed
from vagonfs.remote.worker_http import BodyReceiver, ReceivedBody, Reply
from vagonfs.runtime import buffers

log = logging.getLogger("vagonfs.http")

R = TypeVar("R")

TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# 32 connections: parallel part uploads of one file plus the reads and
# listings that the filesystem keeps serving meanwhile.
LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=32, keepalive_expiry=30.0)

# Bodies of file reads come in buffers of this size: the block cache's block.
BODY_CHUNK = buffers.RECEIVE_SIZE

# The body of a request: bytes, or a factory giving a fresh stream per attempt.
RequestBody = bytes | Callable[[], AsyncIterable[bytes]] | None


def new_client() -> httpx.AsyncClient:
    """The mount's one client. ``identity`` encoding keeps ranged byte counts exact."""
    return httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS, follow_redirects=False,
                             headers={"Accept-Encoding": "identity",
                                      "User-Agent": "vagonfs"})


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


class HttpClient:
    """Requests with retries, error mapping and statistics, over one shared client."""

    def __init__(self, client: httpx.AsyncClient, policy: RetryPolicy | None = None,
                 stats: Stats | None = None):
        self.client = client
        self.connections = Connections(TIMEOUT)  # the worker-thread client's
        self.httpx = HttpxTransport(client)
        self.worker = WorkerTransport(self.connections)
        self.policy = policy or RetryPolicy()
        self.stats = stats or Stats()

    async def request(self, method: str, url: httpx.URL | str, *, params=None,
                      headers: dict[str, str] | None = None, content: RequestBody = None,
                      auth: httpx.Auth | None = None, idempotent: bool = True,
                      errors: ErrorMapper = status_error,
                      via: Transport | None = None) -> httpx.Response:
        """Send until success or a final failure; the reply's body is read.

        ``via``: the transport (default httpx's; ``self.worker`` for a small
        call made once per file, which costs the trio thread less there,
        see ``vagonfs.remote.transports``).
        """
        transport = via or self.httpx
        retries = self.retries(idempotent, errors)
        while True:
            body = content() if callable(content) else content
            request = self.client.build_request(method, url, params=params, headers=headers,
                                                content=body)
            try:
                response = await self._attempt(
                    request, lambda: transport.send(request, auth, idempotent=idempotent))
            except httpx.TransportError as exc:
                await retries.failed(request, exc)
                continue
            self.stats.bytes_in += len(response.content)
            if response.is_success:
                return response
            if response.status_code < 400:
                raise retries.final(RemoteIOError(
                    f"{method} {safe_url(request.url)}: unexpected HTTP {response.status_code}",
                    status=response.status_code))
            await retries.failed(request, response)

    def retries(self, idempotent: bool, errors: ErrorMapper = status_error) -> Retries:
        """The attempts of one request, under this client's policy."""
        return Retries(self.policy, self.stats, idempotent, errors)

    async def stream_range(self, locate: Callable[[bool], Awaitable[str | httpx.URL]],
                           offset: int = 0, end: int | None = None, *,
                           auth: httpx.Auth | None = None, errors: ErrorMapper = status_error,
                           whole_reply: Callable[[], None] | None = None,
                           expected_size: int | None = None, chunk_size: int = BODY_CHUNK
                           ) -> AsyncGenerator[memoryview, None]:
        """Yield the bytes [offset, end) of a resource in buffers of ``chunk_size``
        (the last one may be shorter), each received in a worker thread (see
        :mod:`vagonfs.remote.worker_http`), and never copied after.

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
        retries = self.retries(True, errors)  # reset by every byte received
        refreshed, fresh = False, False
        while not stream.done:
            url = await locate(fresh)
            fresh = False
            request = self._range_request(url, stream, auth)
            reply = Reply(self.connections, request)
            try:
                await self._attempt(request, lambda: reply.in_worker(reply.open, stream.small()),
                                    reply)
            except httpx.TransportError as exc:
                await retries.failed(request, exc)
                continue
            try:
                if reply.status_code == 416:
                    break
                if reply.status_code == 403 and not refreshed:
                    log.debug("GET %s: 403, asking for a fresh link", safe_url(url))
                    refreshed = fresh = True
                    continue
                if not 200 <= reply.status_code < 300:
                    await retries.failed(request, await reply.in_worker(reply.error_reply))
                    continue
                _check_body(reply, url, expected_size)
                if reply.status_code == 200 and stream.position:
                    if "Range" in request.headers and whole_reply is not None:
                        whole_reply()
                    await self._skip(reply, stream.position)
                async for buffer in self._body(reply, stream, retries):
                    yield buffer
                break  # the body ended; a short one is for the caller to judge
            except httpx.TransportError as exc:
                await retries.failed(request, exc)
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
        return signed(self.client.build_request("GET", url, headers=headers), auth)

    async def _body(self, reply: Reply, stream: _Stream,
                    retries: Retries) -> AsyncIterator[memoryview]:
        """The reply's body into the stream's buffers (received in one worker
        thread), each yielded once full; a transport failure leaves the stream
        where the bytes stopped."""
        left = None if stream.end is None else stream.end - stream.position
        body: BodyReceiver | ReceivedBody
        if reply.first is not None:  # a small body, received with the reply's head
            body = ReceivedBody(reply.first)
        else:
            body = BodyReceiver(reply, stream.buffer[stream.filled:], left, stream.chunk_size)
        try:
            while (fill := await body.next()) is not None:
                buffer, got, failure = fill
                if buffer is not None:
                    stream.buffer, stream.filled = buffer, 0
                self.stats.bytes_in += got
                stream.advance(got)
                if got:
                    retries.progressed()
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

    async def _attempt(self, request: httpx.Request, send: Callable[[], Awaitable[R]],
                       reply: Reply | None = None) -> R:
        """One attempt of ``request`` (``send()``), counted and logged; its result."""
        self.stats.requests += 1
        self.stats.bytes_out += int(request.headers.get("Content-Length", 0))
        started = time.monotonic()
        result = await send()
        if log.isEnabledFor(logging.DEBUG):  # redacting a URL is costly: only when shown
            status = reply.status_code if reply is not None else getattr(result, "status_code", 0)
            log.debug("%s %s -> %d (%.0f ms)", request.method, safe_url(request.url), status,
                      (time.monotonic() - started) * 1000)
        return result

    async def _skip(self, reply: Reply, count: int) -> None:
        """Read past the first ``count`` bytes of a body, in bounded memory."""
        scratch = memoryview(bytearray(min(count, BODY_CHUNK)))
        while count:
            got = await reply.in_worker(reply.fill, scratch[:min(count, len(scratch))])
            self.stats.bytes_in += got
            if reply.failure is not None:
                raise reply.failure
            if not got:
                return
            count -= got



def _total_size(response: httpx.Response | Reply) -> int | None:
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


def _check_body(reply: Reply, url: str | httpx.URL, expected_size: int | None) -> None:
    """Refuse a body that is not the bytes of the file as listed."""
    encoding = reply.headers.get("Content-Encoding", "identity").lower()
    if encoding != "identity":  # asked for identity: these are not the file's bytes
        raise RemoteIOError(f"GET {safe_url(url)}: the reply is encoded as "
                            f"{encoding!r}, not the file's own bytes")
    total = _total_size(reply)
    if expected_size is not None and total is not None and total != expected_size:
        raise Stale(f"{safe_url(url)} changed on the store while being read "
                    f"({expected_size} bytes when listed, {total} now)")
