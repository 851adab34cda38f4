"""What every route handler reaches: settings, storage, links, faults, stats.

One ``Emulator`` per process, hung on the Starlette app's state, so handlers
stay plain functions of their request.
"""

from __future__ import annotations

import argparse
import hmac
import threading
from collections import Counter
from dataclasses import dataclass, field

from starlette.requests import Request

from vagonfs.emulator.bad_input import BadInput
from vagonfs.emulator.faults import Faults
from vagonfs.emulator.presigned import Presigner
from vagonfs.emulator.storage import Storage
from vagonfs.emulator.vagon.pages import ListingPages



@dataclass
class Stats:
    """Requests and errors per route name, bytes in and out, and the round
    trips a client waited for (admin not counted).

    ``round_trips`` is the longest chain of requests each of which began
    after the one before it had ended: what a client over a slow link waits
    for, as opposed to the requests it sends side by side. A request's
    depth is one more than the deepest request that had ended when it
    arrived. Over loopback every request ends before the client sends the
    next, so the count means something only with latency added (a fault
    rule's ``latency_ms``), where requests sent together overlap: then it
    is the same from run to run, unlike a time.

    ``connections`` counts the clients' connections that sent a request:
    over a real link each new one costs a round trip more (its handshake),
    which the latency rule does not add, so this is how a test sees it.
    """
    requests: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    round_trips: int = 0  # the deepest request that has ended
    clients: set = field(default_factory=set)  # (host, port) of each connection seen
    lock: threading.Lock = field(default_factory=threading.Lock)

    def began(self, route: str, client: tuple | None) -> int:
        """Count a request arriving on ``client``'s connection; its depth, for ``ended``."""
        with self.lock:
            self.requests[route] += 1
            self.clients.add(client)
            return self.round_trips + 1

    def ended(self, depth: int) -> None:
        with self.lock:
            self.round_trips = max(self.round_trips, depth)

    def snapshot(self) -> dict:
        with self.lock:
            return {"requests": dict(self.requests), "errors": dict(self.errors),
                    "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                    "round_trips": self.round_trips, "connections": len(self.clients)}

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.errors.clear()
            self.clients.clear()
            self.bytes_in = self.bytes_out = self.round_trips = 0


@dataclass
class Emulator:
    settings: argparse.Namespace
    storage: Storage
    faults: Faults
    links: Presigner
    public_url: str
    stats: Stats = field(default_factory=Stats)
    bad_input: BadInput = field(default_factory=BadInput)
    completing: dict = field(default_factory=dict)  # file id -> asyncio.Lock of its complete
    writing_parts: dict = field(default_factory=dict)  # (upload uid, part) -> asyncio.Lock
    pages: ListingPages = field(default_factory=ListingPages)

    @property
    def api_key(self) -> str:
        return self.settings.api_key


def of(request: Request) -> Emulator:
    return request.app.state.emulator


def bearer_ok(request: Request, api_key: str) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and same_secret(token.strip(), api_key)


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison, so the emulator does not teach timing attacks."""
    return hmac.compare_digest(given.encode(), expected.encode())
