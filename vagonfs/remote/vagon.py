"""Vagon Files as one tree: the organization's files, each machine's, and recordings.

The API has three kinds of file scope (shared files, one per machine, session
recordings) plus machines and their tasks. The mount shows them as::

    /                          read-only
    ├── shared/                the organization's files (writable)
    ├── machines/              read-only, one folder per machine
    │   └── <machine name>/    read-only
    │       ├── files/         that machine's files (writable)
    │       └── tasks/         read-only
    │           └── <task uid>/  the content of the task's folder (writable)
    └── recordings/            session recordings (read-only throughout)

Machine folder names: a machine's name with ``/`` replaced by ``∕`` (U+2215
DIVISION SLASH) and NUL and other control characters by ``_``; an empty name,
``.`` or ``..`` becomes ``machine <id>``; names are cut to 240 bytes. When
several machines end up with one name, each of them gets `` (<id>)``
appended, repeated until all names differ. The rule depends only on the set
of (id, name) pairs, so every mount shows the same names. Task folders use the
task's uid through the same rule.

Keys: :class:`VagonKey` ``(scope, machine_id, id)``. Stored files and folders
have the scope they live in (``org``, ``files`` of a machine, ``recordings``)
and their numeric id (0 for a scope's root); virtual folders have their own
scopes. A file listed under a task has its machine's ``files`` key, so its
cached bytes are shared with the same file seen through ``files/``.

Versions: the uid for files. An upload creates a new uid (the id of a
replaced file stays), so the version changes with every new content, and
``upload`` knows the version the next listing will show from the complete
reply, without a lookup. Folders have version "".

There is no move endpoint: ``rename`` raises CrossDevice and ``mv`` copies.
Deleting a folder deletes its content on the server; the filesystem checks
emptiness before ``rmdir``.
"""

from __future__ import annotations

import logging
import math
import time
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import aclosing, asynccontextmanager
from datetime import datetime, timezone
from typing import BinaryIO, NamedTuple
from urllib.parse import parse_qs, urlsplit

import cachetools
import httpx
import trio

from vagonfs.errors import (CrossDevice, InvalidName, IsADirectory, NotFound, ReadOnly,
                            RemoteIOError)
from vagonfs.remote.base import (Capabilities, Capacity, Entry, ProgressFn, Store,
                                 find_listed)
from vagonfs.remote.http import file_range, parse_timestamp, reply_shape, task_group
from vagonfs.remote.vagon_api import VagonApi

log = logging.getLogger("vagonfs.vagon")

RESERVED = '\\/:*?"<>|'
MiB = 1024 * 1024
PART_PARALLELISM = 4
MAX_PARTS = 10_000

# Scopes of stored items: the key's id is a Vagon file id (0 = the scope's root).
ORG, MACHINE_FILES, RECORDINGS = "org", "files", "recordings"
# Virtual folders made by this module.
ROOT, MACHINES, MACHINE, TASKS, TASK = "root", "machines", "machine", "tasks", "task"


class VagonKey(NamedTuple):
    scope: str
    machine_id: int | None = None
    id: int | str | None = None  # file id in stored scopes; task id for TASK


def check_name(name: str) -> None:
    """Refuse before any request a name Vagon would refuse."""
    if not name or len(name) > 255:
        raise InvalidName(f"Vagon names are 1 to 255 characters: {name[:40]!r}...")
    bad = sorted({c for c in name if c in RESERVED or unicodedata.category(c) == "Cc"})
    if bad:
        raise InvalidName(f"Vagon refuses the characters {''.join(bad)!r} in {name!r}")


def local_names(named: Iterable[tuple[object, str]]) -> dict[object, str]:
    """Unique valid Linux names for (id, server name) pairs; the rule is in the module doc."""
    names = {ident: _clean(ident, name) for ident, name in named}
    while True:
        counts = Counter(names.values())
        clashing = [ident for ident, name in names.items() if counts[name] > 1]
        if not clashing:
            return names
        for ident in clashing:
            names[ident] = f"{names[ident]} ({ident})"


def _clean(ident: object, name: str) -> str:
    name = "".join("∕" if c == "/" else "_" if unicodedata.category(c) == "Cc" else c
                   for c in name or "")
    name = name.encode("utf-8")[:240].decode("utf-8", "ignore")
    return name if name not in ("", ".", "..") else f"machine {ident}"


def _item_name(name) -> str:
    """An item's name as text; a null name is an empty one (the filesystem skips it)."""
    return "" if name is None else str(name)


