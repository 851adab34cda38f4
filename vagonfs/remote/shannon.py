"""Shannon session workspaces: read-only, one folder per session.

The root lists the caller's sessions (pages of 100), each a folder named by
its ``session_id``; inside, folders are listed one level at a time and
descended on demand. Keys are ``(session_id, relative path)``, the root
``("", "")``; versions ``<size>@<modified_at>`` (the deployed gateway sends no
time, so there it is the size alone).

The gateway's deployed handlers differ from its documentation (API-NOTES §3),
so both are accepted:

- listing: documented ``{size, modified_at}`` with paths starting with ``/``,
  deployed ``{size_bytes}`` with relative paths (and ``recursive`` ignored);
  entries deeper than the folder asked for are dropped either way;
- download: documented raw bytes, deployed JSON ``{content, content_type,
  size_bytes}`` whose ``content`` is text for textual types and base64
  otherwise. Which one is decided by the content type, checked against
  ``size_bytes`` when the content does not decode as announced.

A deployed download is one JSON document, so files are always fetched whole
(``ranged_reads`` false) and sliced here.
"""

from __future__ import annotations

import base64
import builtins
import binascii
import time
from collections.abc import AsyncGenerator, AsyncIterator, Hashable
from contextlib import aclosing, asynccontextmanager
from typing import BinaryIO, cast
from urllib.parse import quote

import httpx

from vagonfs.errors import IsADirectory, ListingChanged, ReadOnly, RemoteIOError
from vagonfs.remote.base import (Capabilities, Capacity, Entry, ProgressFn, Store,
                                 cache_key_prefix, find_listed)
from vagonfs.remote.http import HeaderAuth, HttpClient
from vagonfs.remote.replies import parse_timestamp, reply_shape

SESSIONS_PAGE = 100
_TEXT_TYPES = ("application/json", "application/xml")

ROOT_KEY = ("", "")


def _key(entry: Entry) -> tuple[str, str]:
    """The entry's key: on this store, (session id, path)."""
    return cast(tuple[str, str], entry.key)


def _is_text(content_type: str | None) -> bool:
    kind = (content_type or "").split(";")[0].strip().lower()
    return kind.startswith("text/") or kind in _TEXT_TYPES


def decode_content(content: str, content_type: str | None, size: int | None) -> bytes:
    """The file's bytes from a deployed download's ``content``.

    Text types carry the text itself, others base64; when the announced form
    does not give ``size`` bytes and the other one does, the other one wins.
    """
    as_text = content.encode("utf-8")
    try:
        as_base64 = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        as_base64 = None
    ordered = [as_text, as_base64] if _is_text(content_type) else [as_base64, as_text]
    candidates = [c for c in ordered if c is not None]
    for candidate in candidates:
        if size is None or len(candidate) == size:
            return candidate
    return candidates[0]


def download_bytes(response: httpx.Response) -> bytes:
    """A download reply in either form, as the file's bytes."""
    kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("content"), str) \
                and ("success" in data or "size_bytes" in data):
            size = data.get("size_bytes")
            return decode_content(data["content"], data.get("content_type"),
                                  size if isinstance(size, int) else None)
    return response.content


