"""Vagon's presigned download URLs ("links" in its API), asked once and reused until near their end.

A read of a Vagon file goes to the object store through a link the API
hands out per file. Asking one per read would double the requests of every
read; a link is kept (per file id, with the version it was asked for) until
shortly before it expires, and replaced at once when the object store
refuses it (403).

At most ``ASKED_AT_ONCE`` links are asked at a time, however many files are
fetched ahead (a folder copied: ``core/folder_prefetch.py``), each over a
connection of its own: as many as the files fetched ahead, so the links of
a window go together over a link of 40 ms (eight at a time made ``rsync``
of 200 small files wait 25 round trips for their links alone, 32 one or two
more than 64), and still a bound on the connections a copy opens to the API.
Links are asked in a worker thread (the worker transport,
``vagonfs.remote.transports``), so asking them costs the trio thread little.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import NamedTuple
from urllib.parse import urljoin

import cachetools
import trio

from vagonfs.remote.replies import parse_timestamp, reply_shape
from vagonfs.remote.vagon.api import VagonApi

LINKS_KEPT = 4096  # files whose link is kept
ASKED_AT_ONCE = 64


# the two query parameters that say when a presigned (SigV4) link ends; a
# search, not parse_qs and strptime: a fifth of the cost, once a file read
_SIGNED_AT = re.compile(r"[?&]X-Amz-Date=(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z(?:&|$)")
_LASTS = re.compile(r"[?&]X-Amz-Expires=(\d+)(?:&|$)")


def link_expiry(url: str, expires_at) -> float:
    """When a presigned link stops working: X-Amz-Date + X-Amz-Expires from the
    URL, else the reply's ``expires_at``, else five minutes from now."""
    signed, lasts = _SIGNED_AT.search(url), _LASTS.search(url)
    if signed and lasts:
        try:
            year, month, day, hour, minute, second = map(int, signed.groups())
            issued = datetime(year, month, day, hour, minute, second,
                              tzinfo=timezone.utc).timestamp()
            return issued + int(lasts.group(1))
        except ValueError:  # a date that does not exist
            pass
    return parse_timestamp(expires_at) or time.time() + 300


class _Link(NamedTuple):
    version: str
    url: str
    renew_at: float


class DownloadUrls:
    """Protects: the links kept and a lock per file while its link is asked;
    trio-thread only."""

    def __init__(self, api: VagonApi):
        self._api = api
        self._links: cachetools.LRUCache = cachetools.LRUCache(maxsize=LINKS_KEPT)  # id -> _Link
        self._locks: dict[int, trio.Lock] = {}  # file id -> lock, while a link is asked
        self._asking = trio.CapacityLimiter(ASKED_AT_ONCE)

    async def get(self, file_id: int, version: str, failed: str | None) -> str:
        """A link to ``version`` of the file; ``failed`` is one the object
        store refused, to be replaced. The parallel runs of one file wait for
        one another here, so they share one link request instead of asking
        for a link each."""
        lock = self._locks.setdefault(file_id, trio.Lock())
        try:
            async with lock:
                link = self._links.get(file_id)
                if link is not None and link.version == version and link.url != failed \
                        and time.time() < link.renew_at:
                    return link.url
                async with self._asking:
                    reply = await self._api.download_link(file_id)
                with reply_shape("Vagon download link"):
                    url = reply["url"]
                    if not isinstance(url, str) or not url:
                        raise ValueError(f"url is {url!r}")
                return self._keep(file_id, version, url, reply.get("expires_at"))
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._locks.pop(file_id, None)

    def uploaded(self, file_id: int, version: str, complete: dict) -> None:
        """An upload's complete names a link to the new content (``download_url``):
        kept, so reading back a file just written asks for none."""
        url = complete.get("download_url")
        if isinstance(url, str) and url:
            self._keep(file_id, version, url, complete.get("expires_at"))

    def _keep(self, file_id: int, version: str, url: str, expires_at) -> str:
        # urljoin, not httpx.URL.join: an order of magnitude cheaper, once a file
        url = urljoin(self._api.base_url, url)
        expires, now = link_expiry(url, expires_at), time.time()
        renew_at = expires - min(60.0, max(0.0, expires - now) * 0.1)
        self._links[file_id] = _Link(version, url, renew_at)
        return url

    def forget(self, file_id: int) -> None:
        """The file is deleted: its link is of no use."""
        self._links.pop(file_id, None)
