"""How one attempt of a request reaches the server: two transports, one interface.

``HttpClient`` (``vagonfs.remote.http``) retries, counts and maps the errors
of every request the same way, whatever carries it; a transport only sends
one attempt and answers the reply with its body read, or raises httpx's
``TransportError`` for the retry policy to judge:

- :class:`HttpxTransport`: httpx's async client, on the trio thread; the one
  that sends a streamed body (an upload's parts, read from its spool);
- :class:`WorkerTransport`: the worker-thread client
  (``vagonfs.remote.worker_http``), for the small calls made once per file (a
  Vagon download link; an upload's create, part and complete), where httpx's
  parsing on the trio thread, which also answers FUSE, costs more than the
  call is worth (docs/BENCHMARKS.md, "Figures once in docstrings").

A store picks the transport per call (``HttpClient.request``'s ``via``); the
request is httpx's either way, built and signed as any other.
"""

from __future__ import annotations

from typing import Protocol

import httpx

from vagonfs.remote.connections import Connections
from vagonfs.remote.worker_http import Reply


class Transport(Protocol):
    async def send(self, request: httpx.Request, auth: httpx.Auth | None, *,
                   idempotent: bool) -> httpx.Response:
        """One attempt: the reply, its body read; httpx's ``TransportError``
        when none came. ``idempotent``: may a request that failed on a
        kept-alive connection go again at once on a new one."""
        ...


class HttpxTransport:
    def __init__(self, client: httpx.AsyncClient):
        self.client = client

    async def send(self, request: httpx.Request, auth: httpx.Auth | None, *,
                   idempotent: bool) -> httpx.Response:
        # httpx itself never sends a request twice: ``idempotent`` is the
        # retry policy's to act on
        return await self.client.send(request, auth=auth or httpx.USE_CLIENT_DEFAULT)


class WorkerTransport:
    def __init__(self, connections: Connections):
        self.connections = connections

    async def send(self, request: httpx.Request, auth: httpx.Auth | None, *,
                   idempotent: bool) -> httpx.Response:
        if not isinstance(request.stream, httpx.ByteStream):
            raise ValueError("a streamed body is sent through httpx, not a worker thread")
        reply = Reply(self.connections, signed(request, auth), resend=idempotent)
        return await reply.in_worker(reply.whole)


def signed(request: httpx.Request, auth: httpx.Auth | None) -> httpx.Request:
    """A request sent outside httpx's client, with ``auth`` applied."""
    return request if auth is None else next(auth.sync_auth_flow(request))
