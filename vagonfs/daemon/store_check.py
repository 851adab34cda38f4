"""The one question a mount asks its store before it is offered.

A wrong secret, a dead host or a URL that is not the store is refused at
mount time, naming the remote and the cause in the words a user acts on,
instead of at the first ``ls`` (as mountpoint-s3 and s3fs do). Its own
client retries little, so the answer comes within seconds.
"""

from __future__ import annotations

import ssl

import httpx
import trio

from vagonfs.config import Remote
from vagonfs.errors import ConfigError, FsError, NotFound, PermissionDenied
from vagonfs.remote.factory import open_store
from vagonfs.remote.failures import RetryPolicy

CHECK_TIMEOUT = 10.0  # seconds the store has to answer the mount-time check
# a busy store (429, 503) gets a few seconds; a dead one is told within them
CHECK_RETRY = RetryPolicy(attempts=4, base_delay=0.25, max_retry_after=2.0)

_DELAY_HINT = " (to mount before the network is up, add --delay-connect)"
_KINDS = {"vagon": "the Vagon Teams API", "tenant": "a tenant file store",
          "shannon": "a Shannon gateway"}


async def check_store(remote: Remote) -> None:
    """ConfigError saying why, unless the store answers as itself in time."""
    async with open_store(remote, retry=CHECK_RETRY) as (store, _):
        with trio.move_on_after(CHECK_TIMEOUT):
            try:
                await store.check()
            except FsError as exc:
                raise ConfigError(_why_refused(remote, exc)) from None
            return
    raise ConfigError(f"{remote.url} did not answer within {CHECK_TIMEOUT:.0f} s"
                      f"{_DELAY_HINT}")


def _why_refused(remote: Remote, exc: FsError) -> str:
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


def _causes(error: BaseException | None):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
