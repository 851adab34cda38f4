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

Machine folder names follow ``vagon_names``' rule, the same on every mount;
task folders use the task's uid through the same rule. Downloads go through
presigned download URLs (``download_urls``), uploads are multipart (``upload``).

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

import builtins
import logging
import time
from collections.abc import AsyncGenerator, Hashable, Iterator
from contextlib import aclosing, asynccontextmanager
from typing import BinaryIO, NamedTuple, cast

from vagonfs.errors import CrossDevice, InvalidName, IsADirectory, NotFound, ReadOnly, RemoteIOError
from vagonfs.remote import names as name_rules
from vagonfs.remote.base import (Capabilities, Capacity, Entry, ProgressFn, Store,
                                 cache_key_prefix, find_listed)
from vagonfs.remote.replies import parse_timestamp, reply_shape
from vagonfs.remote.vagon import upload as parts
from vagonfs.remote.vagon.api import VagonApi
from vagonfs.remote.vagon.download_urls import DownloadUrls
from vagonfs.remote.vagon.names import local_names

log = logging.getLogger("vagonfs.vagon")

RESERVED = '\\/:*?"<>|'

# Scopes of stored items: the key's id is a Vagon file id (0 = the scope's root).
ORG, MACHINE_FILES, RECORDINGS = "org", "files", "recordings"
# Virtual folders made by this module.
ROOT, MACHINES, MACHINE, TASKS, TASK = "root", "machines", "machine", "tasks", "task"


class VagonKey(NamedTuple):
    scope: str
    machine_id: int | None = None
    id: int | str | None = None  # file id in stored scopes; task id for TASK

    @property
    def machine(self) -> int:
        """``machine_id`` of a key in a machine's scopes, which always have one."""
        if self.machine_id is None:
            raise ValueError(f"{self} is in no machine's scope")
        return self.machine_id


def _key(entry: Entry) -> VagonKey:
    """The entry's key: on this store, always a VagonKey."""
    return cast(VagonKey, entry.key)


def _item_name(name) -> str:
    """An item's name as text; a null name is an empty one (the filesystem skips it)."""
    return "" if name is None else str(name)


