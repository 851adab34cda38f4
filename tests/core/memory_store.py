"""A store held in a dict, for driving the filesystem core without HTTP.

Test support, not a second emulator: no wire format, no pagination tokens,
no retries. It answers what :class:`vagonfs.remote.base.Store` asks, as the
path-based stores do (keys are paths, ``""`` the root; a version changes with
each write), and gives a test three handles on it:

- ``calls``: how often each operation was asked (``list`` once per listing,
  ``page`` once per page served), ``reads`` the byte ranges read, and
  ``cancelled`` the calls cancelled while they waited or streamed;
- ``fail``: the Nth call of an operation from now (at one page of a listing,
  one chunk of a read) raises a given ``FsError``;
- ``gate``: a call stops before it answers (a read before its Nth chunk, a
  listing before its Nth page) until the test opens the gate, so an
  interleaving happens on purpose instead of by luck.

What real stores do that the core must cope with is kept: a read of a file
whose stored size is no longer the entry's raises ``Stale`` (the HTTP layer's
size check), of a file gone ``NotFound``; a listing whose folder gained or
lost an entry between two of its pages raises ``ListingChanged`` (Vagon's
count check); a read streams the content as it was when the read started.
"""

from __future__ import annotations

import collections
import itertools
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import BinaryIO, cast

import trio

from vagonfs.cache.blocks import BLOCK_SIZE
from vagonfs.errors import (AlreadyExists, FsError, IsADirectory, ListingChanged, NotADirectory,
                            NotEmpty, NotFound, RemoteIOError, Stale)
from vagonfs.remote.base import Capabilities, Capacity, Entry, ProgressFn, Store


@dataclass
class _Item:
    is_dir: bool
    data: bytes = b""
    version: str = ""
    mtime: float = field(default_factory=time.time)


@dataclass(eq=False)
class _Fault:
    op: str
    error: FsError
    call: int  # the op's call count that fails
    at: int  # the page of a listing, the chunk of a read, that fails (from 0)


@dataclass(eq=False)
class Gate:
    """Where the first matching call waits: ``reached`` is set when it arrives,
    ``open()`` lets it go on."""

    op: str
    key: Hashable | None
    offset: int | None
    at: int
    reached: trio.Event = field(default_factory=trio.Event)
    opened: trio.Event = field(default_factory=trio.Event)

    def open(self) -> None:
        self.opened.set()

    def matches(self, op: str, key: Hashable, offset: int, at: int) -> bool:
        return (op == self.op and at == self.at and self.key in (None, key)
                and self.offset in (None, offset))


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


