"""The filesystem in plain types: POSIX operations over a :class:`Store`.

Not tied to pyfuse3 (``vagonfs.daemon.fuse_ops`` adapts it), so its rules read
top to bottom: a request comes in, the namespace (inode table and listing
cache) answers what it can, the block cache serves reads, the write-back
queue takes writes, and only then the store is asked. Every failure is a
``FsError`` carrying its errno.

:class:`Filesystem` is the one face of the core; what it composes owns one
thing each: ``namespace`` (names in folders, listings), ``handles`` (open
files and folders), ``writes`` (write-open policy and uploads), ``changes``
(mkdir, unlink, rename and the checks before them), ``open_files`` (an
open file's reads, writes and page cache), ``capacity`` (statfs).

Caches and their bounds:
- listings: one per folder, kept ``dir_cache_time``, at most ``listings.MAX_ENTRIES``
  entries across all folders (``vagonfs.core.listings``); a lookup
  in a folder with a fresh listing costs no request;
- attributes: what the last listing or lookup said, handed to the kernel to
  keep for as long as that listing stays fresh here (``Namespace.fresh_for``),
  at most ``attr_timeout`` when one is set: asking sooner would get the same
  answer, and a warm ``ls -l`` of 100,000 entries would ask for each again;
- file data: the block cache (``cache_max_size``), keyed by store key and
  version, so a file changed elsewhere is fetched anew.

Lock order: there are no locks; everything runs on the trio thread, and an
``await`` is the only place another request can interleave. Each operation
re-reads the node after its awaits instead of trusting what it saw before.
"""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio

from vagonfs.cache.blocks import BlockCache
from vagonfs.cache.reader import Reader
from vagonfs.cache.spool import Spool
from vagonfs.cache.store_ahead import KernelPages
from vagonfs.cache.upload_states import State
from vagonfs.core import symlinks
from vagonfs.core.attrs import LocalAttrs
from vagonfs.core.capacity import FsStats, KnownCapacity
from vagonfs.core.changes import Changes
from vagonfs.core.handles import DirHandle, Handles
from vagonfs.core.inodes import ROOT_INODE, Node
from vagonfs.core.list_ahead import AHEAD, ListAhead
from vagonfs.core.namespace import Namespace
from vagonfs.core.open_files import OpenFiles
from vagonfs.core.writes import Writes
from vagonfs.errors import FsError, NotADirectory
from vagonfs.remote.base import Entry, Store

log = logging.getLogger("vagonfs.fs")

MIME_XATTR = b"user.mime_type"  # the store's content type, for file managers (--xattrs)


@dataclass(frozen=True)
class FsOptions:
    uid: int
    gid: int
    umask: int = 0o022
    read_only: bool = False
    attr_timeout: float | None = None  # None: as long as the listing (dir_cache_time)
    dir_cache_time: float = 300.0
    write_back_delay: float = 2.0
    cache_max_size: int = 10 * 1024 ** 3
    list_ahead: int = AHEAD  # subfolders listed ahead of a walk (core/list_ahead.py); 0: none


@dataclass(frozen=True)
class Attributes:
    ino: int
    is_dir: bool
    size: int
    mtime: float
    mode: int
    uid: int
    gid: int
    kept_for: float  # seconds the kernel may keep these attributes (and the name)


