"""The HTTP layer every store shares: one pool, one retry policy, one error shape.

A mount opens one :class:`httpx.AsyncClient` (keep-alive, enough connections
for parallel part uploads) and wraps it in :class:`HttpClient`, which every
store module uses for every request. httpx runs under trio through anyio.

Retries follow s3ql's habit: one question, :func:`is_temporary`, decides
whether a failure is worth another attempt, and one loop retries it with
full-jitter exponential backoff (or the server's ``Retry-After``) for a
bounded number of attempts. A request that is not idempotent (a Vagon create,
a tenant move) is retried only when the server cannot have acted on it: the
connection never opened, or the server answered 429/503 ("not now").

Every final failure leaves as exactly one :class:`~vagonfs.errors.StoreError`
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

import email.utils
import os
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
import trio

from vagonfs.errors import RemoteIOError, Stale, StoreError, error_for_status
from vagonfs.remote import bulk

log = logging.getLogger("vagonfs.http")

TIMEOUT = httpx.Timeout(60.0, connect=10.0)
# 32 connections: parallel part uploads of one file plus the reads and
# listings that the filesystem keeps serving meanwhile.
LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=32, keepalive_expiry=30.0)

# Bodies of file reads come in buffers of this size: the block cache's block.
BODY_CHUNK = 1024 * 1024

# What a store turns a final error reply (body already read) into.
ErrorMapper = Callable[[httpx.Response], StoreError]
# The body of a request: bytes, or a factory giving a fresh stream per attempt.
Body = bytes | Callable[[], AsyncIterable[bytes]] | None


def new_client() -> httpx.AsyncClient:
    """The mount's one client. ``identity`` encoding keeps ranged byte counts exact."""
    return httpx.AsyncClient(timeout=TIMEOUT, limits=LIMITS, follow_redirects=False,
                             headers={"Accept-Encoding": "identity",
                                      "User-Agent": "vagonfs"})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a temporary failure is retried."""

    attempts: int = 6  # in all, the first one included
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0  # a server asking for longer is not waited for in full

    def delay(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (failures - 1)))


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


def safe_url(url: httpx.URL | str) -> str:
    """The URL as logs and messages may show it: no query string, no user info."""
    url = httpx.URL(url)
    return str(url.copy_with(query=None, fragment=None, userinfo=b""))


_URL_QUERY = re.compile(r"(https?://[^\s?#\"']+)\?[^\s\"']*")


def _redact(text: str) -> str:
    return _URL_QUERY.sub(r"\1?…", text)


def server_message(response: httpx.Response) -> str:
    """The server's own words: a JSON ``message``/``error``, an S3 XML
    ``<Message>``, else the start of the body."""
    body = response.content
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        for field in ("message", "error", "detail"):
            if isinstance(data.get(field), str) and data[field]:
                return data[field]
    text = body.decode("utf-8", "replace")
    match = re.search(r"<Message>(.*?)</Message>", text, re.DOTALL)
    if match:
        return match.group(1).strip()
    return _redact(text.strip()[:200]) or response.reason_phrase or "no message"


def describe(response: httpx.Response) -> str:
    """``METHOD url: server message`` for an error reply."""
    request = response.request
    return f"{request.method} {safe_url(request.url)}: {server_message(response)}"


def status_error(response: httpx.Response) -> StoreError:
    """The default mapper: by HTTP status alone."""
    return error_for_status(response.status_code, describe(response))


def is_temporary(failure: httpx.Response | httpx.TransportError, *, idempotent: bool) -> bool:
    """Whether another attempt may succeed, and may be made without harm.

    Refusals that say "not now" (429, 503) and connections that never opened
    leave the server untouched, so even a create can be sent again; any other
    network failure or 5xx may have happened after the server acted, so only
    an idempotent request is repeated.
    """
    if isinstance(failure, httpx.Response):
        status = failure.status_code
        if status in (429, 503):
            return True
        return idempotent and status >= 500 and status not in (501, 505, 507)
    if isinstance(failure, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return True
    return idempotent and isinstance(
        failure, (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the other form RFC 9110 allows: an HTTP date
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


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
                      errors: ErrorMapper = status_error) -> httpx.Response:
        """Send until success or a final failure; the reply's body is read."""
        failures = 0
        while True:
            body = content() if callable(content) else content
            request = self.client.build_request(method, url, params=params, headers=headers,
                                                content=body)
            try:
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
                           ) -> AsyncIterator[bytearray]:
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
        position, failures, refreshed, fresh = offset, 0, False, False
        buffer, filled = bytearray(), 0  # the buffer being filled, from position - filled
        while end is None or position < end:
            url = await locate(fresh)
            fresh = False
            headers = {}
            if position or end is not None:
                last = "" if end is None else str(end - 1)
                headers["Range"] = f"bytes={position}-{last}"
            request = self.client.build_request("GET", url, headers=headers)
            if auth is not None:
                request = next(auth.sync_auth_flow(request))
            reply = bulk.Reply(self.bulk, request)
            try:
                await self._send_bulk(reply)
            except httpx.TransportError as exc:
                failures = await self._failed(request, exc, failures, True)
                continue
            try:
                if reply.status_code == 416:
                    break
                if reply.status_code == 403 and not refreshed:
                    log.debug("GET %s: 403, asking for a fresh link", safe_url(url))
                    refreshed = fresh = True
                    continue
                if not 200 <= reply.status_code < 300:
                    response = await trio.to_thread.run_sync(reply.error_reply)
                    failures = await self._failed(request, response, failures, True, errors)
                    continue
                encoding = reply.headers.get("Content-Encoding", "identity").lower()
                if encoding != "identity":  # asked for identity: these are not the file's bytes
                    raise RemoteIOError(f"GET {safe_url(url)}: the reply is encoded as "
                                        f"{encoding!r}, not the file's own bytes")
                total = _total_size(reply)
                if expected_size is not None and total is not None and total != expected_size:
                    raise Stale(f"{safe_url(url)} changed on the store while being read "
                                f"({expected_size} bytes when listed, {total} now)")
                if reply.status_code == 200 and position:
                    if headers and whole_reply is not None:
                        whole_reply()
                    await self._skip(reply, position)
                while end is None or position < end:
                    if filled == len(buffer):
                        size = chunk_size if end is None else min(chunk_size, end - position)
                        buffer, got = await self._receive(reply, _fill_new, reply, size)
                        filled = 0
                    else:
                        got = await self._receive(reply, reply.fill, memoryview(buffer)[filled:])
                    self.stats.bytes_in += got
                    filled += got
                    position += got
                    if got:
                        failures = 0
                    reply.check()
                    if filled == len(buffer):
                        yield buffer
                    elif end is None or position < end:
                        break  # the body ended: a short one is for the caller to judge
                break
            except httpx.TransportError as exc:
                failures = await self._failed(request, exc, failures, True)
            finally:
                reply.close()
        if filled and filled < len(buffer):
            del buffer[filled:]
            yield buffer

    async def _send_bulk(self, reply: bulk.Reply) -> None:
        self.stats.requests += 1
        started = time.monotonic()
        try:
            await trio.to_thread.run_sync(reply.open, abandon_on_cancel=True)
        except trio.Cancelled:
            reply.abort()  # the abandoned worker's connection is closed, not left sending
            raise
        log.debug("GET %s -> %d (%.0f ms)", safe_url(reply.request.url), reply.status_code,
                  (time.monotonic() - started) * 1000)

    async def _skip(self, reply: bulk.Reply, count: int) -> None:
        """Read past the first ``count`` bytes of a body, in bounded memory."""
        scratch = memoryview(bytearray(min(count, BODY_CHUNK)))
        while count:
            got = await self._receive(reply, reply.fill, scratch[:min(count, len(scratch))])
            self.stats.bytes_in += got
            reply.check()
            if not got:
                return
            count -= got

    async def _receive(self, reply: bulk.Reply, fill: Callable, *args):
        """``fill(*args)`` (a read of the body) in a worker thread; its result."""
        try:
            return await trio.to_thread.run_sync(fill, *args, abandon_on_cancel=True)
        except trio.Cancelled:
            reply.abort()  # the abandoned worker wakes and ends
            raise

    async def _send(self, request: httpx.Request, auth: httpx.Auth | None,
                    stream: bool = False) -> httpx.Response:
        self.stats.requests += 1
        self.stats.bytes_out += int(request.headers.get("Content-Length", 0))
        started = time.monotonic()
        response = await self.client.send(request, auth=auth or httpx.USE_CLIENT_DEFAULT,
                                          stream=stream)
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
            retry_after = _retry_after(failure)
        else:
            what = f"{type(failure).__name__}: {_redact(str(failure))}"
            retry_after = None
        if failures >= self.policy.attempts or not is_temporary(failure, idempotent=idempotent):
            if isinstance(failure, httpx.Response):
                raise self._final(errors(failure))
            raise self._final(RemoteIOError(f"{where}: {what}"))
        delay = self.policy.delay(failures, retry_after)
        self.stats.retries += 1
        log.info("%s: %s; retry %d of %d in %.2f s", where, what, failures,
                 self.policy.attempts - 1, delay)
        await trio.sleep(delay)
        return failures

    def _final(self, error: StoreError) -> StoreError:
        self.stats.errors += 1
        log.debug("giving up: %s", error)
        return error


