"""Bytes handed to the kernel's page cache of a file, and that cache dropped.

The FUSE adapter's side of store-ahead (``vagonfs.cache.store_ahead`` decides
what to store; this sends it). ``pyfuse3.notify_store`` writes the bytes to
``/dev/fuse`` and the kernel copies them into the inode's page cache; a later
read of those pages is answered by the kernel without a FUSE request.

Every call is made from a worker thread, never from the trio thread, because
it can wait on the trio thread: the kernel's ``fuse_notify_store`` takes each
page locked (``filemap_grab_folio``), and a page the kernel's own read-ahead
has asked this daemon for stays locked until the trio thread answers that
FUSE read; made on the trio thread, the call would wait for itself.
``invalidate_inode`` waits the same way on pages being read. libfuse's
``fuse_lowlevel_notify_store`` is a ``writev`` on the session's fd, which any
thread may do while the loop runs; pyfuse3 releases the GIL around it.

Stores go from up to ``_SENDERS`` threads at once: a store waits in the
kernel for pages the kernel is reading through FUSE itself, and one such wait
held every store queued behind it until the reader had passed them. A drop of
an inode's pages skips the stores of it still queued (each inode has a
generation, which the drop moves on and each store checks just before it is
sent), waits for those already being sent, then invalidates: no page of a
version dropped is stored after the drop. The queue holds at most ``bound``
bytes; a store past it is refused and that block is read through FUSE as
before.

Stored pages are clean pages of the file like those the kernel read itself:
under memory pressure it evicts them without asking anyone, and a later read
of one is a FUSE read again (the same bytes, only slower). ``stop`` ends it
all before the FUSE loop ends (``vagonfs.daemon.mount``): once the loop no longer
answers reads, a store waiting on a page being read would never return.

A failed call is no reader's error: the kernel may have forgotten the inode
(``ENOENT``), or not know the call (``ENOSYS``: store-ahead stops for the
mount). Each errno is logged once at DEBUG and counted.
"""

from __future__ import annotations

import collections
import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import pyfuse3
import trio

from vagonfs.cache.blocks import Buffer
from vagonfs.cache.store_ahead import Loader
from vagonfs.runtime import supervise, threads

log = logging.getLogger("vagonfs.fuse")

T = TypeVar("T")
_SENDERS = 3  # threads storing at once
_BATCH = 2  # stores per worker-thread trip


@dataclass(eq=False)
class _Store:
    ino: int
    generation: int
    offset: int
    length: int
    data: Buffer | Loader


