"""The tenant file store: a plain path-based API under ``/api/v1/files``.

Keys are the store's relative paths (``""`` for the root), versions
``<size>@<updated_at>`` for files. Listings are not paginated: each folder is
one page. Uploads are one multipart/form-data POST per file, streamed from the
local copy (read off the trio thread) so a 50 MiB file never sits in memory;
the API replaces a file whole, so an upload is safe to retry. The server
refuses files over 50 MiB (413, FileTooLarge) and uploads over the quota
(507, NoSpace); the API has no quota endpoint, so capacity is unknown (0, 0).
The upload's reply says path and size but no time, so not the version: the
uploads into one folder that finish together learn theirs from one shared
listing (``batch_listing``), not one listing each.

Whether downloads honour ``Range`` is not documented: reads ask for ranges,
and the first whole-file answer (200 to a ranged request) turns
``ranged_reads`` off, so the cache fetches files whole from then on.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Hashable
from contextlib import asynccontextmanager
from typing import BinaryIO, cast

import cachetools
import httpx

from vagonfs.errors import AlreadyExists, IsADirectory, NotEmpty, RemoteIOError
from vagonfs.remote.base import (Capabilities, Capacity, Entry, ProgressFn, Store,
                                 cache_key_prefix)
from vagonfs.remote.batch_listing import ListingBatches
from vagonfs.remote.file_bodies import file_range
from vagonfs.remote.http import HeaderAuth, HttpClient
from vagonfs.remote.replies import parse_timestamp, reply_shape

log = logging.getLogger("vagonfs.tenant")

MAX_FILE_SIZE = 52_428_800  # 50 MiB, accepted exactly


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _path(entry: Entry) -> str:
    """The entry's key: on this store, its path."""
    return cast(str, entry.key)