class Filesystem:
    """Protects: nothing of its own beyond the parts it composes; trio-thread only."""

    def __init__(self, store: Store, root: Entry, options: FsOptions, cache_root: Path,
                 nursery: trio.Nursery, pages: KernelPages | None = None):
        """``pages``: the kernel's page cache, for store-ahead (None: off)."""
        self.store = store
        self.options = options
        self._nursery = nursery
        self.blocks = BlockCache(cache_root, options.cache_max_size)
        reader = Reader(store, self.blocks, nursery, pages)
        self.namespace = Namespace(store, root, options.dir_cache_time, reader)
        self.inodes = self.namespace.inodes
        self.list_ahead = ListAhead(self.namespace, nursery, options.list_ahead)
        self.handles = Handles()
        self._attrs = LocalAttrs(cache_root / "attrs.sqlite3", store.cache_key)
        self.writes = Writes(store, self.namespace, reader, self._attrs, cache_root,
                             options.write_back_delay)
        self.uploads = self.writes.queue
        self.changes = Changes(store, self.namespace, self.uploads, reader,
                               self._attrs, read_only=options.read_only)
        self.open_files = OpenFiles(self.namespace, self.handles, self.writes, self.changes,
                                    reader)
        self._capacity = KnownCapacity(store, nursery)

    async def start(self) -> None:
        """Queue what a previous run left in the journal, then run uploads."""
        await self._nursery.start(self.uploads.run)
        for path, spool, replaces in self.uploads.recovered():
            try:
                await self._recover(path, spool, replaces)
            except FsError as exc:
                log.error("could not restore pending upload of %s: %s (data kept in %s)",
                          path, exc, spool.path)

    async def _recover(self, path: str, spool: Spool, replaces: str) -> None:
        *folders, name = path.split("/")
        parent = self.node(ROOT_INODE)
        for part in folders:
            parent = await self.namespace.lookup(parent, part)
        node = self.inodes.child(parent.ino, name)
        if node is None:
            node = self.inodes.add_local(parent.ino, name)
        self.uploads.opened(node, spool, replaces)
        self.uploads.flushed(node)
        self.uploads.closed(node)
        log.info("resuming upload of %s (%d bytes) left by an earlier run", path, spool.size)

    def close(self) -> None:
        self._attrs.close()

    # -- attributes ----------------------------------------------------------

    def attributes(self, node: Node) -> Attributes:
        opts = self.options
        writable = self.changes.writable(node)
        kept_for = self.kept_for(node)
        if node.is_dir:
            perm = (0o777 if writable else 0o555) & ~opts.umask
            return Attributes(node.ino, True, 0, node.entry.mtime if node.entry else 0.0,
                              stat.S_IFDIR | perm, opts.uid, opts.gid, kept_for)
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
        if symlinks.is_link(node.entry):  # --links: a link, whatever its mode
            return Attributes(node.ino, False, size, mtime, stat.S_IFLNK | 0o777, opts.uid,
                              opts.gid, kept_for)
        perm = mode if mode is not None else (0o666 if writable else 0o444) & ~opts.umask
        return Attributes(node.ino, False, size, mtime, stat.S_IFREG | perm, opts.uid, opts.gid,
                          kept_for)

    def kept_for(self, node: Node) -> float:
        """How long the kernel may keep what it is told of ``node``: until
        the listing (or lookup) it came from goes stale here, since until
        then this mount would answer the same; what only this mount changes
        (a file not uploaded yet, or newer here) the kernel learns from the
        mount's own replies, so it keeps it the listing time. ``attr_timeout``,
        when set, bounds both."""
        fresh = self.namespace.fresh_for(node)
        kept = self.options.dir_cache_time if fresh is None else fresh
        limit = self.options.attr_timeout
        return kept if limit is None else min(kept, limit)

    def node(self, ino: int) -> Node:
        return self.namespace.node(ino)

    def remember(self, node: Node) -> None:
        """The kernel took one more reference on ``node`` (a ``readdir`` entry it kept)."""
        self.inodes.remember(node)

    def forget(self, ino: int, count: int) -> None:
        """The kernel dropped ``count`` references on ``ino``."""
        self.inodes.forget(ino, count)

    def on_name_moved(self, drop_kernel_entry: Callable[[int, str], None]) -> None:
        """Who drops the kernel's cached entry of a name that leads to another
        file now (a conflict copy's): the adapter, which talks to the kernel."""
        self.namespace.name_moved = drop_kernel_entry

    def xattrs(self, ino: int) -> dict[bytes, bytes]:
        """The extended attributes a file shows: the store's content type."""
        entry = self.node(ino).entry
        return {MIME_XATTR: entry.content_type.encode()} if entry and entry.content_type else {}

    # -- lookup and listing --------------------------------------------------

    async def lookup(self, parent_ino: int, name: str) -> Node:
        """The kernel's lookup: counts one reference on the node returned."""
        node = await self.namespace.lookup(self.node(parent_ino), name)
        self.inodes.remember(node)
        return node

    async def opendir(self, ino: int) -> int:
        node = self.node(ino)
        if not node.is_dir:
            raise NotADirectory(f"{self.inodes.path(node)} is not a folder")
        return self.handles.add(DirHandle(node))

    async def readdir(self, fh: int, start: int):
        """Yield (offset after, node) from ``start``; the caller stops when the
        kernel's buffer is full, and counts a lookup only for what it sent."""
        handle = self.handles.folder(fh)
        if handle.entries is None:
            handle.entries = await self.namespace.entries(handle.node)
            self.list_ahead.read(handle.node, handle.entries)
        for index in range(start, len(handle.entries)):
            entry = handle.entries[index]
            node = self.inodes.child(handle.node.ino, entry.name)
            # a node already holding this very entry (a warm readdir: the listing
            # and the inode table share their entries) needs no adopting
            if entry.key is not None and (node is None or node.dirty is None and (
                    node.entry is not entry or node.stale)):
                node = self.namespace.adopt(handle.node, entry)
            if node is not None:
                yield index + 1, node

    def releasedir(self, fh: int) -> None:
        self.handles.pop(fh)

    # -- files (vagonfs.core.open_files) -------------------------------------

    async def create(self, parent_ino: int, name: str) -> tuple[int, Node]:
        return await self.open_files.create(self.node(parent_ino), name)

    async def open(self, ino: int, flags: int) -> tuple[int, bool]:
        """Open a file; returns (handle, whether the kernel may keep its page cache)."""
        return await self.open_files.open(self.node(ino), flags)

    async def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        return await self.open_files.read(fh, offset, size)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        return await self.open_files.write(fh, offset, data)

    async def flush(self, fh: int) -> None:
        await self.open_files.flush(fh)

    async def fsync(self, fh: int) -> None:
        await self.open_files.fsync(fh)

    def release(self, fh: int) -> None:
        self.open_files.release(fh)

    async def setattr(self, ino: int, *, size: int | None = None, mtime: float | None = None,
                      mode: int | None = None) -> Node:
        node = self.node(ino)
        if size is not None:
            await self.open_files.truncate(node, size)
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

    # -- namespace changes (vagonfs.core.changes) -----------------------------

    async def mkdir(self, parent_ino: int, name: str) -> Node:
        return await self.changes.mkdir(self.node(parent_ino), name)

    async def symlink(self, parent_ino: int, name: str, target: bytes) -> Node:
        return await self.changes.symlink(self.node(parent_ino), name, target)

    async def readlink(self, ino: int) -> bytes:
        node = self.node(ino)
        return await symlinks.target(self.store, node.name, node.entry)

    async def unlink(self, parent_ino: int, name: str) -> None:
        await self.changes.unlink(self.node(parent_ino), name)

    async def rmdir(self, parent_ino: int, name: str) -> None:
        await self.changes.rmdir(self.node(parent_ino), name)

    async def rename(self, old_parent_ino: int, old_name: str, new_parent_ino: int,
                     new_name: str, *, noreplace: bool = False) -> None:
        await self.changes.rename(self.node(old_parent_ino), old_name,
                                  self.node(new_parent_ino), new_name, noreplace=noreplace)

    async def statfs(self) -> FsStats:
        return await self._capacity.stats(len(self.inodes))
