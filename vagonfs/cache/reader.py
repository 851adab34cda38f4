"""Reads of remote files through the block cache, with sequential read-ahead.

A read asks for the blocks it covers. Missing blocks are fetched by *runs*:
one streaming ranged GET over several consecutive blocks, each block stored as
soon as its last byte arrives, so a reader waits for its own block and not for
the whole run. When a handle reads sequentially, the window ahead of it grows
(1, 2, 4 ... up to ``MAX_RUN_BLOCKS`` blocks a run, up to ``MAX_AHEAD_BLOCKS``
ahead, in up to ``MAX_RUNS_PER_FILE`` parallel runs), as mountpoint-s3's
prefetcher does; a random read fetches only its own blocks. A store that cannot
serve ranges (``ranged_reads`` false) gets one run for the whole file.

Runs are trio tasks in the mount's nursery, shared by every handle on the same
file version; a failed run wakes its waiters with the error and leaves the
blocks missing, so the next read tries again. A failure is logged once per
file version and message: parallel runs and the kernel's retries of one bad
file make one log line (each failed read still answers its error).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from vagonfs.cache.blocks import BLOCK_SIZE, BlockCache, object_id
from vagonfs.errors import RemoteIOError, StoreError
from vagonfs.remote.base import Entry, Store

log = logging.getLogger("vagonfs.read")

MAX_RUN_BLOCKS = 16
MAX_AHEAD_BLOCKS = 64
MAX_RUNS_PER_FILE = 4


@dataclass
class ReadState:
    """Per open handle: where the last read ended and how sequential it has been."""

    next_offset: int = -1  # a first read is not yet a sequential one: a file
    streak: int = 0         # manager sniffing a file's head fetches one block


@dataclass
class _ObjectFetches:
    """Blocks of one object being fetched, and the error of a failed run."""

    waiting: dict[int, trio.Event] = field(default_factory=dict)
    errors: dict[int, StoreError] = field(default_factory=dict)
    runs: int = 0
    logged: set[str] = field(default_factory=set)  # failures already logged: once each


class Reader:
    def __init__(self, store: Store, cache: BlockCache, nursery: trio.Nursery):
        self._store = store
        self._cache = cache
        self._nursery = nursery
        self._fetches: dict[str, _ObjectFetches] = {}

    async def read(self, entry: Entry, offset: int, size: int, state: ReadState) -> bytes:
        end = min(offset + size, entry.size)
        if offset >= end:
            return b""
        obj = object_id(entry.key, entry.version)
        first, last = offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE

        sequential = offset == state.next_offset
        state.streak = state.streak + 1 if sequential else 0
        state.next_offset = end

        fetches = self._fetches.setdefault(obj, _ObjectFetches())
        self._start_missing(entry, obj, fetches, first, last, urgent=True)
        if sequential and self._store.ranged_reads:
            ahead = min(MAX_AHEAD_BLOCKS, 2 ** min(state.streak, 6))
            nblocks = -(-entry.size // BLOCK_SIZE)
            self._start_missing(entry, obj, fetches, last + 1,
                                min(last + ahead, nblocks - 1), urgent=False)

        parts = []
        for index in range(first, last + 1):
            block_start = index * BLOCK_SIZE
            lo = max(offset, block_start) - block_start
            hi = min(end, block_start + BLOCK_SIZE) - block_start
            parts.append(await self._block_bytes(entry, obj, index, lo, hi - lo))
        return b"".join(parts)

    async def _block_bytes(self, entry: Entry, obj: str, index: int, start: int,
                           length: int) -> bytes:
        for _ in range(3):
            fetches = self._fetches.setdefault(obj, _ObjectFetches())
            event = fetches.waiting.get(index)
            if event is not None:
                await event.wait()
            error = fetches.errors.pop(index, None)
            if error is not None:
                raise error
            data = await self._cache.read((obj, index), start, length)
            if data is not None:
                return data
            # evicted before we could read it, or never fetched: fetch it now
            self._start_missing(entry, obj, fetches, index, index, urgent=True)
        raise RemoteIOError(f"block {index} of {entry.name} could not be kept in the cache "
                            "(is --cache-max-size too small?)")

    def _start_missing(self, entry: Entry, obj: str, fetches: _ObjectFetches,
                       first: int, last: int, *, urgent: bool) -> None:
        """Start runs for the blocks in [first, last] that are neither cached nor coming."""
        if not self._store.ranged_reads:
            first, last = 0, max(0, -(-entry.size // BLOCK_SIZE) - 1)
        run: list[int] = []
        for index in range(first, last + 1):
            if self._cache.has((obj, index)) or index in fetches.waiting:
                if run:
                    self._launch(entry, obj, fetches, run)
                    run = []
                continue
            if not urgent and fetches.runs >= MAX_RUNS_PER_FILE:
                break
            run.append(index)
            if len(run) == MAX_RUN_BLOCKS and self._store.ranged_reads:
                self._launch(entry, obj, fetches, run)
                run = []
        # read-ahead waits until the window's unfetched tail makes a real run:
        # sliding it one block at a time would cost a request per block
        min_run = 1 if urgent else max(1, min(MAX_RUN_BLOCKS, (last - first + 1) // 2))
        if run and (len(run) >= min_run or (run[-1] + 1) * BLOCK_SIZE >= entry.size):
            self._launch(entry, obj, fetches, run)

    def _launch(self, entry: Entry, obj: str, fetches: _ObjectFetches, run: list[int]) -> None:
        for index in run:
            fetches.waiting[index] = trio.Event()
            fetches.errors.pop(index, None)
        fetches.runs += 1
        self._nursery.start_soon(self._fetch_run, entry, obj, fetches, run[0], run[-1])

    async def _fetch_run(self, entry: Entry, obj: str, fetches: _ObjectFetches,
                         first: int, last: int) -> None:
        index = first
        buffer = bytearray()
        end = min((last + 1) * BLOCK_SIZE, entry.size)
        try:
            async with self._store.read(entry, first * BLOCK_SIZE, end) as chunks:
                async for chunk in chunks:
                    buffer += chunk
                    while len(buffer) >= BLOCK_SIZE and index <= last:
                        await self._store_block(obj, fetches, index, bytes(buffer[:BLOCK_SIZE]))
                        del buffer[:BLOCK_SIZE]
                        index += 1
            if index <= last:
                expected = end - index * BLOCK_SIZE
                if len(buffer) != expected:
                    raise RemoteIOError(
                        f"{entry.name}: the store sent {index * BLOCK_SIZE + len(buffer)} "
                        f"bytes where it declared {entry.size}")
                await self._store_block(obj, fetches, index, bytes(buffer))
                index += 1
        except StoreError as exc:
            if str(exc) not in fetches.logged:  # parallel runs fail alike: one line
                fetches.logged.add(str(exc))
                log.warning("read %s: %s", entry.name, exc)
            exc.logged = True  # the FUSE boundary need not say it again
            for failed in range(index, last + 1):
                fetches.errors[failed] = exc
        finally:
            fetches.runs -= 1
            for pending in range(index, last + 1):
                event = fetches.waiting.pop(pending, None)
                if event is not None:
                    event.set()

    async def _store_block(self, obj: str, fetches: _ObjectFetches, index: int,
                           data: bytes) -> None:
        await self._cache.put((obj, index), data)
        event = fetches.waiting.pop(index, None)
        if event is not None:
            event.set()

    def forget(self, entry: Entry) -> None:
        """Drop what is cached of this version of a file (it changed or went away)."""
        obj = object_id(entry.key, entry.version)
        self._fetches.pop(obj, None)
        self._cache.drop_object(obj)