class KernelPages:
    """Protects: the queue, the generations, the stores being sent and the
    counts; trio thread only (a worker thread reads a generation, and sends
    what it was handed)."""

    def __init__(self, nursery: trio.Nursery, bound: int):
        self._nursery = nursery
        self._bound = bound
        self._queue: collections.deque[_Store] = collections.deque()
        self._queued_bytes = 0
        self._generation: collections.Counter[int] = collections.Counter()
        self._sending: collections.Counter[int] = collections.Counter()  # by inode
        self._landed = trio.lowlevel.ParkingLot()  # a batch was sent
        self._senders = 0
        self._trips = 0  # worker threads calling into the session now
        self._refused = False  # the kernel does not know notify_store (ENOSYS)
        self._stopped = False  # the session is closing: nothing more is sent
        self._logged: set[int] = set()
        self.counts: collections.Counter[str] = collections.Counter()

    @property
    def pending_bytes(self) -> int:
        """Bytes queued or being sent: 0 once every store asked has landed."""
        return self._queued_bytes

    def store(self, ino: int, offset: int, length: int, data: Buffer | Loader) -> bool:
        """Queue ``length`` bytes for the page cache of ``ino`` at ``offset``:
        ``data``, or what it loads in the sending thread. False when the
        queue is at its bound or the kernel refused store-ahead."""
        if self._stopped:
            return False
        if self._refused or self._queued_bytes + length > self._bound:
            self.counts["store_ahead_refused"] += 1
            return False
        self._queued_bytes += length
        # a view of its own: the block cache may give the view it holds back
        # (``buffers.reuse`` releases that object) while this store waits, and
        # a live view of ours keeps the buffer from being received into again
        held = data if callable(data) else memoryview(data)
        self._queue.append(_Store(ino, self._generation[ino], offset, length, held))
        if self._senders < _SENDERS:
            self._senders += 1
            supervise.spawn(self._nursery, "store ahead", self._send_queued)
        return True

    async def stop(self) -> None:
        """Before the FUSE session closes: nothing more is sent, and the calls
        being made have returned (a call after the close would use a session
        freed)."""
        self._stopped = True
        self._queued_bytes -= sum(call.length for call in self._queue)
        self._queue.clear()
        while self._trips:
            await self._landed.park()

    async def _trip(self, fn: Callable[..., T], *args: object) -> T:
        """``fn(*args)`` in a worker thread, counted for ``stop``."""
        self._trips += 1
        try:
            return await threads.run_sync(fn, *args)
        finally:
            self._trips -= 1
            self._landed.unpark_all()

    def drop(self, ino: int) -> trio.Event:
        """Drop the page cache of ``ino``: stores of it queued are skipped,
        those being sent are waited for. The event is set once it is done."""
        self._generation[ino] += 1
        done = trio.Event()
        supervise.spawn(self._nursery, "drop pages", self._drop, ino, done)
        return done

    async def _drop(self, ino: int, done: trio.Event) -> None:
        try:
            while self._sending[ino]:
                await self._landed.park()
            if self._stopped:
                return  # the session is closing
            result = await self._trip(self._invalidate, ino)
            self._count("drop", ino, 0, result)
        finally:
            done.set()

    async def _send_queued(self) -> None:
        try:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(_BATCH, len(self._queue)))]
                for call in batch:
                    self._sending[call.ino] += 1
                try:
                    results = await self._trip(self._send, batch)
                finally:
                    for call in batch:
                        self._queued_bytes -= call.length
                        self._sending[call.ino] -= 1
                        if not self._sending[call.ino]:
                            del self._sending[call.ino]
                    self._landed.unpark_all()  # a drop may wait for these
                for call, result in zip(batch, results):
                    self._count("store", call.ino, call.length, result)
        finally:
            self._senders -= 1

    def _send(self, batch: list[_Store]) -> list[int | None]:
        """In a worker thread: None for each store sent, else the errno it
        failed with; -1 for one skipped: its inode's pages were dropped since
        it was queued, or its loader had nothing to send."""
        results: list[int | None] = []
        for call in batch:
            data = None
            if self._generation[call.ino] == call.generation:
                data = call.data() if callable(call.data) else call.data
            # (again: a drop may have come while it was read)
            if data is None or self._generation[call.ino] != call.generation:
                results.append(-1)
                continue
            try:
                # takes any contiguous buffer (PyObject_GetBuffer), typed as bytes
                pyfuse3.notify_store(call.ino, call.offset, data)  # type: ignore[arg-type]
            except OSError as exc:
                results.append(exc.errno)
                continue
            results.append(None)
        return results

    @staticmethod
    def _invalidate(ino: int) -> int | None:
        """In a worker thread: None, or the errno the drop failed with."""
        try:
            pyfuse3.invalidate_inode(ino)
        except OSError as exc:
            return exc.errno
        return None

    def _count(self, kind: str, ino: int, size: int, result: int | None) -> None:
        if result is None:
            self.counts[f"page_cache_{kind}s"] += 1
            if size:
                self.counts["page_cache_stored_bytes"] += size
            return
        if result == -1:
            self.counts["page_cache_stores_skipped"] += 1
            return
        self.counts[f"page_cache_{kind}s_failed"] += 1
        if result == errno.ENOSYS and kind == "store":
            self._refused = True
        if result not in self._logged:
            self._logged.add(result)
            log.debug("page cache %s for inode %d failed: %s%s", kind, ino,
                      errno.errorcode.get(result, result),
                      "; store-ahead stops for this mount" if self._refused else "")