def _quote(value: str) -> str:
    """A quoted-string for a multipart header parameter (RFC 7578 §4.2)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TenantStore(Store):
    capabilities = Capabilities(read_only=False, can_rename=True, max_file_size=MAX_FILE_SIZE,
                                lookup_lists=True)

    def __init__(self, http: HttpClient, url: str, api_key: str):
        self.http = http
        self._files = url.rstrip("/") + "/api/v1/files"
        self._auth = HeaderAuth("Authorization", f"Bearer {api_key}")
        self._ranged = True
        self._after_upload = ListingBatches(self.list)
        self._started = time.time()
        self._cache_prefix = cache_key_prefix("tenant", 1, url)
        # folder path -> its time: the API gives folders none, so it is the
        # newest time among its items once it was listed, else when this mount
        # first saw it (made it, or listed its parent)
        self._folder_times: cachetools.LRUCache = cachetools.LRUCache(maxsize=100_000)

    @property
    def ranged_reads(self) -> bool:
        return self._ranged

    def cache_key(self, key: Hashable) -> str:
        """``tenant/1@<remote>:<path>``."""
        return self._cache_prefix + cast(str, key)

    async def _call(self, method: str, path: str = "", *, params=None, body: dict | None = None,
                    idempotent: bool = True) -> httpx.Response:
        content, headers = None, None
        if body is not None:
            content = json.dumps(body).encode()
            headers = {"Content-Type": "application/json"}
        return await self.http.request(method, self._files + path, params=params,
                                       headers=headers, content=content, auth=self._auth,
                                       idempotent=idempotent)

    async def check(self) -> None:
        response = await self._call("GET", params={"path": ""})
        with reply_shape("tenant listing"):
            if not isinstance(response.json()["files"] or [], list):
                raise TypeError("'files' is not a list")

    async def root(self) -> Entry:
        return Entry("", True, key="", mtime=self._folder_times.get("", self._started))

    def _entry(self, item: dict, folder: str, listed_at: float) -> Entry:
        """An item as an entry. Times, never 0: its ``updated_at``, else (a
        folder) the time kept for it, else the time of this listing."""
        name = "" if item["name"] is None else str(item["name"])  # the filesystem skips ""
        path = str(item.get("path") or _join(folder, name)).strip("/")
        if item.get("is_dir"):
            mtime = parse_timestamp(item.get("updated_at")) \
                or self._folder_times.setdefault(path, listed_at)
            return Entry(name, True, key=path, mtime=mtime)
        size = int(item.get("size") or 0)
        updated = item.get("updated_at") or ""
        return Entry(name, False, key=path, size=size,
                     mtime=parse_timestamp(updated) or listed_at, version=f"{size}@{updated}")

    async def list(self, folder: Entry) -> AsyncGenerator[list[Entry], None]:
        response = await self._call("GET", params={"path": folder.key})
        with reply_shape("tenant listing"):
            items = response.json()["files"] or []
            if not isinstance(items, list):
                raise TypeError("'files' is not a list")
        entries, listed_at = [], time.time()
        for item in items:  # one bad item is skipped, not the whole folder
            try:
                with reply_shape("tenant listing item"):
                    entries.append(self._entry(item, _path(folder), listed_at))
            except RemoteIOError as exc:
                log.warning("skipping an item of the listing of %s: %s", _path(folder) or "/", exc)
        newest = max((parse_timestamp(i.get("updated_at")) for i in items
                      if isinstance(i, dict)), default=0.0)
        if newest:
            self._folder_times[folder.key] = newest
        yield entries

    async def lookup(self, folder: Entry, name: str) -> Entry:
        """A listing of the folder (the API cannot look up one name), shared
        with the uploads into it (``batch_listing``)."""
        return await self._after_upload.lookup(folder, name)

    @asynccontextmanager
    async def read(self, entry: Entry, offset: int = 0, end: int | None = None):
        if entry.is_dir:
            raise IsADirectory(f"{entry.name} is a folder")
        url = httpx.URL(self._files + "/download", params={"path": entry.key})

        async def locate(fresh: bool) -> httpx.URL:
            return url

        def whole_reply() -> None:
            self._ranged = False

        chunks = self.http.stream_range(locate, offset, end, auth=self._auth,
                                        whole_reply=whole_reply, expected_size=entry.size)
        try:
            yield chunks
        finally:
            await chunks.aclose()

    async def upload(self, folder: Entry, name: str, source: BinaryIO, size: int, *,
                     content_type: str | None = None, progress: ProgressFn | None = None,
                     replace: bool = True) -> Entry:
        """The API always replaces (no conditional write): ``replace`` changes nothing."""
        fd = source.fileno()
        boundary = uuid.uuid4().hex
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"path\"\r\n\r\n"
                f"{_path(folder)}\r\n--{boundary}\r\nContent-Disposition: form-data; "
                f"name=\"files\"; filename={_quote(name)}\r\nContent-Type: "
                f"{content_type or 'application/octet-stream'}\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        async def body() -> AsyncIterator[bytes]:
            yield head
            async for data in file_range(fd, 0, size, progress):
                yield data
            yield tail

        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
                   "Content-Length": str(len(head) + size + len(tail))}
        async with self._after_upload.sending(folder):
            response = await self.http.request("POST", self._files + "/upload",
                                               headers=headers, content=body, auth=self._auth)
        with reply_shape("tenant upload"):
            stored = {str(u["path"]).strip("/"): int(u["size"])
                      for u in response.json()["uploaded"]}
        path = _join(_path(folder), name)
        if stored.get(path) != size:
            raise RemoteIOError(f"the store says it holds {stored.get(path)} bytes of {path} "
                                f"where {size} were sent")
        # the reply has no time, so no version: one listing tells it for a batch
        return await self._after_upload.entry(folder, name)

    async def mkdir(self, folder: Entry, name: str) -> Entry:
        path = _join(_path(folder), name)
        await self._call("POST", "/mkdir", body={"path": path}, idempotent=False)
        return Entry(name, True, key=path,
                     mtime=self._folder_times.setdefault(path, time.time()))

    async def delete(self, entry: Entry) -> None:
        try:
            await self._call("DELETE", params={"path": entry.key})
        except AlreadyExists as exc:  # the store's 409 here means "not empty"
            raise NotEmpty(exc.message, status=exc.status) from None

    async def rename(self, entry: Entry, folder: Entry, name: str) -> Entry:
        await self._call("POST", "/move",
                         body={"src_path": entry.key, "dst_path": _join(_path(folder), name)},
                         idempotent=False)
        return await self.lookup(folder, name)

    async def capacity(self) -> Capacity:
        return Capacity(0, 0)
