"""Blocks of remote files kept in memory and on local disk: what is kept, and for how long.

Each object is a file version (``object_id``: a hash of the store's cache
key and the version, so a file that changes remotely gets a new object and
stale bytes are never served, and no remote name ever becomes a local path).
How its blocks lie on disk, and why a block read back can be trusted, is
:mod:`vagonfs.cache.block_files`.

A least-recently-used index over the whole cache evicts whole blocks when the
total passes the bound; an object's files go once no block of it is left.
The index is rebuilt from the objects' records at start, least recently written
first, so a remount finds its warm cache again.

A block is first kept in memory, where readers take it at once; the disk
write comes after, in a worker thread, off the reader's path. The most recent
blocks stay in memory (``_HOT_BYTES``), so the kernel's reads of a block that
was just fetched or read do not each go to disk; blocks are served as slices
of those buffers, never copied.

A full cache disk is a degraded mode, not a failure: the first ``ENOSPC``
(or ``EDQUOT``) is logged once, the bound drops to what the disk was found
to hold (less a margin for spools), least recently used blocks go, and blocks
that do not fit are served from memory and not kept. Any other write error
is logged once per kind and the block is not kept; nothing here ends a read.
"""

from __future__ import annotations

import collections
import errno
import functools
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import cachetools
import trio

from vagonfs.cache import block_files
from vagonfs.cache.block_files import BLOCK_SIZE, BlockId, Buffer
from vagonfs.runtime import buffers, threads

log = logging.getLogger("vagonfs.cache")

__all__ = ["BLOCK_SIZE", "BlockCache", "BlockId", "Buffer", "object_id"]

_HOT_BYTES = 64 * BLOCK_SIZE
# blocks handed to readers whose disk write has not finished: a disk slower
# than the network makes the fetches wait here, so memory stays bounded
_PENDING_WRITES = 32
_WRITE_BATCH = 8  # blocks per disk-writing trip
# writing at once: one thread's direct writes kept reads waiting for write
# slots here (2-4 s summed over a 1 GiB read), three halve that
_WRITERS = 3
# room left on a full disk for the write-back spools once blocks were evicted
_FULL_DISK_MARGIN = 8 * BLOCK_SIZE


@functools.lru_cache(maxsize=4096)  # asked on every read: a hash per read shows in a profile
def object_id(cache_key: str, version: str) -> str:
    """The object of a file version, from its store's ``Store.cache_key``.
    Objects of the versions that hashed ``repr(key)`` are not found again; as
    the least recently written, they are the first evicted."""
    return hashlib.sha256(f"{cache_key}\0{version}".encode()).hexdigest()[:32]


class _HotBlocks(cachetools.LRUCache):
    """The blocks kept in memory, at most ``_HOT_BYTES``; a block evicted
    whose disk write is over gives its buffer back to be received into again."""

    def __init__(self, pending: dict[BlockId, Buffer]):
        super().__init__(_HOT_BYTES, getsizeof=len)
        self._pending = pending

    def popitem(self) -> tuple[BlockId, Buffer]:
        block, data = super().popitem()
        if self._pending.get(block) is not data:
            buffers.reuse(data)
        return block, data


