"""The ASGI app: the stores' routes in one Starlette router, behind one middleware.

The middleware names each request by its route (``vagon.files``,
``s3.get_object``...), counts it, and applies injected faults before the
handler runs (latency, an error status in the store's own error format) or
while bytes flow (``cut_after``: the connection drops after that many body
bytes, sent or received), or answers 200 with a body that does not decode as
its ``Content-Encoding`` says (``garble``: what a broken proxy sends, which a
client library fails on with an error of its own). Admin routes pass through
untouched.
"""

from __future__ import annotations

import http
import logging

import anyio
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Match, Route

from vagonfs.emulator import admin, archive, s3, shannon, tenant
from vagonfs.emulator.presigned import xml_error
from vagonfs.emulator.context import Emulator
from vagonfs.emulator.faults import Decision
from vagonfs.emulator.vagon import files as vagon_files
from vagonfs.emulator.vagon import machines as vagon_machines
from vagonfs.emulator.vagon.wire import error_reply

class ConnectionCut(Exception):
    """Raised to make the server drop a connection on purpose (``cut_after``)."""


class _HideCuts(logging.Filter):
    """Keep deliberate cuts out of the server's error log; real errors stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionCut))


def _fault_response(emu: Emulator, route: str, status: int, retry_after: float | None):
    phrase = http.HTTPStatus(status).phrase if status in http.HTTPStatus._value2member_map_ \
        else "Error"
    message = f"{phrase} (fault injected by the emulator)"
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    store = route.partition(".")[0]
    if store == "vagon":
        return error_reply(status, message, status, headers)
    if store == "s3":
        code = {503: "SlowDown", 500: "InternalError"}.get(status, phrase.replace(" ", ""))
        return xml_error(status, code, message, headers)
    if store == "shannon":
        return shannon.error(emu.settings.shannon_form == "deployed", status, message, headers)
    return tenant.error(status, message, headers)


class _Exchange:
    """One request on its way through: counts its bytes and carries out its cut.

    A cut on the way in (a request body longer than ``cut_after``) ends the
    handler mid-read; a cut on the way out sends the first ``cut_after`` body
    bytes. Either way the exception reaches the server with a response
    begun, so the server drops the connection instead of answering 500.
    """

    # what a cut sends when no response has begun: a promise of a body it never keeps
    _BROKEN_PROMISE = {"type": "http.response.start", "status": 200,
                       "headers": [(b"content-length", b"1")]}

    def __init__(self, stats, route: str, receive, send, cut_after: int | None):
        self.stats, self.route = stats, route
        self._receive, self._send = receive, send
        self.cut_after = cut_after
        self.started = self.cut = False
        self.received = self.sent = 0

    def _error(self) -> None:
        with self.stats.lock:
            self.stats.errors[self.route] += 1

    async def receive(self):
        message = await self._receive()
        if message["type"] == "http.request":
            size = len(message.get("body", b""))
            self.received += size
            with self.stats.lock:
                self.stats.bytes_in += size
            if self.cut_after is not None and self.received > self.cut_after:
                self.cut = True
                raise ConnectionCut(f"{self.route}: cut after {self.cut_after} bytes received")
        return message

    async def send(self, message) -> None:
        if self.cut:  # an error handler trying to answer the cut: answer nothing
            if self.started:
                raise ConnectionCut(f"{self.route}: cut")
            self.started = True
            return await self._send(self._BROKEN_PROMISE)
        if message["type"] == "http.response.start":
            self.started = True
            if message["status"] >= 400:
                self._error()
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if self.cut_after is not None and self.sent + len(body) > self.cut_after:
                self.cut = True
                body = body[:self.cut_after - self.sent]
                message = {"type": "http.response.body", "body": body, "more_body": True}
            self.sent += len(body)
            with self.stats.lock:
                self.stats.bytes_out += len(body)
        await self._send(message)
        if self.cut:
            raise ConnectionCut(f"{self.route}: cut after {self.cut_after} bytes sent")

    async def finish_cut(self) -> None:
        """After a cut: count it as an error and make sure a response has begun."""
        self._error()
        if not self.started:
            self.started = True
            await self._send(self._BROKEN_PROMISE)


class Instrumented:
    """The middleware: names, counts and (when told to) breaks each store request."""

    def __init__(self, app: Starlette, routes: list[Route], emu: Emulator):
        self.app = app
        self.routes = routes  # the app's, as the named Routes they are
        self.emu = emu

    def route_name(self, scope) -> str | None:
        partial = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return route.name
            if match == Match.PARTIAL and partial is None:
                partial = route.name  # wrong method: still that route's request
        return partial

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = self.route_name(scope)
        if route is None or route.startswith("admin."):
            return await self.app(scope, receive, send)
        stats = self.emu.stats
        decision = self.emu.faults.decide(route)
        depth = stats.began(route, scope.get("client"))
        try:
            await self._answer(scope, route, decision, _Exchange(stats, route, receive, send,
                                                                 decision.cut_after))
        finally:
            stats.ended(depth)

    async def _answer(self, scope, route: str, decision: Decision, exchange: _Exchange) -> None:
        if decision.latency_ms:
            await anyio.sleep(decision.latency_ms / 1000)
        if decision.status is not None:
            response = _fault_response(self.emu, route, decision.status, decision.retry_after)
            return await response(scope, exchange.receive, exchange.send)
        if decision.garble:  # a broken proxy's answer: no client library decodes it
            async def garbled():
                yield b"\x00garbled by the emulator" * 64

            # streamed: no Content-Length, so a client cannot judge it by its size
            response = StreamingResponse(garbled(), 200, headers={"Content-Encoding": "gzip"},
                                         media_type="application/octet-stream")
            return await response(scope, exchange.receive, exchange.send)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except ConnectionCut:
            await exchange.finish_cut()
            raise


def build(emu: Emulator) -> Instrumented:
    enabled = emu.settings.store
    routes = admin.routes()
    if "vagon" in enabled:
        routes += vagon_files.routes() + vagon_machines.routes() + archive.routes() + s3.routes()
    if "tenant" in enabled:
        routes += tenant.routes()
    if "shannon" in enabled:
        routes += shannon.routes()
    app = Starlette(routes=routes)
    app.state.emulator = emu
    archive.fail_interrupted(emu.storage)
    logging.getLogger("uvicorn.error").addFilter(_HideCuts())
    return Instrumented(app, routes, emu)
