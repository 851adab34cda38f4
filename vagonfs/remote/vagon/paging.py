"""Vagon's paginated lists read as one consistent listing, in one item shape.

The first page is asked with ``per_page=100``; the server may serve fewer
(it clamps), so the page size is read from the reply. Once ``count`` is
known, the remaining pages are fetched ``PAGE_PARALLELISM`` at a time and
still handed out in order: over a link of 40 ms a folder of 1,000 files is
page 1 and then one round trip for the nine others, where one page after
another was ten. Pages go over the worker-thread connections that download
links and file bodies use (the worker transport, ``vagonfs.remote.transports``):
one pool, so the connection a lookup opened is there for the link and the GET
after it, where two pools made the first link after a lookup wait for a
handshake. Items come flat or as JSON:API objects
(``{id, type, attributes}``); callers see one shape (``flatten``).
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Awaitable, Callable

from vagonfs.errors import ListingChanged, RemoteIOError
from vagonfs.remote.base import task_group
from vagonfs.remote.replies import reply_shape

PER_PAGE = 100
PAGE_PARALLELISM = 16  # pages asked at once: within the HTTP client's connections

CallFn = Callable[[str, dict], Awaitable[dict]]  # (path, params): one signed GET of a page


async def pages(call: CallFn, path: str, items_key: str, params: dict | None = None
                ) -> AsyncGenerator[list[dict], None]:
    """Every page of a paginated list, in order, items flattened.

    Pages are asked by number, so an entry added or removed between two
    pages shifts the rest: one would be shown twice or not at all. Every
    reply states the folder's ``count``; a count that changes, an id seen
    twice, or fewer items than counted raise ListingChanged, and the
    caller reads the listing again rather than trusting a stitched one.
    """
    params = dict(params or {}, per_page=PER_PAGE)

    async def fetch(page: int) -> dict:
        return await call(path, dict(params, page=page))

    reply = await fetch(1)
    with reply_shape("Vagon page"):
        count = int(reply.get("count") or 0)
    read = _Pages(path, items_key, count)
    first = read.items(reply, 1)
    yield first
    served = len(first)
    with reply_shape("Vagon page"):
        last_page = math.ceil(count / served) if served else None
        next_page = int(reply.get("next_page") or 0)
    while next_page and served:
        window = _window(next_page, last_page)
        replies = await _fetch_each(fetch, window)
        for page in window:
            batch = read.items(replies[page], page)
            yield batch
            with reply_shape("Vagon page"):
                next_page = int(replies[page].get("next_page") or 0)
            if not batch:
                next_page = 0
            if not next_page:
                break
    if read.total < count:
        raise ListingChanged(f"GET {path}: {read.total} items served where {count} "
                             "were counted")


class _Pages:
    """The pages of one paginated read so far: what tells that the list
    changed under it (``pages``)."""

    def __init__(self, path: str, items_key: str, count: int):
        self._path = path
        self._items_key = items_key
        self._count = count
        self._seen: set[object] = set()
        self.total = 0  # items served

    def items(self, reply: dict, page: int) -> list[dict]:
        listed = reply.get(self._items_key) or []
        if not isinstance(listed, list):
            raise RemoteIOError(f"GET {self._path}: {self._items_key!r} is not a list")
        with reply_shape("Vagon page"):
            if int(reply.get("count") or 0) != self._count:
                raise ListingChanged(f"GET {self._path}: page {page} counts "
                                     f"{reply.get('count')} items, page 1 counted {self._count}")
        flat = [flatten(i) for i in listed if isinstance(i, dict)]
        for item in flat:
            ident = item.get("id")
            if not isinstance(ident, (int, str)):
                continue  # unreadable: the caller skips such an item
            if ident in self._seen:
                raise ListingChanged(f"GET {self._path}: item {ident} on two pages")
            self._seen.add(ident)
        self.total += len(flat)
        return flat


def _window(next_page: int, last_page: int | None) -> list[int]:
    """The pages to ask at once: up to ``PAGE_PARALLELISM`` while the count
    says where the list ends, else one at a time."""
    if last_page is not None and next_page <= last_page:
        return list(range(next_page, min(next_page + PAGE_PARALLELISM, last_page + 1)))
    return [next_page]


async def _fetch_each(fetch: Callable[[int], Awaitable[dict]], pages: list[int]
                      ) -> dict[int, dict]:
    replies: dict[int, dict] = {}

    async def fetch_into(page: int) -> None:
        replies[page] = await fetch(page)

    async with task_group() as nursery:
        for page in pages:
            nursery.start_soon(fetch_into, page)
    return replies


def flatten(item: dict) -> dict:
    """One item shape for flat objects and JSON:API ``{id, type, attributes}`` ones."""
    attributes = item.get("attributes")
    if not isinstance(attributes, dict):
        return item
    flat = dict(attributes)
    flat["id"] = _as_id(item.get("id", attributes.get("id")))
    flat.setdefault("type", item.get("type"))
    return flat


def _as_id(value):
    """JSON:API sends ids as strings; flat items as numbers. Keys compare equal either way."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value
