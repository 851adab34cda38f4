"""Blocks on their way from the store, for the reader (``cache/reader.py``).

Missing blocks are fetched by *runs*: one streaming ranged GET over
consecutive blocks, whose body arrives in block-sized buffers received in
worker threads (``remote/worker_http.py``), so a reader waits for its first block,
not for the whole run. Each block is handed to the readers waiting for it
the moment it is in memory and written to disk after, off their path;
replies are slices of those buffers. A store that cannot serve ranges
(``ranged_reads`` false) gets one run for the whole file.

While one connection carries less than ``ONE_CONNECTION_ENOUGH``, blocks
asked together go as GETs of at most ``PART_BLOCKS`` side by side, as
mountpoint-s3 and gcsfuse split a read: over a real link one connection
carries at most its TCP window a round trip (50 MB/s for 2 MiB at 40 ms), so
one GET per window left most of the link idle. Where one connection carries
more (loopback, a LAN), GETs of up to ``RUN_BLOCKS`` go one after another:
there the split only added requests and threads on a CPU the read is bound
by. What one connection carries is measured on each GET of a whole block or
more.

Blocks read ahead are counted until they arrive, in bytes, so that a small
file fetched ahead costs its size, not a block: the reader bounds that count.

A *piece* is one GET of just the bytes of one read, answered when they are
in, kept nowhere here. Why: over a link a read out of order waits a round
trip either way, and a whole block more for the block (the first bytes of a
file, a database's random pages); the kernel already sizes such a read (its
read-ahead grows a first read and leaves a random one alone), so nothing is
added around it; and bytes of a block kept partly would need a second kind
of block in memory, on disk and in the index, for reads the page cache
already keeps. Random reads of one spot, once the page cache has let it go,
fetch it again (docs/SEMANTICS.md).

Runs are supervised tasks in the mount's nursery, shared by every handle on
the same file version; a failed run wakes its waiters with the error and
leaves the blocks missing, so the next read tries again. A failure is logged
once per file version and message: parallel runs and the kernel's retries of
one bad file make one log line (each failed read still answers its error).
Nothing of a file stays here once its runs are over.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import cachetools
import trio

from vagonfs.cache.blocks import BLOCK_SIZE, BlockCache, Buffer
from vagonfs.errors import FsError, RemoteIOError
from vagonfs.remote.base import Entry, Store
from vagonfs.runtime import supervise

log = logging.getLogger("vagonfs.read")

RUN_BLOCKS = 16  # a GET's most, read-ahead's or a reader's own
PART_BLOCKS = 4  # a GET's most while one connection is slow
ONE_CONNECTION_ENOUGH = 128e6  # bytes a second (a gigabit) one GET brought: no need to split
RATES_KEPT = 32  # GETs whose rate is remembered


class Cursor(Protocol):
    """A reader's cursor, as runs asked for it know it: they cancel with it."""

    runs: set[trio.CancelScope]


CursorT = TypeVar("CursorT", bound=Cursor)


