"""The rules of an open file, apart from the mount's face (``core/fs.py``):
which version a handle reads, when the kernel may keep a file's page cache
and when what store-ahead put there must go first, and when written bytes
have landed, so that nothing is journaled or uploaded before them. They
change together, and together they are what keeps a handle to one version
of a file.

A read-only handle stores blocks read ahead in the kernel's page cache
(``cache/store_ahead.py``) while ``_store_to`` allows; an open for writing,
or of a version other than the one last opened, first has what was stored
dropped, so no page stored before is read after.
"""

from __future__ import annotations

import os

from vagonfs.cache.reader import Reader
from vagonfs.core.changes import Changes
from vagonfs.core.folder_prefetch import FolderPrefetch
from vagonfs.core.handles import FileHandle, Handles
from vagonfs.core.inodes import Node
from vagonfs.core.namespace import Namespace
from vagonfs.core.writes import Writes
from vagonfs.errors import BadHandle, FsError, IsADirectory, NotFound, Stale


class OpenFiles:
    """Protects: nothing of its own beyond the parts it is given; trio-thread only."""

    def __init__(self, namespace: Namespace, handles: Handles, writes: Writes,
                 changes: Changes, reader: Reader):
        self._namespace = namespace
        self._inodes = namespace.inodes
        self._handles = handles
        self._writes = writes
        self._uploads = writes.queue
        self._changes = changes
        self._reader = reader
        self._folder_prefetch = FolderPrefetch(reader)

    async def create(self, parent: Node, name: str) -> tuple[int, Node]:
        self._changes.check_new_name(parent, name)
        existing = self._inodes.child(parent.ino, name)
        if existing is not None and existing.is_dir:
            raise IsADirectory(f"{name} is a folder")
        if existing is not None:  # the new content is made from what its upload left
            await self._uploads.landed(existing)
            existing = self._inodes.child(parent.ino, name)  # (kept beside: not there now)
        node = self._inodes.add_local(parent.ino, name)
        self._namespace.created(parent.ino, name)
        if existing is not None:  # O_CREAT on a name the kernel thought absent
            node.entry = existing.entry
            if existing.dirty is not None:
                self._uploads.discard(existing)
        self._writes.created(node)
        self._inodes.remember(node)
        return self._handles.add(FileHandle(node, writable=True)), node

    async def open(self, node: Node, flags: int) -> tuple[int, bool]:
        """Open a file; returns (handle, whether the kernel may keep its page cache)."""
        if node.is_dir:
            raise IsADirectory(f"{self._inodes.path(node)} is a folder")
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writable:
            self._changes.check_writable(node)
            await self._writes.open(node, truncate=bool(flags & os.O_TRUNC))
        elif node.entry is not None and not node.entry.ready:
            raise NotFound(f"{self._inodes.path(node)} is still being uploaded elsewhere")
        else:
            self._folder_prefetch.opened(node.parent, node.name,
                                         self._namespace.listings.get(node.parent))
        keep = (node.dirty is None and node.entry is not None
                and node.seen_version == node.entry.version)
        if not keep:
            await self._drop_pages(node)
        handle = FileHandle(node, writable)
        if node.entry is not None:
            node.seen_version = node.entry.version
            if not writable:
                handle.read_state.store_to = self._store_to(node, node.entry.version)
        return self._handles.add(handle), keep

    def _store_to(self, node: Node, version: str):
        """Whether blocks of ``version`` may go to ``node``'s page cache now: it
        is still the version on the store as last seen and opened here, with
        nothing written, being written or deleted here."""
        def store_to() -> int | None:
            entry = node.entry
            if (node.dirty is None and not node.unlinked and entry is not None
                    and entry.version == version == node.seen_version
                    and not self._handles.writing(node)):
                return node.ino
            return None
        return store_to

    async def _drop_pages(self, node: Node) -> None:
        """What store-ahead put in ``node``'s page cache is gone when this returns."""
        dropped = self._reader.store_ahead.drop(node.ino)
        if dropped is not None:
            await dropped.wait()

    async def read(self, fh: int, offset: int, size: int) -> bytes | memoryview:
        """Bytes of an open file: a slice of a cached block, not a copy."""
        handle = self._handles.file(fh)
        node = handle.node
        if node.dirty is not None:
            return await node.dirty.spool.read(offset, size)
        entry = await self._namespace.entry(node)
        if not handle.writable:
            if handle.read_version is None:
                handle.read_version = entry.version
            elif handle.read_version != entry.version:
                raise Stale(f"{entry.name} was replaced on the store while open here")
        return await self._reader.read(entry, offset, size, handle.read_state)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        handle = self._handles.file(fh)
        node = handle.node
        if not handle.writable:
            raise BadHandle(f"{self._inodes.path(node)} is not open for writing here")
        if node.dirty is None:  # its content was dropped: deleted or replaced while open
            raise FsError(f"{self._inodes.path(node)} was deleted or replaced while open")
        return await self._writes.write(node, node.dirty, offset, data)

    async def truncate(self, node: Node, size: int) -> None:
        if node.is_dir:
            raise IsADirectory(f"{self._inodes.path(node)} is a folder")
        self._changes.check_writable(node)
        await self._writes.truncate(node, size)
        await self._drop_pages(node)

    async def flush(self, fh: int) -> None:
        handle = self._handles.file(fh)
        if handle.writable:
            await self._settle(handle.node)
            self._uploads.flushed(handle.node)

    async def fsync(self, fh: int) -> None:
        handle = self._handles.file(fh)
        if handle.node.dirty is not None:
            await self._settle(handle.node)
            await self._uploads.upload_now(handle.node)

    @staticmethod
    async def _settle(node: Node) -> None:
        """The file's writes answered before they landed have landed, or this
        raises their errno: only then is it journaled or uploaded."""
        if node.dirty is not None:
            await node.dirty.spool.settle()

    def release(self, fh: int) -> None:
        handle = self._handles.pop(fh)
        if not isinstance(handle, FileHandle):
            return
        self._reader.release(handle.read_state)
        node = handle.node
        if handle.writable and not self._handles.writing(node):
            self._uploads.closed(node)
        if node.unlinked and node.open_handles == 1 and node.entry is not None:
            # deleted while open: its cached blocks served this handle until now
            self._reader.forget(node.entry)
        self._inodes.release(node)