@contextmanager
def reply_shape(what: str) -> Generator[None, None, None]:
    """Read a reply's fields inside this: one the server left out or sent in
    another type becomes RemoteIOError (EIO), not an exception that would end
    the mount."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise RemoteIOError(f"{what}: unexpected reply from the server "
                            f"({type(exc).__name__}: {_redact(str(exc))[:100]})") from None


@asynccontextmanager
async def task_group() -> AsyncIterator[trio.Nursery]:
    """A nursery whose failure is the first StoreError of its tasks.

    trio groups the errors of parallel tasks; callers of a store expect one
    StoreError (the FUSE boundary converts only those), so a group made only
    of store errors is unwrapped.
    """
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if leaves and all(isinstance(e, StoreError) for e in leaves):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup):
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error


def parse_timestamp(value) -> float:
    """Seconds since the epoch from an ISO 8601 time-stamp; 0 when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if when.tzinfo is None:  # a server that omits the zone means UTC
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _total_size(response: httpx.Response | bulk.Reply) -> int | None:
    """The whole resource's size as a 200 or 206 reply states it, if it does."""
    if response.status_code == 206:
        total = response.headers.get("Content-Range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _fill_new(reply: bulk.Reply, size: int) -> tuple[bytearray, int]:
    """In a worker thread: a new buffer (zeroing 1 MiB is not free either) and
    the bytes received into it."""
    buffer = bytearray(size)
    return buffer, reply.fill(memoryview(buffer))


FILE_CHUNK = 1024 * 1024


async def file_range(fd: int, offset: int, length: int,
                     progress: Callable[[int], None] | None = None) -> AsyncIterator[bytes]:
    """An upload body streamed from a local file, a chunk at a time, read off
    the trio thread: memory stays at one chunk whatever the file's size.
    ``progress`` hears the bytes handed on so far."""
    done = 0
    while done < length:
        data = await trio.to_thread.run_sync(os.pread, fd, min(FILE_CHUNK, length - done),
                                             offset + done)
        if not data:
            raise RemoteIOError(f"the local copy ended at {offset + done} bytes where "
                                f"{offset + length} were to be uploaded")
        done += len(data)
        yield data
        if progress is not None:
            progress(done)