def block_count(entry: Entry) -> int:
    return -(-entry.size // BLOCK_SIZE)


def block_length(entry: Entry, index: int) -> int:
    return min(BLOCK_SIZE, entry.size - index * BLOCK_SIZE)


def _span(entry: Entry, first: int, last: int) -> int:
    """Bytes of blocks [first, last] of ``entry``."""
    return min(entry.size, (last + 1) * BLOCK_SIZE) - first * BLOCK_SIZE


@dataclass(eq=False)
class _Waits:
    """Blocks of one object (a file version) on their way, and failed ones' errors."""

    waiting: dict[int, trio.Event] = field(default_factory=dict)
    errors: dict[int, FsError] = field(default_factory=dict)
    runs: set[trio.CancelScope] = field(default_factory=set)


@dataclass(eq=False)
class _Run(Generic[CursorT]):
    """One GET of blocks [first, last]; ``next`` is the first not yet received."""

    entry: Entry
    obj: str
    waits: _Waits
    first: int
    last: int
    counted: bool  # read ahead of a reader, not asked by it: counts in ``inflight``
    cursor: CursorT | None
    next: int = 0
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    started: float = field(default_factory=trio.current_time)


class BlockFetches(Generic[CursorT]):
    """Protects: the runs in progress, the in-flight count and the rates
    measured; trio thread only. ``ahead_arrived`` hears of each block a
    cursor's run brought; ``cursor_get_ended`` of each cursor's run that
    brought all its blocks."""

    def __init__(self, store: Store, cache: BlockCache, nursery: trio.Nursery, *,
                 ahead_arrived: Callable[[CursorT, str, int, Buffer], None],
                 cursor_get_ended: Callable[[CursorT, Entry, str], None]):
        self._store = store
        self._cache = cache
        self._nursery = nursery
        self._ahead_arrived = ahead_arrived
        self._cursor_get_ended = cursor_get_ended
        self._objects: dict[str, _Waits] = {}
        self._inflight = 0
        # whether one connection carries enough that a window needs no split;
        # not until a GET has shown it
        self._connection_enough = False
        self._rates: collections.deque[float] = collections.deque(maxlen=RATES_KEPT)
        self._logged: cachetools.LRUCache = cachetools.LRUCache(256)  # (object, message)

    @property
    def inflight(self) -> int:
        """Bytes of counted runs asked for and not yet received."""
        return self._inflight

    @property
    def shown_slow(self) -> bool:
        """Whether a GET has been measured and one connection carries too little."""
        return bool(self._rates) and not self._connection_enough

    @property
    def idle(self) -> bool:
        """Nothing of any file on its way or counted in flight."""
        return not self._objects and self._inflight == 0

    def cancel(self, obj: str) -> None:
        """Stop every run of this object (a version that changed or went away)."""
        waits = self._objects.pop(obj, None)
        if waits is not None:
            for scope in waits.runs:
                scope.cancel()

    # -- pieces ----------------------------------------------------------------------

    def piece_serves(self, entry: Entry, obj: str, offset: int, end: int) -> bool:
        """Whether a read out of order is fetched as its own bytes: it asks
        for less than half of the blocks it falls in, and one of those is
        neither cached nor on its way."""
        if not self._store.ranged_reads:
            return False
        first, last = offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE
        if 2 * (end - offset) >= _span(entry, first, last):
            return False
        waits = self._objects.get(obj)
        return any(not self._cache.has((obj, index))
                   and not (waits and index in waits.waiting)
                   for index in range(first, last + 1))

    async def read_piece(self, entry: Entry, obj: str, offset: int,
                         end: int) -> bytes | memoryview:
        """One GET of just the bytes asked, for this read alone."""
        parts: list[Buffer] = []
        try:
            async with self._store.read(entry, offset, end) as chunks:
                async for chunk in chunks:
                    parts.append(chunk)
            received = sum(len(part) for part in parts)
            if received != end - offset:
                raise RemoteIOError(f"{entry.name}: the store sent {received} bytes of "
                                    f"{offset}-{end} where it declared {entry.size}")
        except Exception as exc:  # noqa: BLE001 - the read answers its error
            raise self._failure(entry, obj, exc, waited=True) from exc
        return memoryview(parts[0]) if len(parts) == 1 else b"".join(parts)

    # -- blocks ----------------------------------------------------------------------

    async def block_bytes(self, entry: Entry, obj: str, index: int, offset: int,
                          end: int) -> memoryview:
        """The bytes of [offset, end) in block ``index``, once it is in."""
        block, length = (obj, index), block_length(entry, index)
        start = index * BLOCK_SIZE
        for _ in range(3):
            waits = self._objects.get(obj)
            if waits is not None and (event := waits.waiting.get(index)) is not None:
                await event.wait()
                error = waits.errors.pop(index, None)
                if error is not None:
                    raise error
            data = self._cache.get(block)
            if data is None:
                data = await self._cache.load(block, length)
            if data is not None:
                return memoryview(data)[max(offset, start) - start:min(end, start + length) - start]
            # evicted before it could be read, dropped as damaged, or its run was
            # cancelled: fetch it now
            self.start_missing(entry, obj, index, index)
        raise RemoteIOError(f"block {index} of {entry.name} could not be kept in memory")

    def start_missing(self, entry: Entry, obj: str, first: int, last: int, *,
                      counted: bool = False, cursor: CursorT | None = None) -> None:
        """Start runs for the blocks in [first, last] neither cached nor coming."""
        ranged = self._store.ranged_reads
        part = RUN_BLOCKS if self._connection_enough else PART_BLOCKS
        if not ranged:
            first, last = 0, max(0, block_count(entry) - 1)
        waits = self._objects.get(obj)
        run: list[int] = []
        for index in range(first, last + 1):
            if self._cache.has((obj, index)) or (waits and index in waits.waiting):
                if run:
                    self._launch(entry, obj, run[0], run[-1], counted, cursor)
                    run = []
                continue
            run.append(index)
            if len(run) == part and ranged:
                self._launch(entry, obj, run[0], run[-1], counted, cursor)
                run = []
        if run:
            self._launch(entry, obj, run[0], run[-1], counted, cursor)

    def _launch(self, entry: Entry, obj: str, first: int, last: int, counted: bool,
                cursor: CursorT | None) -> None:
        waits = self._objects.setdefault(obj, _Waits())
        for index in range(first, last + 1):
            waits.waiting[index] = trio.Event()
            waits.errors.pop(index, None)
        run = _Run(entry, obj, waits, first, last, counted, cursor, next=first)
        waits.runs.add(run.scope)
        if cursor is not None:
            cursor.runs.add(run.scope)
        if counted:
            self._inflight += _span(entry, first, last)
        supervise.spawn(self._nursery, f"read {entry.name}", self._fetch_run, run)

    async def _fetch_run(self, run: _Run[CursorT]) -> None:
        try:
            with run.scope:
                await self._receive(run)
            self._measure(run)
        except Exception as exc:  # noqa: BLE001 - every failure goes to the waiters
            waited = any(run.waits.waiting[index].statistics().tasks_waiting
                         for index in range(run.next, run.last + 1)
                         if index in run.waits.waiting)
            error = self._failure(run.entry, run.obj, exc, waited)
            for index in range(run.next, run.last + 1):
                run.waits.errors[index] = error
        finally:
            self._finish(run)

    async def _receive(self, run: _Run[CursorT]) -> None:
        entry = run.entry
        partial = bytearray()  # for a store whose chunks are not whole blocks
        async with self._store.read(entry, run.first * BLOCK_SIZE,
                                    min((run.last + 1) * BLOCK_SIZE, entry.size)) as chunks:
            async for chunk in chunks:
                if not partial and len(chunk) == block_length(entry, run.next):
                    await self._deliver(run, chunk)  # the common case: no copy
                    continue
                partial += chunk
                while run.next <= run.last and len(partial) >= block_length(entry, run.next):
                    length = block_length(entry, run.next)
                    block = partial[:length]
                    del partial[:length]
                    await self._deliver(run, block)
        if run.next <= run.last:
            raise RemoteIOError(f"{entry.name}: the store sent "
                                f"{run.next * BLOCK_SIZE + len(partial)} bytes where it "
                                f"declared {entry.size}")

    async def _deliver(self, run: _Run[CursorT], data: Buffer) -> None:
        """Hand a block to its readers now; its disk write follows on its own."""
        await self._cache.reserve_write()  # a disk that lags slows the fetch, not memory
        if self._cache.keep((run.obj, run.next), data, run.entry.size):
            supervise.spawn(self._nursery, "cache write", self._cache.write_kept)
        event = run.waits.waiting.pop(run.next, None)
        if event is not None:
            event.set()
        if run.counted:
            if run.cursor is not None:
                self._ahead_arrived(run.cursor, run.obj, run.next, data)
            self._inflight -= block_length(run.entry, run.next)
        run.next += 1

    def _measure(self, run: _Run[CursorT]) -> None:
        """What one connection carried, from a GET of a whole block or more.
        GETs side by side share the CPU and the link, so one GET's rate says
        what a connection carries only at its best: the best of the last
        ``RATES_KEPT`` is what counts."""
        size = _span(run.entry, run.first, run.last)
        seconds = trio.current_time() - run.started
        if size >= BLOCK_SIZE and seconds > 0:
            self._rates.append(size / seconds)
            self._connection_enough = max(self._rates) >= ONE_CONNECTION_ENOUGH

    def _finish(self, run: _Run[CursorT]) -> None:
        waits = run.waits
        waits.runs.discard(run.scope)
        if run.cursor is not None:
            run.cursor.runs.discard(run.scope)
        if run.counted and run.next <= run.last:
            self._inflight -= _span(run.entry, run.next, run.last)
        for index in range(run.next, run.last + 1):
            event = waits.waiting.pop(index, None)
            if event is not None:
                event.set()
        if not waits.runs and self._objects.get(run.obj) is waits:
            del self._objects[run.obj]  # waiters keep their reference to see errors
        if run.cursor is not None and run.next > run.last and not run.scope.cancel_called:
            self._cursor_get_ended(run.cursor, run.entry, run.obj)

    def _failure(self, entry: Entry, obj: str, exc: Exception, waited: bool) -> FsError:
        """The error for a GET's waiters, logged once per file version and
        message; a read-ahead nobody waited for yet fails quietly (its reader,
        if one comes, asks again and hears the error then)."""
        if isinstance(exc, FsError):
            if not waited:
                log.debug("read-ahead of %s: %s", entry.name, exc)
                return exc
            if (obj, str(exc)) in self._logged:
                exc.logged = True  # parallel runs and retries of one bad file: one line
        error = supervise.failure(f"read {entry.name}", exc, logger=log)
        self._logged[(obj, str(error))] = True
        return error