def part_size_mb(size: int) -> int:
    """Parts of 8 to 64 MiB (at most 1000 of them), bigger only past 64 GB."""
    for mb in (8, 16, 32, 64):
        if size <= mb * MiB * 1000:
            return mb
    return min(5120, max(64, math.ceil(size / (MAX_PARTS * MiB))))


def link_expiry(url: str, expires_at) -> float:
    """When a presigned link stops working: X-Amz-Date + X-Amz-Expires from the
    URL, else the reply's ``expires_at``, else five minutes from now."""
    query = parse_qs(urlsplit(url).query)
    try:
        issued = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
        return issued.replace(tzinfo=timezone.utc).timestamp() + int(query["X-Amz-Expires"][0])
    except (KeyError, ValueError, IndexError):
        pass
    return parse_timestamp(expires_at) or time.time() + 300


class _Link(NamedTuple):
    version: str
    url: str
    renew_at: float


class VagonStore(Store):
    capabilities = Capabilities(read_only=False, can_rename=False, max_file_size=None,
                                forbidden_chars=RESERVED + "\0")

    def __init__(self, api: VagonApi, *, part_parallelism: int = PART_PARALLELISM):
        self.api = api
        self._part_parallelism = part_parallelism
        self._links: cachetools.LRUCache = cachetools.LRUCache(maxsize=4096)  # file id -> _Link
        self._link_locks: dict[int, trio.Lock] = {}  # file id -> lock, while a link is asked
        self._task_roots: dict[tuple[int, object], int | None] = {}
        self._started = time.time()

    @property
    def ranged_reads(self) -> bool:
        return True

    async def check(self) -> None:
        reply = await self.api.call("GET", "/files", params={"per_page": 1})
        with reply_shape("Vagon files"):
            if not isinstance(reply["files"], list):
                raise TypeError("'files' is not a list")

    # -- the tree ----------------------------------------------------------------

    def _virtual(self, name: str, key: VagonKey, *, writable: bool = False) -> Entry:
        return Entry(name, True, key, mtime=self._started, writable=writable)

    async def root(self) -> Entry:
        return self._virtual("", VagonKey(ROOT))

    def _item_entry(self, item: dict, scope: VagonKey) -> Entry:
        with reply_shape("Vagon file item"):
            is_dir = item.get("object_type", item.get("type")) == "directory"
            updated = item.get("updated_at") or item.get("created_at")
            return Entry(
                name=_item_name(item["name"]), is_dir=is_dir,
                key=VagonKey(scope.scope, scope.machine_id, int(item["id"])),
                size=0 if is_dir else int(item.get("size") or 0),
                mtime=parse_timestamp(updated),
                version="" if is_dir else str(item.get("uid") or updated or ""),
                content_type=None if is_dir else item.get("content_type"),
                writable=scope.scope != RECORDINGS,
                ready=is_dir or item.get("status") in (None, "completed"))

    async def list(self, folder: Entry) -> AsyncIterator[list[Entry]]:
        key: VagonKey = folder.key
        if key.scope == ROOT:
            yield [self._virtual("shared", VagonKey(ORG, None, 0), writable=True),
                   self._virtual("machines", VagonKey(MACHINES)),
                   self._virtual("recordings", VagonKey(RECORDINGS, None, 0))]
        elif key.scope == MACHINES:
            yield await self._machines()
        elif key.scope == MACHINE:
            yield [self._virtual("files", VagonKey(MACHINE_FILES, key.machine_id, 0),
                                 writable=True),
                   self._virtual("tasks", VagonKey(TASKS, key.machine_id))]
        elif key.scope == TASKS:
            yield await self._tasks(key.machine_id)
        else:
            scope = await self._stored(key)
            if scope is None:
                yield []
                return
            async for page in self._pages(scope):
                yield list(self._entries(page, scope))

    def _entries(self, page: list[dict], scope: VagonKey) -> Iterator[Entry]:
        """The page's entries; an item that cannot be read is skipped with a log
        line, so one bad item does not fail the whole folder."""
        for item in page:
            try:
                yield self._item_entry(item, scope)
            except RemoteIOError as exc:
                log.warning("skipping an item of a listing: %s", exc)

    async def _machines(self) -> list[Entry]:
        machines = [m async for page in self.api.machines() for m in page]
        with reply_shape("Vagon machines"):
            names = local_names((m["id"], str(m.get("name") or "")) for m in machines)
        return [self._virtual(name, VagonKey(MACHINE, ident)) for ident, name in names.items()]

    async def _tasks(self, machine_id: int) -> list[Entry]:
        tasks = [t async for page in self.api.tasks(machine_id) for t in page]
        with reply_shape("Vagon tasks"):
            names = local_names((t["id"], str(t.get("uid") or "")) for t in tasks)
        return [self._virtual(name, VagonKey(TASK, machine_id, ident), writable=True)
                for ident, name in names.items()]

    async def _stored(self, key: VagonKey) -> VagonKey | None:
        """The stored folder behind a key: itself, or a task's folder (None if
        the task has none yet)."""
        if key.scope in (ORG, MACHINE_FILES, RECORDINGS):
            return key
        if key.scope == TASK:
            root = await self._task_root(key.machine_id, key.id)
            return None if root is None else VagonKey(MACHINE_FILES, key.machine_id, root)
        raise ReadOnly("this folder is made by vagonfs and holds no files of its own")

    async def archive_selection(self, entry: Entry) -> tuple[list[int], int | None]:
        """The ``file_ids`` (and ``machine_id``) that ask the archive job for
        ``entry``: the item itself, or everything in a scope's root."""
        key = await self._stored(entry.key)
        if key is None:
            return [], entry.key.machine_id
        if key.id:
            return [int(key.id)], key.machine_id
        ids = [int(item["id"]) async for page in self._pages(key) for item in page]
        return ids, key.machine_id

    async def _task_root(self, machine_id: int, task_id) -> int | None:
        """The folder a task writes to, found with the ``task_id`` filter."""
        if (machine_id, task_id) not in self._task_roots:
            folders = [i async for page in self.api.machine_files(machine_id, task_id=task_id)
                       for i in page if i.get("object_type", "directory") == "directory"]
            with reply_shape("Vagon task folder"):
                self._task_roots[machine_id, task_id] = int(folders[0]["id"]) if folders else None
        return self._task_roots[machine_id, task_id]

    def _pages(self, scope: VagonKey, q: str | None = None) -> AsyncIterator[list[dict]]:
        parent = int(scope.id or 0)
        if scope.scope == ORG:
            return self.api.files(parent, q=q)
        if scope.scope == MACHINE_FILES:
            return self.api.machine_files(scope.machine_id, parent, q=q)
        return self.api.recordings(parent, q=q)

    async def lookup(self, folder: Entry, name: str) -> Entry:
        key: VagonKey = folder.key
        if key.scope in (ROOT, MACHINES, MACHINE, TASKS):
            return await find_listed(self, folder, name)
        try:
            check_name(name)
        except InvalidName:
            raise NotFound(f"{name!r} cannot exist on Vagon") from None
        scope = await self._stored(key)
        if scope is not None:
            async with aclosing(self._pages(scope, q=name)) as pages:
                async for page in pages:
                    for item in page:
                        if item.get("name") == name:
                            return self._item_entry(item, scope)
        raise NotFound(f"{name} not found")

    # -- reading -----------------------------------------------------------------

    @asynccontextmanager
    async def read(self, entry: Entry, offset: int = 0, end: int | None = None):
        if entry.is_dir:
            raise IsADirectory(f"{entry.name} is a folder")
        file_id = entry.key.id
        url: str | None = None

        async def locate(fresh: bool) -> str:
            nonlocal url
            url = await self._link(file_id, entry.version, url if fresh else None)
            return url

        chunks = self.api.http.stream_range(locate, offset, end, expected_size=entry.size)
        try:
            yield chunks
        finally:
            await chunks.aclose()

    async def _link(self, file_id: int, version: str, failed: str | None) -> str:
        """A presigned download link, reused until shortly before it expires.

        ``failed`` is a link the object store refused (403): it is replaced.
        The parallel runs of one file wait for one another here, so they share
        one link request instead of asking for a link each.
        """
        lock = self._link_locks.setdefault(file_id, trio.Lock())
        try:
            async with lock:
                link = self._links.get(file_id)
                if link is not None and link.version == version and link.url != failed \
                        and time.time() < link.renew_at:
                    return link.url
                reply = await self.api.download_link(file_id)
                with reply_shape("Vagon download link"):
                    url = str(httpx.URL(self.api.base_url).join(reply["url"]))
                expires, now = link_expiry(url, reply.get("expires_at")), time.time()
                renew_at = expires - min(60.0, max(0.0, expires - now) * 0.1)
                self._links[file_id] = _Link(version, url, renew_at)
                return url
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._link_locks.pop(file_id, None)

    # -- changes -----------------------------------------------------------------

    async def _writable(self, folder: Entry) -> VagonKey:
        if not folder.writable or folder.key.scope == RECORDINGS:
            raise ReadOnly(f"{folder.name or '/'} is read-only")
        scope = await self._stored(folder.key)
        if scope is None:
            raise NotFound(f"the task {folder.name} has no folder on the server yet")
        return scope

    async def upload(self, folder: Entry, name: str, source: BinaryIO, size: int, *,
                     content_type: str | None = None,
                     progress: ProgressFn | None = None) -> Entry:
        """Multipart upload: create, parts in parallel, complete.

        It starts only once the file is closed (or synced), never while it is
        still being written, though the parts could travel during the copy:
        ``create`` must state the final ``size`` and ``file_name``, ``complete``
        refuses parts that do not add up to that size (``File size mismatch``),
        and no call appends to or renames an upload. A writer's final size is
        known only at ``close`` (``cp`` and ``rsync`` announce none), and an
        upload begun under rsync's temporary name could not take the final one,
        so starting early would mean guessing a size, or leaving an abandoned
        ``uploading`` item visible to every other client, and would give up the
        write-back rules (a rename or delete before the upload costs nothing).
        What is done instead: the file is spooled at disk speed, and ``fsync``
        starts its upload at once with the parts in parallel.
        """
        check_name(name)
        scope = await self._writable(folder)
        reply = await self.api.create_upload(
            name, int(scope.id or 0), size=size, chunk_mb=part_size_mb(size),
            content_type=content_type or "application/octet-stream",
            machine_id=scope.machine_id if scope.scope == MACHINE_FILES else None)
        with reply_shape("Vagon upload"):
            file_id = int(reply["id"])
            chunk = int(reply.get("chunk_size") or part_size_mb(size)) * MiB
            urls = [str(url) for url in reply.get("upload_urls") or []]
        if len(urls) != max(1, math.ceil(size / chunk)):
            raise RemoteIOError(f"Vagon offered {len(urls)} part URLs for {size} bytes "
                                f"in parts of {chunk} bytes")
        etags = await self._put_parts(source.fileno(), size, chunk, urls, progress)
        done = await self.api.complete(file_id, etags)
        with reply_shape("Vagon complete"):
            uid = str(done.get("uid") or reply.get("uid"))
        # what the next listing will say, without asking: the uid is the version
        return Entry(name=name, is_dir=False, key=VagonKey(scope.scope, scope.machine_id, file_id),
                     size=size, mtime=time.time(), version=uid, content_type=content_type,
                     writable=True)

    async def _put_parts(self, fd: int, size: int, chunk: int, urls: list[str],
                         progress: ProgressFn | None) -> list[str]:
        """PUT the parts, ``part_parallelism`` at a time, each streamed from
        the file (a retry reads it again), so memory holds chunks, not parts."""
        etags = [""] * len(urls)
        todo = iter(enumerate(urls))
        done = 0

        async def worker() -> None:
            nonlocal done
            for index, url in todo:
                offset = index * chunk
                length = min(chunk, size - offset)
                etags[index] = await self.api.put_part(
                    url, lambda o=offset, n=length: file_range(fd, o, n), length)
                done += length
                if progress is not None:
                    progress(done)

        async with task_group() as nursery:
            for _ in range(min(self._part_parallelism, len(urls))):
                nursery.start_soon(worker)
        return etags

    async def mkdir(self, folder: Entry, name: str) -> Entry:
        check_name(name)
        scope = await self._writable(folder)
        item = await self.api.create_directory(
            name, int(scope.id or 0),
            machine_id=scope.machine_id if scope.scope == MACHINE_FILES else None)
        if "name" not in item or "id" not in item:
            return await self.lookup(folder, name)
        return self._item_entry(item, scope)

    async def delete(self, entry: Entry) -> None:
        key: VagonKey = entry.key
        if not entry.writable or key.scope not in (ORG, MACHINE_FILES) or not key.id:
            raise ReadOnly(f"{entry.name or '/'} cannot be deleted")
        await self.api.delete(key.id)
        self._links.pop(key.id, None)

    async def rename(self, entry: Entry, folder: Entry, name: str) -> Entry:
        raise CrossDevice("Vagon has no move or rename; copy and delete instead")

    async def capacity(self) -> Capacity:
        reply = await self.api.capacity()
        return Capacity(total=int(reply.get("total") or 0), used=int(reply.get("in_use") or 0))
