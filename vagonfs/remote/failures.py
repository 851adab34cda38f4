"""What a failed request was, whether to try it again, and how to say it.

Retries follow s3ql's habit: one question, :func:`is_temporary`, decides
whether a failure is worth another attempt, and :class:`Retries`, one per
request of :class:`~vagonfs.remote.http.HttpClient` whichever transport
carries it, waits with full-jitter exponential backoff (or the server's
``Retry-After``) for a bounded number of attempts. Messages and log lines name a URL only without its query string
(presigned URLs carry their signature there), so credentials cannot leak.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import trio

from vagonfs.errors import FsError, RemoteIOError, StoreError, error_for_status

log = logging.getLogger("vagonfs.http")

# What a store turns a final error reply (body already read) into.
ErrorMapper = Callable[[httpx.Response], StoreError]

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


def safe_url(url: httpx.URL | str) -> str:
    """The URL as logs and messages may show it: no query string, no user info."""
    url = httpx.URL(url)
    return str(url.copy_with(query=None, fragment=None, userinfo=b""))


_URL_QUERY = re.compile(r"(https?://[^\s?#\"']+)\?[^\s\"']*")


def redact(text: str) -> str:
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
    return redact(text.strip()[:200]) or response.reason_phrase or "no message"


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


def retry_after(response: httpx.Response) -> float | None:
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


class Retries:
    """The attempts of one request under the client's retry policy: every
    failure either waits its turn (``failed`` returns) or is final (raised as
    the store's error). A streamed read counts its failures in a row:
    ``progressed`` starts the count again once bytes came."""

    def __init__(self, policy: RetryPolicy, stats: Stats, idempotent: bool,
                 errors: ErrorMapper):
        self._policy = policy
        self._stats = stats
        self._idempotent = idempotent
        self._errors = errors
        self._failures = 0

    def progressed(self) -> None:
        self._failures = 0

    async def failed(self, request: httpx.Request,
                     failure: httpx.Response | httpx.TransportError) -> None:
        """Sleep before the next attempt, or raise the final error."""
        policy = self._policy
        self._failures += 1
        where = f"{request.method} {safe_url(request.url)}"
        if isinstance(failure, httpx.Response):
            what = f"HTTP {failure.status_code}"
            wait = retry_after(failure)
        else:
            what = f"{type(failure).__name__}: {redact(str(failure))}"
            wait = None
        if self._failures >= policy.attempts or not is_temporary(
                failure, idempotent=self._idempotent):
            if isinstance(failure, httpx.Response):
                raise self.final(self._errors(failure))
            raise self.final(RemoteIOError(f"{where}: {what}"))
        delay = policy.delay(self._failures, wait)
        self._stats.retries += 1
        log.info("%s: %s; retry %d of %d in %.2f s", where, what, self._failures,
                 policy.attempts - 1, delay)
        await trio.sleep(delay)

    def final(self, error: FsError) -> FsError:
        """``error`` ends the request: counted, and what the caller raises."""
        self._stats.errors += 1
        log.debug("giving up: %s", error)
        return error