class VagonStore(Store):
    capabilities = Capabilities(read_only=False, can_rename=False, max_file_size=None,
                                forbidden_chars=RESERVED + "\0", exclusive_create=True)

    def __init__(self, api: VagonApi, *, part_parallelism: int = parts.PART_PARALLELISM):
        self.api = api
        self._part_parallelism = part_parallelism
        self._download_urls = DownloadUrls(api)
        self._task_roots: dict[tuple[int, object], int | None] = {}
        self._started = time.time()
        self._cache_prefix = cache_key_prefix("vagon", 1, api.base_url)

    @property
    def ranged_reads(self) -> bool:
        return True

    def cache_key(self, key: Hashable) -> str:
        """``vagon/1@<remote>:<scope>:<machine id>:<id>``, a field that is None empty."""
        scope, machine_id, ident = cast(VagonKey, key)
        return (f"{self._cache_prefix}{scope}:{'' if machine_id is None else machine_id}:"
                f"{'' if ident is None else ident}")

    def _check_name(self, name: str) -> None:
        """Refuse before any request a name Vagon would refuse, as its 400 does."""
        name_rules.check(name, self.capabilities, too_long=InvalidName)

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

    async def list(self, folder: Entry) -> AsyncGenerator[list[Entry], None]:
        key = _key(folder)
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
            yield await self._tasks(key.machine)
        else:
            scope = await self._stored(key)
            if scope is None:
                yield []
                return
            async with aclosing(self._pages(scope)) as pages:
                async for page in pages:
                    yield list(self._entries(page, scope))

    def _entries(self, page: builtins.list[dict], scope: VagonKey) -> Iterator[Entry]:
        """The page's entries; an item that cannot be read is skipped with a log
        line, so one bad item does not fail the whole folder."""
        for item in page:
            try:
                yield self._item_entry(item, scope)
            except RemoteIOError as exc:
                log.warning("skipping an item of a listing: %s", exc)

    async def _machines(self) -> builtins.list[Entry]:
        machines = [m async for page in self.api.machines() for m in page]
        with reply_shape("Vagon machines"):
            names = local_names((m["id"], str(m.get("name") or "")) for m in machines)
        return [self._virtual(name, VagonKey(MACHINE, ident)) for ident, name in names.items()]

    async def _tasks(self, machine_id: int) -> builtins.list[Entry]:
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
            root = await self._task_root(key.machine, key.id)
            return None if root is None else VagonKey(MACHINE_FILES, key.machine, root)
        raise ReadOnly("this folder is made by vagonfs and holds no files of its own")

    async def archive_selection(self, entry: Entry) -> tuple[builtins.list[int], int | None]:
        """The ``file_ids`` (and ``machine_id``) that ask the archive job for
        ``entry``: the item itself, or everything in a scope's root."""
        key = await self._stored(_key(entry))
        if key is None:
            return [], _key(entry).machine_id
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

    def _pages(self, scope: VagonKey, q: str | None = None
               ) -> AsyncGenerator[builtins.list[dict], None]:
        parent = int(scope.id or 0)
        if scope.scope == ORG:
            return self.api.files(parent, q=q)
        if scope.scope == MACHINE_FILES:
            return self.api.machine_files(scope.machine, parent, q=q)
        return self.api.recordings(parent, q=q)

    async def lookup(self, folder: Entry, name: str) -> Entry:
        key = _key(folder)
        if key.scope in (ROOT, MACHINES, MACHINE, TASKS):
            return await find_listed(self, folder, name)
        try:
            self._check_name(name)
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
        file_id = int(_key(entry).id or 0)
        url: str | None = None

        async def locate(fresh: bool) -> str:
            nonlocal url
            url = await self._download_urls.get(file_id, entry.version, url if fresh else None)
            return url

        chunks = self.api.http.stream_range(locate, offset, end, expected_size=entry.size)
        try:
            yield chunks
        finally:
            await chunks.aclose()

    # -- changes -----------------------------------------------------------------

    async def _writable(self, folder: Entry) -> VagonKey:
        if not folder.writable or _key(folder).scope == RECORDINGS:
            raise ReadOnly(f"{folder.name or '/'} is read-only")
        scope = await self._stored(_key(folder))
        if scope is None:
            raise NotFound(f"the task {folder.name} has no folder on the server yet")
        return scope

    async def upload(self, folder: Entry, name: str, source: BinaryIO, size: int, *,
                     content_type: str | None = None, progress: ProgressFn | None = None,
                     replace: bool = True) -> Entry:
        """Multipart, once the file is closed: ``vagon_upload`` says why.
        ``replace`` is the create's ``overwrite``: off, the server answers a
        taken name with 409 (AlreadyExists)."""
        self._check_name(name)
        scope = await self._writable(folder)
        file_id, uid, complete = await parts.upload(
            self.api, name, int(scope.id or 0),
            scope.machine_id if scope.scope == MACHINE_FILES else None, source, size,
            content_type=content_type or "application/octet-stream", progress=progress,
            parallelism=self._part_parallelism, overwrite=replace)
        self._download_urls.uploaded(file_id, uid, complete)
        # what the next listing will say, without asking: the uid is the version
        return Entry(name=name, is_dir=False, key=VagonKey(scope.scope, scope.machine_id, file_id),
                     size=size, mtime=time.time(), version=uid, content_type=content_type,
                     writable=True)

    async def mkdir(self, folder: Entry, name: str) -> Entry:
        self._check_name(name)
        scope = await self._writable(folder)
        item = await self.api.create_directory(
            name, int(scope.id or 0),
            machine_id=scope.machine_id if scope.scope == MACHINE_FILES else None)
        if "name" not in item or "id" not in item:
            return await self.lookup(folder, name)
        return self._item_entry(item, scope)

    async def delete(self, entry: Entry) -> None:
        key = _key(entry)
        if not entry.writable or key.scope not in (ORG, MACHINE_FILES) or not key.id:
            raise ReadOnly(f"{entry.name or '/'} cannot be deleted")
        file_id = int(key.id)
        await self.api.delete(file_id)
        self._download_urls.forget(file_id)

    async def rename(self, entry: Entry, folder: Entry, name: str) -> Entry:
        raise CrossDevice("Vagon has no move or rename; copy and delete instead")

    async def capacity(self) -> Capacity:
        reply = await self.api.capacity()
        return Capacity(total=int(reply.get("total") or 0), used=int(reply.get("in_use") or 0))