class BlockCache:
    """Protects: the index, the hot set and the pending writes; trio thread only
    (worker threads get a path and a buffer, never these)."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = root / "blocks"
        self.root.mkdir(parents=True, exist_ok=True)
        block_files.tag_as_cache(self.root)
        self.max_bytes = max(max_bytes, 4 * BLOCK_SIZE)
        self.disk_full = False  # the disk filled up during this mount (for status)
        self._limit = self.max_bytes  # lowered to what the disk holds once it is full
        self._index: OrderedDict[BlockId, tuple[int, int]] = OrderedDict()  # (size, checksum)
        self._used = 0
        self._blocks_of: collections.Counter[str] = collections.Counter()  # in the index
        self._writing: collections.Counter[str] = collections.Counter()  # disk writes going on
        self._pending: dict[BlockId, Buffer] = {}
        self._hot = _HotBlocks(self._pending)
        self._write_slots = trio.Semaphore(_PENDING_WRITES)
        # kept, in order, with where their object's index starts
        self._unwritten: collections.deque[tuple[BlockId, int]] = collections.deque()
        self._writers = 0  # write_kept calls running
        # reads of one file's blocks in parallel: the disk gets several requests
        # at once, and reads back faster than with one thread
        self._readers = trio.CapacityLimiter(8)
        self._loading: dict[BlockId, trio.Event] = {}
        self._failed_errnos: set[int | None] = set()  # write errors logged: once each
        self._no_free_logged = False
        self._load_index()

    @property
    def used_bytes(self) -> int:
        return self._used

    def _load_index(self) -> None:
        for _, block, size, checksum in sorted(block_files.stored_blocks(self.root)):
            self._add(block, size, checksum)
        self._evict(0)

    def _add(self, block: BlockId, size: int, checksum: int) -> None:
        old = self._index.pop(block, None)
        if old is None:
            self._blocks_of[block[0]] += 1
        self._used += size - (old[0] if old else 0)
        self._index[block] = (size, checksum)

    def _remove(self, block: BlockId) -> None:
        """Out of the index and off the disk: its range punched out of the data
        file, or the object's files gone with its last block."""
        size, _ = self._index.pop(block)
        self._used -= size
        obj = block[0]
        self._blocks_of[obj] -= 1
        if self._blocks_of[obj] == 0:
            del self._blocks_of[obj]
        self._free(obj, block[1])

    def _free(self, obj: str, index: int | None = None) -> None:
        """Off the disk: the object's file once none of its blocks is indexed or
        being written, else block ``index``'s range punched out (None: nothing
        yet, the last write to end removes the file). The index has forgotten
        them already, so a disk that refuses is only logged, once: nothing
        here may end a read (or, from a ``run_sync_soon`` callback, the mount)."""
        try:
            if obj not in self._blocks_of and not self._writing[obj]:
                block_files.unlink_object(self.root, obj)
            elif index is not None:
                block_files.forget_block(self.root, (obj, index))
        except OSError as exc:
            if not self._no_free_logged:
                self._no_free_logged = True
                log.warning("cannot free blocks the cache dropped in %s (%s): the disk space "
                            "they take may stay taken", self.root, exc.strerror or exc)

    def _evict(self, room: int) -> None:
        """Drop least recently used blocks until ``room`` more bytes fit."""
        while self._index and self._used + room > self._limit:
            block = next(iter(self._index))
            self._hot.pop(block, None)
            self._remove(block)

    def has(self, block: BlockId) -> bool:
        """In memory or on disk (unchecked: ``load`` checks)."""
        return block in self._hot or block in self._pending or block in self._index

    def get(self, block: BlockId) -> Buffer | None:
        """A block that is in memory, marked most recently used."""
        data = self._hot.get(block)
        if data is None:
            data = self._pending.get(block)
        if data is not None and block in self._index:
            self._index.move_to_end(block)
        return data

    def keep(self, block: BlockId, data: Buffer, object_size: int) -> bool:
        """A block just fetched, of an object of ``object_size`` bytes: in
        memory now, for readers; on disk once ``write_kept`` has run. True
        when fewer than ``_WRITERS`` are running: the caller starts one
        (running ones also write the blocks kept meanwhile)."""
        self._hot[block] = data
        self._pending[block] = data
        self._unwritten.append((block, block_files.data_end(object_size)))
        if self._writers < _WRITERS:
            self._writers += 1
            return True
        return False

    async def reserve_write(self) -> None:
        """Wait for room among pending disk writes; ``write_kept`` gives it back."""
        await self._write_slots.acquire()

    async def write_kept(self) -> None:
        """Store the kept blocks on disk (each after ``reserve_write``) until
        none is left, all those waiting in one worker-thread trip: a trip per
        block cost CPU on the trio thread for each, and opened the object's
        files each time. Never raises for the disk's sake: a block that cannot be
        written is just not kept."""
        try:
            while self._unwritten:
                batch = [self._unwritten.popleft()
                         for _ in range(min(len(self._unwritten), _WRITE_BATCH))]
                await self._write_batch(batch)
        finally:
            self._writers -= 1

    async def _write_batch(self, batch: list[tuple[BlockId, int]]) -> None:
        kept = {block: (self._pending.get(block), end) for block, end in batch}
        try:
            todo = [(block, data, end) for block, (data, end) in kept.items()
                    if data is not None and len(data) <= self._limit]
            self._evict(sum(len(data) for _, data, _ in todo))
            for (obj, _), _, _ in todo:
                self._writing[obj] += 1
            try:
                results = await threads.run_sync(block_files.write_blocks, self.root, todo)
            finally:
                for (obj, _), _, _ in todo:
                    self._writing[obj] -= 1
                    if not self._writing[obj]:
                        del self._writing[obj]
            for (block, data, _), result in zip(todo, results):
                if isinstance(result, OSError):
                    self._write_failed(result)
                else:
                    self._written(block, data, result)
        finally:
            for block, (held, _) in kept.items():
                if held is not None and self._pending.get(block) is held:
                    del self._pending[block]
                    if block not in self._hot:
                        buffers.reuse(held)
                self._write_slots.release()

    def _written(self, block: BlockId, data: Buffer, checksum: int) -> None:
        """Indexed, unless it was dropped while being written: then off the disk again."""
        obj = block[0]
        if self._pending.get(block) is data:
            self._add(block, len(data), checksum)
            self._evict(0)
        else:
            self._free(obj, block[1])

    def _write_failed(self, exc: OSError) -> None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self._limit = max(0, self._used - _FULL_DISK_MARGIN)
            self._evict(0)
            if not self.disk_full:
                self.disk_full = True
                log.warning("the cache disk is full (%s): the block cache shrinks to %d MiB "
                            "for this mount and reads go on from the network",
                            self.root, self._limit >> 20)
        elif exc.errno not in self._failed_errnos:
            self._failed_errnos.add(exc.errno)
            log.warning("cannot write the block cache in %s (%s): reads go on from the "
                        "network", self.root, exc.strerror or exc)

    def on_disk_only(self, block: BlockId) -> bool:
        return block in self._index and block not in self._hot and block not in self._loading

    def disk_reader(self, block: BlockId, length: int) -> Callable[[], bytes | None] | None:
        """For a block only on disk as ``length`` bytes (else None), a call for a worker thread
        that reads and checks it (None if gone or damaged by then), kept nowhere here."""
        entry = self._index.get(block)
        if entry is None or entry[0] != length or not self.on_disk_only(block):
            return None
        self._index.move_to_end(block)
        return functools.partial(block_files.read_block, self.root, block, length, entry[1])

    async def load(self, block: BlockId, length: int) -> Buffer | None:
        """A block from disk, checked, now in memory; None when it is not
        there or did not pass (then it is dropped, to be fetched again).
        Loads of one block at the same time read it once."""
        if (loading := self._loading.get(block)) is not None:
            await loading.wait()
            return self.get(block)
        await self.load_run([(block, length)])
        return self._hot.get(block)

    async def load_run(self, blocks: list[tuple[BlockId, int]]) -> None:
        """Blocks of one object (with their lengths) from disk into memory, in
        one worker-thread trip; each is in memory for its readers as soon as it
        is read and checked. A read-ahead window of a cached file comes in one
        trip: a trip per block cost the trio thread more than the reads.
        Blocks not on disk or being loaded already are left out."""
        wanted: list[tuple[BlockId, int, int]] = []
        asked: dict[BlockId, tuple[int, int]] = {}  # the index entry each was read for
        # this run's (a block read, evicted and asked again may have another's in _loading)
        events: dict[BlockId, trio.Event] = {}
        for block, length in blocks:
            entry = self._index.get(block)
            if entry is None or block in self._loading:
                continue
            self._index.move_to_end(block)
            if entry[0] != length:
                self._drop_bad(block, entry, f"holds {entry[0]} bytes where the file's "
                                             f"size says {length}")
                continue
            self._loading[block] = events[block] = trio.Event()
            wanted.append((block, length, entry[1]))
            asked[block] = entry
        if not wanted:
            return
        token = trio.lowlevel.current_trio_token()

        def done(block: BlockId) -> None:
            if (event := events.pop(block, None)) is not None:
                if self._loading.get(block) is event:
                    del self._loading[block]
                event.set()

        def arrived(block: BlockId, data: bytes | None, problem: str) -> None:  # trio thread
            if data is not None:
                self._hot[block] = data
            else:
                self._drop_bad(block, asked[block], problem)
            done(block)

        try:
            await threads.run_sync(
                block_files.read_blocks, self.root, wanted,
                lambda *result: token.run_sync_soon(arrived, *result), limiter=self._readers)
        finally:  # the thread failed before reaching them (or we were cancelled)
            for block in list(events):
                done(block)

    def _drop_bad(self, block: BlockId, entry: tuple[int, int], problem: str) -> None:
        """A block that did not pass on reading: out of the index and memory,
        fetched again."""
        self._hot.pop(block, None)
        if self._index.get(block) == entry:
            self._remove(block)
            if problem:
                log.warning("cache block %s/%d %s: dropped, fetching it again",
                            block[0], block[1], problem)

    def drop_object(self, obj: str) -> None:
        """Forget every block of an object (its remote file changed or went away)."""
        for block in [b for b in self._index if b[0] == obj]:
            self._used -= self._index.pop(block)[0]
        self._blocks_of.pop(obj, None)
        for block in [b for b in self._hot if b[0] == obj]:
            del self._hot[block]
        for block in [b for b in self._pending if b[0] == obj]:
            del self._pending[block]
        self._free(obj)