class ShannonStore(Store):
    capabilities = Capabilities(read_only=True, can_rename=False, max_file_size=None,
                                lookup_lists=True)

    def __init__(self, http: HttpClient, url: str, api_key: str):
        self.http = http
        self._base = url.rstrip("/") + "/api/v1/sessions"
        self._auth = HeaderAuth("X-API-Key", api_key)
        self._started = time.time()
        self._cache_prefix = cache_key_prefix("shannon", 1, url)
        # session id -> its updated (else created) time: the deployed gateway
        # gives files no time, and what a session holds dates from the session
        self._session_times: dict[str, float] = {}

    @property
    def ranged_reads(self) -> bool:
        return False

    def cache_key(self, key: Hashable) -> str:
        """``shannon/1@<remote>:<session id>:<path>``, the session id %-quoted
        (nothing says it holds no ``:``)."""
        session, path = cast(tuple[str, str], key)
        return f"{self._cache_prefix}{quote(session, safe='')}:{path}"

    async def _get(self, path: str = "", params: dict | None = None) -> httpx.Response:
        return await self.http.request("GET", self._base + path, params=params, auth=self._auth)

    async def _json(self, path: str = "", params: dict | None = None) -> dict:
        response = await self._get(path, params)
        with reply_shape(f"Shannon {path or 'sessions'}"):
            data = response.json()
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
        if data.get("success") is False:
            raise RemoteIOError(f"Shannon: {data.get('error') or 'request failed'}")
        return data

    async def check(self) -> None:
        reply = await self._json(params={"limit": 1, "offset": 0})
        with reply_shape("Shannon sessions"):
            if not isinstance(reply["sessions"] or [], list):
                raise TypeError("'sessions' is not a list")

    async def root(self) -> Entry:
        return Entry("", True, key=ROOT_KEY, mtime=self._started, writable=False)

    async def list(self, folder: Entry) -> AsyncGenerator[list[Entry], None]:
        session, path = _key(folder)
        if not session:
            async with aclosing(self._sessions()) as pages:
                async for page in pages:
                    yield page
            return
        params = {"path": path} if path else None
        reply = await self._json(f"/{quote(session, safe='')}/files", params)
        with reply_shape("Shannon listing"):
            entries = [e for item in reply.get("files") or []
                       if (e := self._entry(session, path, item))]
        yield entries

    async def _sessions(self) -> AsyncGenerator[builtins.list[Entry], None]:
        """The sessions page by page. Pages are asked by offset, so a session
        started or ended between two pages shifts the rest: a ``total_count``
        that changes, or a session seen twice, raises ListingChanged and the
        caller reads the listing again."""
        offset, first_total = 0, None
        seen: set[str] = set()
        while True:
            reply = await self._json(params={"limit": SESSIONS_PAGE, "offset": offset})
            sessions = reply.get("sessions") or []
            total = reply.get("total_count")
            if offset == 0:
                first_total = total
            elif total != first_total:
                raise ListingChanged(f"Shannon sessions: {total} counted at offset {offset}, "
                                     f"{first_total} at the start")
            with reply_shape("Shannon sessions"):
                listed_at = time.time()
                for s in sessions:
                    self._session_times[str(s["session_id"])] = parse_timestamp(
                        s.get("updated_at") or s.get("created_at")) or listed_at
                page = [Entry(str(s["session_id"]), True, key=(str(s["session_id"]), ""),
                              mtime=self._session_times[str(s["session_id"])],
                              writable=False) for s in sessions]
            if any(e.name in seen for e in page):
                raise ListingChanged("Shannon sessions: a session listed on two pages")
            seen.update(e.name for e in page)
            yield page
            offset += len(sessions)
            if not sessions or (isinstance(total, int) and offset >= total) \
                    or (total is None and len(sessions) < SESSIONS_PAGE):
                if isinstance(total, int) and offset < total:
                    raise ListingChanged(f"Shannon sessions: {offset} served where {total} "
                                         "were counted")
                return

    def _entry(self, session: str, folder: str, item: dict) -> Entry | None:
        """An item as an entry; its time is its ``modified_at`` (documented
        form), else its session's (when this mount first saw the session, if
        the session list was not read): never 0."""
        name = item.get("name") or ""
        path = str(item.get("path") or (f"{folder}/{name}" if folder else name)).strip("/")
        parent = path.rpartition("/")[0]
        if parent != folder:  # a recursive answer: deeper entries show in their own folder
            return None
        mtime = parse_timestamp(item.get("modified_at")) \
            or self._session_times.setdefault(session, time.time())
        if item.get("is_dir"):
            return Entry(name, True, key=(session, path), writable=False, mtime=mtime)
        size = int(item.get("size", item.get("size_bytes")) or 0)
        modified = item.get("modified_at") or ""
        return Entry(name, False, key=(session, path), size=size, mtime=mtime,
                     version=f"{size}@{modified}", writable=False)

    async def lookup(self, folder: Entry, name: str) -> Entry:
        return await find_listed(self, folder, name)

    @asynccontextmanager
    async def read(self, entry: Entry, offset: int = 0, end: int | None = None):
        if entry.is_dir:
            raise IsADirectory(f"{entry.name} is a folder")
        session, path = _key(entry)
        response = await self._get(f"/{quote(session, safe='')}/files/{quote(path, safe='/')}")
        data = download_bytes(response)

        async def chunks() -> AsyncIterator[bytes]:
            if data[offset:end]:
                yield data[offset:end]

        yield chunks()

    async def upload(self, folder: Entry, name: str, source: BinaryIO, size: int, *,
                     content_type: str | None = None, progress: ProgressFn | None = None,
                     replace: bool = True) -> Entry:
        raise ReadOnly("Shannon workspaces are read-only")

    async def mkdir(self, folder: Entry, name: str) -> Entry:
        raise ReadOnly("Shannon workspaces are read-only")

    async def delete(self, entry: Entry) -> None:
        raise ReadOnly("Shannon workspaces are read-only")

    async def rename(self, entry: Entry, folder: Entry, name: str) -> Entry:
        raise ReadOnly("Shannon workspaces are read-only")

    async def capacity(self) -> Capacity:
        return Capacity(0, 0)
