"""What writing a file means on a mount: a local spool now, the store later.

A file opened for writing gets its content in a spool, fetched whole when it
is kept (the stores take whole files: a change rewrites the file). It counts
as changed from its first write or truncate: a file opened for writing and
closed untouched (SQLite opening a database to query it, ``touch``) uploads
nothing. The write-back queue (``vagonfs.cache.uploads``) decides when a
changed file goes up; ``_upload`` here is what going up does, so the queue
knows nothing of nodes' names, listings or attributes.
"""

from __future__ import annotations

import mimetypes
import time
from pathlib import Path

from vagonfs.cache.reader import Reader
from vagonfs.cache.spool import Spool
from vagonfs.cache.upload_states import Pending, State
from vagonfs.cache.uploads import UploadQueue
from vagonfs.core.attrs import LocalAttrs
from vagonfs.core.conflicts import Conflicts
from vagonfs.core.inodes import Node
from vagonfs.core.namespace import Namespace
from vagonfs.errors import FileTooLarge
from vagonfs.remote.base import Entry, Store


class Writes:
    """Protects: nothing of its own (the queue protects the pending uploads);
    trio-thread only."""

    def __init__(self, store: Store, namespace: Namespace, reader: Reader, attrs: LocalAttrs,
                 cache_root: Path, delay: float):
        self.store = store
        self._namespace = namespace
        self._reader = reader
        self._attrs = attrs
        self.conflicts = Conflicts(store)
        self.queue: UploadQueue[Node] = UploadQueue(cache_root, delay, self._upload,
                                                namespace.inodes.path,
                                                namespace.inodes.set_dirty)

    def check_size(self, size: int) -> None:
        limit = self.store.capabilities.max_file_size
        if limit is not None and size > limit:
            raise FileTooLarge(f"the store takes files of at most {limit} bytes")

    def created(self, node: Node) -> None:
        """A new file, empty: a change from the start."""
        self.queue.opened(node, self.queue.spools.new(),
                          replaces=landed_version(node))
        node.local_mtime = time.time()

    async def open(self, node: Node, *, truncate: bool) -> None:
        """The file's content in a spool, for writing (module doc)."""
        pending = self.queue.get(node)
        if pending is not None:
            self.queue.writer_opened(node)
            # a queued upload waits for this writer (no copy on write later)
            if truncate or pending.state in (State.QUEUED, State.FAILED, State.LOST):
                pending = await self._reopen(node)
            if truncate:
                await pending.spool.truncate(0)
            return
        spool = self.queue.spools.new()
        if not truncate and node.entry is not None and node.entry.size:
            await self._download_into(node, spool)
        self.queue.opened(node, spool, replaces=landed_version(node),
                          synced=not truncate and node.entry is not None)
        node.local_mtime = time.time() if truncate else None

    async def _download_into(self, node: Node, spool: Spool) -> None:
        """Fetch a remote file whole into a spool."""
        entry = await self._namespace.entry(node)
        offset = 0
        try:
            async with self.store.read(entry, 0, None) as chunks:
                async for chunk in chunks:
                    await spool.write(offset, chunk)
                    offset += len(chunk)
        except BaseException:
            spool.discard()
            raise

    async def _reopen(self, node: Node) -> Pending[Node]:
        return await self.queue.reopen(node, landed_version(node))

    async def write(self, node: Node, pending: Pending[Node], offset: int, data: bytes) -> int:
        self.check_size(offset + len(data))
        if pending.state is not State.OPEN:  # after an fsync: the file is still open
            pending = await self._reopen(node)
        written = await pending.spool.write(offset, data)
        if node.local_mtime is None or not node.mtime_set:
            node.local_mtime = time.time()
        return written

    async def truncate(self, node: Node, size: int) -> None:
        self.check_size(size)
        writing = node.dirty is not None and node.dirty.writing
        await self.open(node, truncate=size == 0)
        pending = await self._reopen(node)
        await pending.spool.truncate(size)
        node.local_mtime = time.time()
        if not writing:  # truncate(1) on a closed file: it is a complete change
            self.queue.flushed(node)
            self.queue.closed(node)

    async def _upload(self, pending: Pending[Node], progress) -> str | None:
        """The write-back queue's upload: put the spool on the store under the
        node's current name, or beside it when the store's file is no longer
        the version this content was made from (``vagonfs.core.conflicts``;
        the node then is the copy, the name shows the store's file); then make
        the node show the store's new entry. Answers that entry's version."""
        node, spool = pending.key, pending.spool
        if node.unlinked:
            return None
        parent = self._namespace.node(node.parent)
        folder = await self._namespace.entry(parent)
        name = node.name

        async def send(as_name: str, replace: bool) -> Entry:
            with await spool.reader() as source:
                return await self.store.upload(folder, as_name, source, spool.size,
                                               content_type=content_type(as_name),
                                               progress=progress, replace=replace)

        entry = await self.conflicts.upload(folder, name, pending.replaces,
                                            self._namespace.inodes.path(node), send)
        replaced = node.entry
        if replaced is not None:  # even under an unchanged version: a tenant file
            self._reader.forget(replaced)  # rewritten at its size within a second keeps it
        node.entry = entry
        mode = node.local_mode
        if mode is None and replaced is not None \
                and pending.replaces == replaced.version:  # this file's content, rewritten
            mode = self._attrs.get(replaced.key, replaced.version)[1]  # keeps its chmod
        if node.mtime_set or mode is not None:
            self._attrs.set(entry.key, entry.version,
                            mtime=node.local_mtime if node.mtime_set else None, mode=mode)
        else:  # a new content with nothing set on it: what was set on the one before is moot
            self._attrs.forget(entry.key)
        if replaced is not None and replaced.key != entry.key and entry.name == name:
            self._attrs.forget(replaced.key)  # a store that gave a new id
        if node.dirty is not None and node.dirty.spool is spool:
            node.local_mtime, node.local_mode, node.mtime_set = None, None, False
        if entry.name != name and not node.unlinked:  # kept beside: the node is the copy
            self._namespace.inodes.move(node, parent.ino, entry.name)
            self._namespace.forget(parent.ino)  # the name holds the store's file: ask again
            self._namespace.name_moved(parent.ino, name)
        if not node.unlinked:
            self._namespace.set_entry(parent, entry)
        return entry.version


def landed_version(node: Node) -> str:
    """The version on the store that a pending upload of ``node`` replaces."""
    return node.entry.version if node.entry is not None else ""


def content_type(name: str) -> str:
    """Guessed from the name: the stores keep it and serve it back (``user.mime_type``)."""
    return mimetypes.guess_type(name)[0] or "application/octet-stream"
