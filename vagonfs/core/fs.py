"""The filesystem in plain types: POSIX operations over a :class:`Store`.

Not tied to pyfuse3 (``vagonfs.fuse_ops`` adapts it), so its rules read
top to bottom: a request comes in, the inode table and the listing cache answer
what they can, the block cache serves reads, the write-back queue takes writes,
and only then the store is asked. Every failure is a ``StoreError`` carrying
its errno.

Caches and their bounds:
- listings: one per folder, kept ``dir_cache_time``, at most ``listings.MAX_ENTRIES``
  entries across all folders (``vagonfs.core.listings``); a lookup
  in a folder with a fresh listing costs no request;
- attributes: what the last listing or lookup said, handed to the kernel with
  ``attr_timeout``;
- file data: the block cache (``cache_max_size``), keyed by store key and
  version, so a file changed elsewhere is fetched anew.

Lock order: there are no locks; everything runs on the trio thread, and an
``await`` is the only place another request can interleave. Each operation
re-reads the node after its awaits instead of trusting what it saw before.
"""

from __future__ import annotations

import errno
import logging
import mimetypes
import os
import stat
import time
import unicodedata
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path

import cachetools
import trio

from vagonfs.cache.blocks import BlockCache
from vagonfs.cache.reader import Reader, ReadState
from vagonfs.cache.spool import Spool
from vagonfs.cache.writeback import State, WriteBack
from vagonfs.core import links, supervise
from vagonfs.core.attrs import LocalAttrs
from vagonfs.core.folder_prefetch import FolderPrefetch
from vagonfs.core.inodes import ROOT_INODE, InodeTable, Node
from vagonfs.core.listings import Listings
from vagonfs.errors import (AlreadyExists, BadHandle, CrossDevice, FileTooLarge, InvalidName,
                            IsADirectory, ListingChanged, NameTooLong, NotADirectory, NotEmpty,
                            NotFound, PermissionDenied, ReadOnly, RemoteIOError, StoreError)
from vagonfs.remote.base import Capacity, Entry, Store

log = logging.getLogger("vagonfs.fs")


@dataclass(frozen=True)
class FsOptions:
    uid: int
    gid: int
    umask: int = 0o022
    read_only: bool = False
    attr_timeout: float = 1.0
    dir_cache_time: float = 300.0
    write_back_delay: float = 2.0
    cache_max_size: int = 10 * 1024 ** 3


@dataclass(frozen=True)
class Attributes:
    ino: int
    is_dir: bool
    size: int
    mtime: float
    mode: int
    uid: int
    gid: int


@dataclass(eq=False)
class FileHandle:
    node: Node
    writable: bool
    read_state: ReadState = field(default_factory=ReadState)


@dataclass(eq=False)
class DirHandle:
    """One ``opendir``: the folder's entries as of its first ``readdir``, so
    the kernel's offsets index into a list that does not change under it."""

    node: Node
    entries: list[Entry] | None = None


@dataclass(eq=False)
class _ListingFetch:
    """A folder's listing being fetched: later askers wait for the first one's."""

    done: trio.Event = field(default_factory=trio.Event)
    listing: dict[str, Entry] | None = None
    error: StoreError | None = None


LISTING_TRIES = 3  # reads of a listing that keeps changing under pagination
LOOKUP_FOLDERS_KEPT = 1024  # folders not listed whose looked-up entries are kept