class MemoryStore(Store):
    """``page_size`` entries a page of a listing; ``ranged`` its ``ranged_reads``;
    ``lookup_lists`` and ``can_rename`` its capabilities; ``chunk_size`` the
    pieces a read streams (a real store's are not always whole blocks);
    ``sized_versions``: a file's version is its size alone, as the tenant
    store's ``size@updated_at`` is for rewrites within one second;
    ``exclusive_create``: ``upload(replace=False)`` refuses a taken name, as
    Vagon's ``overwrite`` off does."""

    def __init__(self, *, page_size: int = 100, ranged: bool = True,
                 lookup_lists: bool = False, can_rename: bool = True,
                 chunk_size: int = BLOCK_SIZE, sized_versions: bool = False,
                 exclusive_create: bool = False):
        self._sized_versions = sized_versions
        self.capabilities = Capabilities(read_only=False, can_rename=can_rename,
                                         max_file_size=None, lookup_lists=lookup_lists,
                                         exclusive_create=exclusive_create)
        self.page_size = page_size
        self.chunk_size = chunk_size
        self._ranged = ranged
        self._items: dict[str, _Item] = {"": _Item(True)}
        self._versions = itertools.count(1)
        self._changes: collections.Counter[str] = collections.Counter()  # folder -> changes
        self.calls: collections.Counter[str] = collections.Counter()
        self.cancelled: collections.Counter[str] = collections.Counter()
        self.reads: list[tuple[Hashable, int, int | None]] = []
        self._faults: list[_Fault] = []
        self._gates: list[Gate] = []

    # -- what a test does ----------------------------------------------------------

    def put(self, path: str, data: bytes) -> None:
        """Write a file as someone else would (its folders made as needed)."""
        folder = _parent(path)
        if folder not in self._items:
            self.mkdirs(folder)
        if path not in self._items:
            self._changes[folder] += 1
        version = f"{len(data)}@0" if self._sized_versions else f"v{next(self._versions)}"
        self._items[path] = _Item(False, bytes(data), version)

    def mkdirs(self, path: str) -> None:
        parts = [p for p in path.split("/") if p]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in self._items:
                self._items[folder] = _Item(True)
                self._changes[_parent(folder)] += 1

    def remove(self, path: str) -> None:
        """Delete a file as someone else would."""
        del self._items[path]
        self._changes[_parent(path)] += 1

    def data(self, path: str) -> bytes | None:
        """A file's content as stored, None when absent."""
        item = self._items.get(path)
        return None if item is None else item.data

    def names(self, folder: str = "") -> list[str]:
        return [_name(path) for path in self._children(folder)]

    def entry(self, path: str) -> Entry:
        """The entry a listing would show now (not counted as a call)."""
        item = self._items[path]
        return Entry(_name(path), item.is_dir, key=path, size=len(item.data), mtime=item.mtime,
                     version=item.version)

    def fail(self, op: str, error: FsError, *, nth: int = 1, at: int = 0) -> None:
        """The ``nth`` call of ``op`` from now raises ``error``, before its page
        or chunk number ``at`` (from 0)."""
        self._faults.append(_Fault(op, error, self.calls[op] + nth, at))

    def gate(self, op: str, *, key: Hashable | None = None, offset: int | None = None,
             at: int = 0) -> Gate:
        """Stop the next call of ``op`` (on ``key``; a read from ``offset``) before
        its page or chunk number ``at`` (from 0), until the gate is opened."""
        gate = Gate(op, key, offset, at)
        self._gates.append(gate)
        return gate

    # -- the hooks every operation passes ------------------------------------------

    async def _enter(self, op: str, key: Hashable, offset: int = 0) -> None:
        self.calls[op] += 1
        await self._pass(op, key, offset, 0)

    async def _pass(self, op: str, key: Hashable, offset: int, at: int) -> None:
        """A checkpoint, as real I/O would be; then any gate, then any fault."""
        await trio.lowlevel.checkpoint()
        for gate in list(self._gates):
            if gate.matches(op, key, offset, at):
                self._gates.remove(gate)
                gate.reached.set()
                try:
                    await gate.opened.wait()
                except trio.Cancelled:
                    self.cancelled[op] += 1
                    raise
        for fault in list(self._faults):
            if (fault.op, fault.call, fault.at) == (op, self.calls[op], at):
                self._faults.remove(fault)
                raise fault.error

    def _children(self, folder: str) -> list[str]:
        return sorted(p for p in self._items if p and _parent(p) == folder)

    # -- the Store interface ---------------------------------------------------------

    @property
    def ranged_reads(self) -> bool:
        return self._ranged

    def cache_key(self, key: Hashable) -> str:
        return f"memory/1@test:{key}"

    async def check(self) -> None:
        await self._enter("check", "")

    async def root(self) -> Entry:
        return self.entry("")

    async def list(self, folder: Entry) -> AsyncGenerator[list[Entry], None]:
        key = _path(folder)
        self.calls["list"] += 1
        changes = self._changes[key]
        for page in itertools.count(1):
            self.calls["page"] += 1
            await self._pass("list", key, 0, page - 1)
            if key not in self._items:
                raise NotFound(f"{key} not found", status=404)
            if self._changes[key] != changes:
                raise ListingChanged(f"{key or '/'} changed before page {page}")
            paths = self._children(key)
            start = (page - 1) * self.page_size
            yield [self.entry(p) for p in paths[start:start + self.page_size]]
            if start + self.page_size >= len(paths):
                return

    async def lookup(self, folder: Entry, name: str) -> Entry:
        path = _join(_path(folder), name)
        await self._enter("lookup", path)
        if path not in self._items:
            raise NotFound(f"{name} not found", status=404)
        return self.entry(path)

    @asynccontextmanager
    async def read(self, entry: Entry, offset: int = 0, end: int | None = None):
        if entry.is_dir:
            raise IsADirectory(f"{entry.name} is a folder")
        key = _path(entry)
        self.reads.append((key, offset, end))
        await self._enter("read", key, offset)
        item = self._items.get(key)
        if item is None:
            raise NotFound(f"{key} not found", status=404)
        if len(item.data) != entry.size:
            raise Stale(f"{key} changed on the store while being read "
                        f"({entry.size} bytes when listed, {len(item.data)} now)")
        body = item.data[offset:end]  # what this reply carries, whatever happens after

        async def chunks() -> AsyncIterator[bytes]:
            for number, start in enumerate(range(0, len(body), self.chunk_size)):
                if number:
                    await self._pass("read", key, offset, number)
                yield body[start:start + self.chunk_size]

        yield chunks()

    async def upload(self, folder: Entry, name: str, source: BinaryIO, size: int, *,
                     content_type: str | None = None, progress: ProgressFn | None = None,
                     replace: bool = True) -> Entry:
        path = _join(_path(folder), name)
        self.calls["upload"] += 1
        data = os.pread(source.fileno(), size, 0)
        if progress is not None:
            progress(len(data))
        # sent; the store confirms (or refuses) only now, as a multipart complete
        await self._pass("upload", path, 0, 0)
        if len(data) != size:
            raise RemoteIOError(f"{path}: {len(data)} bytes sent where {size} were declared")
        parent = self._items.get(_path(folder))
        if parent is None or not parent.is_dir:
            raise NotFound(f"{folder.name} is not a folder here", status=404)
        existing = self._items.get(path)
        if existing is not None and existing.is_dir:
            raise IsADirectory(f"{path} is a folder")
        if existing is not None and not replace and self.capabilities.exclusive_create:
            raise AlreadyExists(f"{path} exists", status=409)
        self.put(path, data)
        return self.entry(path)

    async def mkdir(self, folder: Entry, name: str) -> Entry:
        path = _join(_path(folder), name)
        await self._enter("mkdir", path)
        if path in self._items:
            raise AlreadyExists(f"{path} exists", status=409)
        self.mkdirs(path)
        return self.entry(path)

    async def delete(self, entry: Entry) -> None:
        path = _path(entry)
        await self._enter("delete", path)
        if path not in self._items:
            raise NotFound(f"{path} not found", status=404)
        if self._children(path):
            raise NotEmpty(f"{path} is not empty", status=409)
        self.remove(path)

    async def rename(self, entry: Entry, folder: Entry, name: str) -> Entry:
        source, into = _path(entry), _path(folder)
        target = _join(into, name)
        await self._enter("rename", source)
        if source not in self._items:
            raise NotFound(f"{source} not found", status=404)
        if into not in self._items or not self._items[into].is_dir:
            raise NotADirectory(f"{into} is not a folder")
        if target in self._items and self._items[target].is_dir:
            raise AlreadyExists(f"{target} is a folder", status=409)
        moved = {p: item for p, item in self._items.items()
                 if p == source or p.startswith(source + "/")}
        for path in moved:
            del self._items[path]
        if target not in self._items:
            self._changes[into] += 1
        self._changes[_parent(source)] += 1
        for path, item in moved.items():
            self._items[target + path[len(source):]] = item
        return self.entry(target)

    async def capacity(self) -> Capacity:
        await self._enter("capacity", "")
        return Capacity(0, sum(len(i.data) for i in self._items.values()))


def _path(entry: Entry) -> str:
    """An entry's key: this store's keys are its paths."""
    return cast(str, entry.key)


def _name(path: str) -> str:
    return path.rpartition("/")[2]