class Filesystem:
    """Protects: nodes, listings and handles; trio-thread only."""

    def __init__(self, store: Store, root: Entry, options: FsOptions, cache_root: Path,
                 nursery: trio.Nursery):
        self.store = store
        self.options = options
        self._listings = Listings(options.dir_cache_time)
        # folder ino -> {name: entry} found by lookup in folders not listed,
        # kept like a listing: the kernel asks again each --attr-timeout, and
        # each would cost a request
        self._looked_up: cachetools.TTLCache = cachetools.TTLCache(
            maxsize=LOOKUP_FOLDERS_KEPT, ttl=options.dir_cache_time)
        self.inodes = InodeTable(root, dropped=self._listings.drop)
        self._nursery = nursery
        self.blocks = BlockCache(cache_root, options.cache_max_size)
        self._reader = Reader(store, self.blocks, nursery)
        self._folder_prefetch = FolderPrefetch(self._reader)
        self.writeback = WriteBack(cache_root, options.write_back_delay, self._upload,
                                   self.inodes.path)
        self._attrs = LocalAttrs(cache_root / "attrs.sqlite3")
        self._listing_fetches: dict[int, _ListingFetch] = {}
        self._handles: dict[int, FileHandle | DirHandle] = {}
        self._next_fh = 1
        self._capacity: tuple[float, Capacity] | None = None

    async def start(self) -> None:
        """Queue what a previous run left in the journal, then run uploads."""
        await self._nursery.start(self.writeback.run)
        for path, spool, replaces in self.writeback.recovered():
            try:
                await self._recover(path, spool, replaces)
            except StoreError as exc:
                log.error("could not restore pending upload of %s: %s (data kept in %s)",
                          path, exc, spool.path)

    async def _recover(self, path: str, spool: Spool, replaces: str) -> None:
        *folders, name = path.split("/")
        parent = self.inodes.get(ROOT_INODE)
        for part in folders:
            parent = await self._lookup_node(parent, part)
        node = self.inodes.child(parent.ino, name)
        if node is None:
            node = self.inodes.add_local(parent.ino, name)
        self.writeback.opened(node, spool, replaces)
        self.writeback.flushed(node)
        self.writeback.closed(node)
        log.info("resuming upload of %s (%d bytes) left by an earlier run", path, spool.size)

    def close(self) -> None:
        self._attrs.close()

    # -- attributes ----------------------------------------------------------

    def attributes(self, node: Node) -> Attributes:
        opts = self.options
        writable = self._writable(node)
        if node.is_dir:
            perm = (0o777 if writable else 0o555) & ~opts.umask
            return Attributes(node.ino, True, 0, node.entry.mtime if node.entry else 0.0,
                              stat.S_IFDIR | perm, opts.uid, opts.gid)
        mtime, mode = (None, None)
        if node.entry is not None:
            mtime, mode = self._attrs.get(node.entry.key, node.entry.version)
        pending = node.dirty
        if pending is not None:
            size = pending.spool.size
            mtime = node.local_mtime if node.local_mtime is not None else mtime
            mode = node.local_mode if node.local_mode is not None else mode
        else:
            size = node.entry.size if node.entry else 0
        if mtime is None:
            mtime = node.entry.mtime if node.entry else time.time()
        if links.is_link(node.entry):  # --links: a link, whatever its mode
            return Attributes(node.ino, False, size, mtime, stat.S_IFLNK | 0o777, opts.uid,
                              opts.gid)
        perm = mode if mode is not None else (0o666 if writable else 0o444) & ~opts.umask
        return Attributes(node.ino, False, size, mtime, stat.S_IFREG | perm, opts.uid, opts.gid)

    def _writable(self, node: Node) -> bool:
        if self.options.read_only or self.store.capabilities.read_only:
            return False
        entry = node.entry if node.entry is not None else self._parent_entry(node)
        return entry is None or entry.writable

    def _parent_entry(self, node: Node) -> Entry | None:
        parent = self.inodes.get(node.parent)
        return parent.entry if parent else None

    def node(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if node is None:
            raise NotFound(f"inode {ino} is no longer known")
        return node

    # -- lookup and listing --------------------------------------------------

    async def lookup(self, parent_ino: int, name: str) -> Node:
        """The kernel's lookup: counts one reference on the node returned."""
        node = await self._lookup_node(self.node(parent_ino), name)
        self.inodes.remember(node)
        return node

    async def _lookup_node(self, parent: Node, name: str) -> Node:
        if not parent.is_dir:
            raise NotADirectory(f"{self.inodes.path(parent)} is not a folder")
        known = self.inodes.child(parent.ino, name)
        if known is not None and (known.entry is None or known.dirty is not None):
            return known  # exists only here, or here in a newer version
        listing = self._listings.get(parent.ino)
        if listing is None and self.store.capabilities.lookup_lists:
            listing = await self._listing(parent)  # the store would list it anyway: keep it
        if listing is not None:
            entry = listing.get(name)
            if entry is None:
                raise NotFound(f"{name} not found")
            return self._adopt(parent, entry)
        entry = self._looked_up.get(parent.ino, {}).get(name)
        if entry is None:
            entry = await self.store.lookup(await self._entry(parent), name)
            if not _visible(entry):
                raise NotFound(f"{name} not found")
            self._looked_up.setdefault(parent.ino, {})[name] = entry
        return self._adopt(parent, entry)

    def _adopt(self, parent: Node, entry: Entry) -> Node:
        """The node for a fresh entry, dropping cached data of a changed file."""
        node = self.inodes.child(parent.ino, entry.name)
        if (node is not None and node.entry is not None and node.dirty is None
                and not node.is_dir and node.entry.version != entry.version):
            self._reader.forget(node.entry)
        return self.inodes.upsert(parent.ino, entry)

    async def _entry(self, node: Node) -> Entry:
        """The node's entry, looked up again when a move made its key stale."""
        if node.entry is None:
            raise NotFound(f"{self.inodes.path(node)} is not on the store yet")
        if node.stale and node.ino != ROOT_INODE:
            parent = self.node(node.parent)
            fresh = await self.store.lookup(await self._entry(parent), node.name)
            node.entry, node.stale = fresh, False
        return node.entry

    async def opendir(self, ino: int) -> int:
        node = self.node(ino)
        if not node.is_dir:
            raise NotADirectory(f"{self.inodes.path(node)} is not a folder")
        return self._new_handle(DirHandle(node))

    async def _listing(self, node: Node) -> Mapping[str, Entry]:
        """The folder's whole listing, cached or fetched.

        Never a part of one: a page that fails fails the listing, and what
        failed is not cached. ``ls`` or ``rsync --delete`` shown half a folder
        as if it were all of it would act on a lie. Concurrent askers share
        one fetch.
        """
        cached = self._listings.get(node.ino)
        if cached is not None:
            return cached
        fetch = self._listing_fetches.get(node.ino)
        if fetch is not None:
            await fetch.done.wait()
        else:
            fetch = self._listing_fetches[node.ino] = _ListingFetch()
            where = f"listing {self.inodes.path(node) or '/'}"
            try:
                fetch.listing = await self._fetch_listing(node, where)
                self._listings.put(node.ino, fetch.listing)
            except (NotFound, PermissionDenied) as exc:
                fetch.error = exc
            except Exception as exc:  # any failure of any page is the listing's
                fetch.error = supervise.failure(where, exc, logger=log)
                if fetch.error.errno not in (errno.ENOSPC, errno.EDQUOT):
                    fetch.error = _as_listing_error(fetch.error)
            finally:
                del self._listing_fetches[node.ino]
                fetch.done.set()
        if fetch.error is not None:
            raise fetch.error
        if fetch.listing is None:
            raise RemoteIOError(f"listing {self.inodes.path(node) or '/'} was interrupted")
        return fetch.listing

    async def _fetch_listing(self, node: Node, where: str) -> dict[str, Entry]:
        """Every page, read again while the store says the folder changed
        between pages (bounded: a folder that never holds still is an error)."""
        folder = await self._entry(node)
        for attempt in range(1, LISTING_TRIES + 1):
            listing: dict[str, Entry] = {}
            try:
                async with aclosing(self.store.list(folder)) as pages:
                    async for page in pages:
                        for entry in page:
                            if not _visible(entry):
                                continue
                            if entry.name in listing:
                                log.warning("%s: the store listed %r twice; showing the first",
                                            where, entry.name)
                                continue
                            listing[entry.name] = entry
                return listing
            except ListingChanged as exc:
                log.info("%s changed while it was read (%s); reading it again (%d of %d)",
                         where, exc, attempt, LISTING_TRIES)
        raise RemoteIOError(f"{where}: the folder changed during each of {LISTING_TRIES} "
                            "reads; not showing a listing stitched from different moments")

    def _local_children(self, node: Node, listed: Mapping[str, Entry]) -> list[Entry]:
        """Files that exist only here (not uploaded yet), as entries to list."""
        return [Entry(child.name, False, key=None) for child in self.inodes.children(node.ino)
                if child.entry is None and child.name not in listed]

    async def readdir(self, fh: int, start: int):
        """Yield (offset after, node) from ``start``; the caller stops when the
        kernel's buffer is full, and counts a lookup only for what it sent."""
        handle = self._handles.get(fh)
        if not isinstance(handle, DirHandle):
            raise BadHandle(f"no folder is open as handle {fh}")
        if handle.entries is None:
            listing = await self._listing(handle.node)
            handle.entries = [*listing.values(), *self._local_children(handle.node, listing)]
        for index in range(start, len(handle.entries)):
            entry = handle.entries[index]
            node = self.inodes.child(handle.node.ino, entry.name)
            if entry.key is not None and (node is None or node.dirty is None):
                node = self._adopt(handle.node, entry)
            if node is not None:
                yield index + 1, node

    def releasedir(self, fh: int) -> None:
        self._handles.pop(fh, None)

    def _forget_listing(self, ino: int) -> None:
        self._listings.drop(ino)
        self._looked_up.pop(ino, None)

    def _listing_set(self, parent: Node, entry: Entry) -> None:
        self._listings.set_entry(parent.ino, entry)
        self._looked_up.get(parent.ino, {}).pop(entry.name, None)

    def _listing_drop(self, parent_ino: int, name: str) -> None:
        self._listings.drop_entry(parent_ino, name)
        self._looked_up.get(parent_ino, {}).pop(name, None)

    # -- checks before a change ----------------------------------------------

    def _check_writable(self, folder: Node) -> None:
        if not self._writable(folder):
            raise ReadOnly(f"{self.inodes.path(folder) or '/'} is read-only")

    def _check_name(self, name: str) -> None:
        caps = self.store.capabilities
        if len(name.encode("utf-8", "surrogateescape")) > caps.max_name_length:
            raise NameTooLong(f"{name!r} is longer than the store allows")
        bad = [c for c in name if c in caps.forbidden_chars or unicodedata.category(c) == "Cc"
               or "\udc80" <= c <= "\udcff"]
        if bad:
            raise InvalidName(f"the store cannot hold the name {name!r} "
                              f"(it refuses {''.join(sorted(set(bad)))!r})")

    # -- files ---------------------------------------------------------------

    def _new_handle(self, handle: FileHandle | DirHandle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        if isinstance(handle, FileHandle):
            handle.node.open_handles += 1
        return fh

    def file_handle(self, fh: int) -> FileHandle:
        handle = self._handles.get(fh)
        if not isinstance(handle, FileHandle):
            raise BadHandle(f"no file is open as handle {fh}")
        return handle

    async def create(self, parent_ino: int, name: str) -> tuple[int, Node]:
        parent = self.node(parent_ino)
        self._check_writable(parent)
        self._check_name(name)
        existing = self.inodes.child(parent_ino, name)
        if existing is not None and existing.is_dir:
            raise IsADirectory(f"{name} is a folder")
        node = self.inodes.add_local(parent_ino, name)
        if existing is not None:  # O_CREAT on a name the kernel thought absent
            node.entry = existing.entry
            if existing.dirty is not None:
                self.writeback.discard(existing)
        self.writeback.opened(node, Spool.new(self.writeback.spool_dir),
                              replaces=node.entry.version if node.entry else "")
        node.local_mtime = time.time()
        self.inodes.remember(node)
        return self._new_handle(FileHandle(node, writable=True)), node

    async def open(self, ino: int, flags: int) -> tuple[int, bool]:
        """Open a file; returns (handle, whether the kernel may keep its page cache)."""
        node = self.node(ino)
        if node.is_dir:
            raise IsADirectory(f"{self.inodes.path(node)} is a folder")
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writable:
            self._check_writable(node)
            await self._open_for_write(node, truncate=bool(flags & os.O_TRUNC))
        elif node.entry is not None and not node.entry.ready:
            raise NotFound(f"{self.inodes.path(node)} is still being uploaded elsewhere")
        else:
            self._folder_prefetch.opened(node.parent, node.name, self._listings.get(node.parent))
        keep = (node.dirty is None and node.entry is not None
                and node.seen_version == node.entry.version)
        if node.entry is not None:
            node.seen_version = node.entry.version
        return self._new_handle(FileHandle(node, writable)), keep

    async def _open_for_write(self, node: Node, *, truncate: bool) -> None:
        """The file's content in a spool, for writing. It counts as changed
        (uploaded at close) from its first write or truncate: a file opened for
        writing and closed untouched (SQLite opening a database to query it,
        ``touch``) uploads nothing."""
        pending = self.writeback.get(node)
        if pending is not None:
            self.writeback.writer_opened(node)
            # a queued upload waits for this writer (no copy on write later)
            if truncate or pending.state in (State.QUEUED, State.FAILED):
                pending = await self.writeback.reopen(node, self._landed_version(node))
            if truncate:
                await pending.spool.truncate(0)
            return
        spool = Spool.new(self.writeback.spool_dir)
        if not truncate and node.entry is not None and node.entry.size:
            await self._download_into(node, spool)
        self.writeback.opened(node, spool, replaces=self._landed_version(node),
                              synced=not truncate and node.entry is not None)
        node.local_mtime = time.time() if truncate else None

    async def _download_into(self, node: Node, spool: Spool) -> None:
        """Fetch a remote file whole into a spool (a change rewrites the file)."""
        entry = await self._entry(node)
        offset = 0
        try:
            async with self.store.read(entry, 0, None) as chunks:
                async for chunk in chunks:
                    await spool.write(offset, chunk)
                    offset += len(chunk)
        except BaseException:
            spool.discard()
            raise

    async def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        """Bytes of an open file: a slice of a cached block, not a copy."""
        handle = self.file_handle(fh)
        node = handle.node
        if node.dirty is not None:
            return await node.dirty.spool.read(offset, size)
        entry = await self._entry(node)
        return await self._reader.read(entry, offset, size, handle.read_state)

    def _landed_version(self, node: Node) -> str:
        return node.entry.version if node.entry is not None else ""

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        handle = self.file_handle(fh)
        node = handle.node
        if not handle.writable:
            raise BadHandle(f"{self.inodes.path(node)} is not open for writing here")
        if node.dirty is None:  # its content was dropped: deleted or replaced while open
            raise StoreError(f"{self.inodes.path(node)} was deleted or replaced while open")
        self._check_size(offset + len(data))
        pending = node.dirty
        if pending.state is not State.OPEN:  # after an fsync: the file is still open
            pending = await self.writeback.reopen(node, self._landed_version(node))
        written = await pending.spool.write(offset, data)
        if node.local_mtime is None or not node.mtime_set:
            node.local_mtime = time.time()
        return written

    def _check_size(self, size: int) -> None:
        limit = self.store.capabilities.max_file_size
        if limit is not None and size > limit:
            raise FileTooLarge(f"the store takes files of at most {limit} bytes")

    async def flush(self, fh: int) -> None:
        handle = self.file_handle(fh)
        if handle.writable:
            self.writeback.flushed(handle.node)

    async def fsync(self, fh: int) -> None:
        handle = self.file_handle(fh)
        if handle.node.dirty is not None:
            await self.writeback.upload_now(handle.node)

    def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if not isinstance(handle, FileHandle):
            return
        self._reader.release(handle.read_state)
        node = handle.node
        if handle.writable and not any(
                isinstance(h, FileHandle) and h.node is node and h.writable
                for h in self._handles.values()):
            self.writeback.closed(node)
        self.inodes.release(node)

    async def setattr(self, ino: int, *, size: int | None = None, mtime: float | None = None,
                      mode: int | None = None) -> Node:
        node = self.node(ino)
        if size is not None:
            if node.is_dir:
                raise IsADirectory(f"{self.inodes.path(node)} is a folder")
            self._check_writable(node)
            self._check_size(size)
            writing = node.dirty is not None and node.dirty.writing
            await self._open_for_write(node, truncate=size == 0)
            pending = await self.writeback.reopen(node, self._landed_version(node))
            await pending.spool.truncate(size)
            node.local_mtime = time.time()
            if not writing:  # truncate(1) on a closed file: it is a complete change
                self.writeback.flushed(node)
                self.writeback.closed(node)
        if mtime is not None or mode is not None:
            if node.is_dir:
                return node  # folders carry no local attributes; times come from the store
            unchanged = node.dirty is not None and node.dirty.state is State.SYNCED
            if (node.dirty is not None and not unchanged) or node.entry is None:
                if mtime is not None:
                    node.local_mtime, node.mtime_set = mtime, True
                if mode is not None:
                    node.local_mode = stat.S_IMODE(mode)
            else:
                self._attrs.set(node.entry.key, node.entry.version, mtime=mtime,
                                mode=None if mode is None else stat.S_IMODE(mode))
        return node

    async def _upload(self, node: Node, spool: Spool, progress) -> None:
        """The write-back queue's upload: put the spool on the store under the
        node's current name, then make the node show the store's new entry."""
        if node.unlinked:
            return
        parent = self.node(node.parent)
        folder = await self._entry(parent)
        content_type = mimetypes.guess_type(node.name)[0] or "application/octet-stream"
        with spool.reader() as source:
            entry = await self.store.upload(folder, node.name, source, spool.size,
                                            content_type=content_type, progress=progress)
        if node.entry is not None and node.entry.version != entry.version:
            self._reader.forget(node.entry)
        node.entry = entry
        if node.mtime_set or node.local_mode is not None:
            self._attrs.set(entry.key, entry.version,
                            mtime=node.local_mtime if node.mtime_set else None,
                            mode=node.local_mode)
        if node.dirty is not None and node.dirty.spool is spool:
            node.local_mtime, node.local_mode, node.mtime_set = None, None, False
        if not node.unlinked:
            self._listing_set(parent, entry)

    # -- namespace changes ---------------------------------------------------

    async def mkdir(self, parent_ino: int, name: str) -> Node:
        parent = self.node(parent_ino)
        self._check_writable(parent)
        self._check_name(name)
        if self.inodes.child(parent_ino, name) is not None or \
                name in self._listings.get(parent_ino, {}):
            raise AlreadyExists(f"{name} exists")
        entry = await self.store.mkdir(await self._entry(parent), name)
        self._listing_set(parent, entry)
        node = self.inodes.upsert(parent_ino, entry)
        self._listings.put(node.ino, {})  # new, so empty: lookups in it cost nothing
        self.inodes.remember(node)
        return node

    async def symlink(self, parent_ino: int, name: str, target: bytes) -> Node:
        """A link (``--links``, see ``vagonfs.core.links``), made on the store at once."""
        parent = self.node(parent_ino)
        self._check_writable(parent)
        self._check_name(name)
        try:
            await self._lookup_node(parent, name)
        except NotFound:
            pass
        else:
            raise AlreadyExists(f"{name} exists")  # the store's upload would replace it
        entry = await links.create(self.store, await self._entry(parent), name, target)
        self._listing_set(parent, entry)
        node = self.inodes.upsert(parent_ino, entry)
        self.inodes.remember(node)
        return node

    async def readlink(self, ino: int) -> bytes:
        return await links.target(self.store, self.node(ino).entry)

    async def unlink(self, parent_ino: int, name: str) -> None:
        parent = self.node(parent_ino)
        node = await self._lookup_node(parent, name)
        if node.is_dir:
            raise IsADirectory(f"{name} is a folder")
        self._check_writable(parent)
        await self._remove(parent, node)

    async def rmdir(self, parent_ino: int, name: str) -> None:
        parent = self.node(parent_ino)
        node = await self._lookup_node(parent, name)
        if not node.is_dir:
            raise NotADirectory(f"{name} is not a folder")
        self._check_writable(parent)
        if not node.entry.writable:
            raise ReadOnly(f"{name} is a fixed folder of the store")
        await self._check_empty(node)
        await self._remove(parent, node)

    async def _check_empty(self, node: Node) -> None:
        """Stores delete folders with their content: check first, as rmdir must."""
        if any(not c.unlinked and c.entry is None for c in self.inodes.children(node.ino)):
            raise NotEmpty(f"{node.name} is not empty")
        async for page in self.store.list(await self._entry(node)):
            if any(_visible(e) for e in page):
                raise NotEmpty(f"{node.name} is not empty")

    async def _remove(self, parent: Node, node: Node) -> None:
        pending = self.writeback.get(node)
        if pending is not None and pending.state is State.UPLOADING:
            await pending.settled.wait()  # let it land, then delete what landed
        if node.dirty is not None:
            self.writeback.discard(node)
        if node.entry is not None:
            try:
                await self.store.delete(await self._entry(node))
            except NotFound:
                pass  # already gone: that is what was asked
            if not node.is_dir:
                self._reader.forget(node.entry)
        self._listing_drop(parent.ino, node.name)
        self._forget_listing(node.ino)
        self.inodes.detach(node)

    async def rename(self, old_parent_ino: int, old_name: str, new_parent_ino: int,
                     new_name: str, *, noreplace: bool = False) -> None:
        old_parent, new_parent = self.node(old_parent_ino), self.node(new_parent_ino)
        node = await self._lookup_node(old_parent, old_name)
        self._check_writable(old_parent)
        self._check_writable(new_parent)
        self._check_name(new_name)
        try:
            target = await self._lookup_node(new_parent, new_name)
        except NotFound:
            target = None
        if target is node:
            return
        if target is not None:
            if noreplace:
                raise AlreadyExists(f"{new_name} exists")
            if target.is_dir and not node.is_dir:
                raise IsADirectory(f"{new_name} is a folder")
            if node.is_dir and not target.is_dir:
                raise NotADirectory(f"{new_name} is not a folder")
            if target.is_dir:
                await self._check_empty(target)

        pending = self.writeback.get(node)
        if pending is not None and pending.state is State.UPLOADING:
            await pending.settled.wait()
        if node.entry is None:
            # not uploaded yet: the queue uploads it under its final name, and
            # that upload replaces the target (rsync's temp file, an editor's save)
            if target is not None and target.is_dir:
                await self._remove(new_parent, target)
            elif target is not None:
                node.entry = target.entry  # the version the upload will replace
                if target.dirty is not None:
                    self.writeback.discard(target)
            self._listing_drop(old_parent.ino, old_name)
            self.inodes.move(node, new_parent.ino, new_name)
            self.writeback.moved(node)
            return
        if not self.store.capabilities.can_rename:
            raise CrossDevice(f"this store cannot move {old_name} on the server; "
                              "mv copies and deletes instead")
        if target is not None and target.is_dir:
            await self._remove(new_parent, target)
        moved = await self.store.rename(await self._entry(node), await self._entry(new_parent),
                                        new_name)
        if target is not None and not target.is_dir:
            if target.dirty is not None:
                self.writeback.discard(target)
            if target.entry is not None:
                self._reader.forget(target.entry)
        self._listing_drop(old_parent.ino, old_name)
        self._listing_set(new_parent, moved)
        self.inodes.move(node, new_parent.ino, new_name)
        if node.dirty is None:
            node.entry = moved
        else:
            node.entry = moved
            self.writeback.moved(node)
        if node.is_dir:  # what is below has new keys on a path-based store
            for below in self.inodes.descendants(node.ino):
                below.stale = True
                self._forget_listing(below.ino)
            self._forget_listing(node.ino)

    async def statfs(self) -> Capacity:
        now = time.monotonic()
        if self._capacity is None or now - self._capacity[0] > 30:
            self._capacity = (now, await self.store.capacity())
        return self._capacity[1]


NAME_MAX = 255  # bytes in one Linux file name
MAX_SIZE = 2 ** 63 - 1  # off_t


def _visible(entry: Entry) -> bool:
    """Whether a listed entry can be shown: a complete upload with a name Linux
    can hold, with a size it can state. Bad ones from a server are skipped with
    a log line: one bad entry must not fail the whole listing (a name with no
    byte encoding or a size past off_t fails the whole readdir reply; a name
    over 255 bytes cannot be looked up)."""
    if not entry.ready:
        return False
    problem = _bad_name(entry.name)
    if problem is None and not 0 <= entry.size <= MAX_SIZE:
        problem = f"its size {entry.size} is not a file size"
    if problem:
        long = isinstance(entry.name, str) and len(entry.name) > 80
        shown = entry.name[:80] + "..." if long else entry.name
        log.warning("skipping an entry the store named %r: %s", shown, problem)
        return False
    return True


def _as_listing_error(error: StoreError) -> StoreError:
    """A failed listing is EIO to ``ls`` whatever the page said (a 400 is no
    EINVAL of the caller's), keeping the store's own words."""
    if error.errno == errno.EIO:
        return error
    wrapped = RemoteIOError(str(error))
    wrapped.logged = error.logged
    return wrapped


def _bad_name(name: str) -> str | None:
    """Why Linux cannot hold ``name``, or None when it can."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name \
            or "\0" in name:
        return "not a valid file name"
    try:
        size = len(os.fsencode(name))
    except UnicodeEncodeError:  # a lone surrogate a JSON reply can carry
        return "not a valid file name (no byte encoding)"
    if size > NAME_MAX:
        return f"not a valid file name ({size} bytes, over {NAME_MAX})"
    return None
