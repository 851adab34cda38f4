"""Reads of remote files through the block cache, with a read-ahead per open handle.

A read asks for the blocks it covers: from memory, else from the disk cache
(checked there), else from the store. Missing blocks are fetched by *runs*:
one streaming ranged GET over consecutive blocks, whose body arrives in
block-sized buffers received in worker threads (``remote/worker_http.py``). Each
block is handed to the readers waiting for it the moment it is in memory and
written to disk after, off their path; replies are slices of those buffers.

Read-ahead follows mountpoint-s3's prefetcher. Each open handle has a cursor
(:class:`ReadState`). Once the handle has read half a block in order, the
cursor streams ahead of it, and the window doubles (1, 2, 4 ...
``MAX_WINDOW_BLOCKS`` blocks) while reading stays in order; the next window is
asked for when the reader is half-way into what is ahead. While one
connection carries less than ``ONE_CONNECTION_ENOUGH``, a window is asked as
GETs of at most ``PART_BLOCKS`` blocks, side by side, as mountpoint-s3 and
gcsfuse split a read: over a real link one connection carries at most its
TCP window a round trip (50 MB/s for 2 MiB at 40 ms), so one GET per window
left most of the link idle. Where one connection carries more (loopback, a
LAN), GETs of up to ``RUN_BLOCKS`` go one after another as before: there the
split only added requests and threads on a CPU the read is bound by. What
one connection carries is measured on each GET of a whole block or more. A read up to a block behind (the kernel reorders
its own read-ahead) or skipping forward within what the cursor asked for
keeps the cursor; any other seek resets it and cancels its runs. All cursors
together keep at most ``MAX_INFLIGHT_BYTES`` of read-ahead asked for and not
yet received, counted in bytes so that a small file fetched ahead costs its
size, not a block. A store that cannot serve ranges (``ranged_reads`` false)
gets one run for the whole file.

A read out of order (a handle's first, or a seek), of less than half the
blocks it falls in, of which one is neither cached nor on its way, is a
*piece*: one GET of just its bytes, answered when they are in, kept nowhere
here. Why: over a link its reader waits a round trip either way, and a whole
block more for the block (the first bytes of a file, a database's random
pages); the kernel already sizes such a read (its read-ahead grows a first
read and leaves a random one alone), so nothing is added around it; and
bytes of a block kept partly would need a second kind of block in memory,
on disk and in the index, for reads the page cache already keeps. A reader
that goes on in order gets whole blocks, as before, so a sequential read
costs a piece more than it did. Random reads of one spot, once the page
cache has let it go, fetch it again (docs/SEMANTICS.md).

Over a link where one connection is slow, a window's GETs side by side end
about together, once the reader has got through the first of them: the next
window is asked as a GET ends (``_keep_link_busy``), one at a time between
the reader's own asks, instead of only at the reader's tripwire, where the
link had sat idle for round trips once every window.

Blocks read ahead also go to the kernel's page cache for the handle's file
(store-ahead, ``cache/store_ahead.py``) while the handle's FUSE reads are
small, but for each window's middle block
(its *tripwire*) and for blocks a FUSE read is already waiting for: the
reader's FUSE read of the tripwire is how the cursor learns where a reader
served by the page cache has got to.

Runs are supervised tasks in the mount's nursery, shared by every handle on the
same file version; a failed run wakes its waiters with the error and leaves the
blocks missing, so the next read tries again. A failure is logged once per
file version and message: parallel runs and the kernel's retries of one bad
file make one log line (each failed read still answers its error). Nothing of
a file stays here once its runs are over: a cursor lives in its handle, and
``release`` cancels what the cursor still fetches.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cachetools
import trio

from vagonfs.cache.blocks import BLOCK_SIZE, BlockCache, Buffer, object_id
from vagonfs.cache.store_ahead import KernelPages, StoreAhead, gains
from vagonfs.errors import FsError, RemoteIOError
from vagonfs.remote.base import Entry, Store
from vagonfs.runtime import supervise

log = logging.getLogger("vagonfs.read")

MAX_WINDOW_BLOCKS = 32
RUN_BLOCKS = 16  # a GET's most, read-ahead's or a reader's own
PART_BLOCKS = 4  # a GET's most while one connection is slow
ONE_CONNECTION_ENOUGH = 128e6  # bytes a second (a gigabit) one GET brought: no need to split
RATES_KEPT = 32  # GETs whose rate is remembered
MAX_INFLIGHT_BYTES = 48 * BLOCK_SIZE  # below the hot set: read-ahead is still in memory when read
# reading in order this far starts read-ahead: a file manager sniffing a
# file's head fetches its own bytes, then at most the block they are in
IN_ORDER_AFTER = BLOCK_SIZE // 2
REORDER_BYTES = BLOCK_SIZE  # how far behind the cursor a read may end and still be in order


@dataclass(eq=False)
class ReadState:
    """One open handle's read cursor."""

    next_offset: int = -1  # where reading has got to; -1 before the first read
    in_order_from: int = 0  # where the current in-order stretch began
    ahead_to: int = 0  # the first block the cursor's read-ahead has not asked for
    window: int = 1  # blocks in its next read-ahead GET
    early: bool = False  # a window was asked as a GET ended, since the reader asked one
    runs: set[trio.CancelScope] = field(default_factory=set)
    tripwires: set[int] = field(default_factory=set)  # blocks kept out of the page cache
    largest_read: int = 0  # bytes of the handle's largest FUSE read: store_ahead.gains
    # the inode whose page cache may take this handle's blocks read ahead, asked
    # for each block (None: not now); None here: never (cache/store_ahead.py)
    store_to: Callable[[], int | None] | None = None


@dataclass(eq=False)
class _Fetches:
    """Blocks of one object (a file version) on their way, and failed ones' errors."""

    waiting: dict[int, trio.Event] = field(default_factory=dict)
    errors: dict[int, FsError] = field(default_factory=dict)
    runs: set[trio.CancelScope] = field(default_factory=set)


@dataclass(eq=False)
class _Run:
    """One GET of blocks [first, last]; ``next`` is the first not yet received."""

    entry: Entry
    obj: str
    fetches: _Fetches
    first: int
    last: int
    counted: bool  # read-ahead: counts against MAX_INFLIGHT_BYTES
    cursor: ReadState | None
    next: int = 0
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    started: float = field(default_factory=trio.current_time)


def _length(entry: Entry, index: int) -> int:
    return min(BLOCK_SIZE, entry.size - index * BLOCK_SIZE)


class Reader:
    """Protects: the fetches in progress and the in-flight count; trio thread only."""

    def __init__(self, store: Store, cache: BlockCache, nursery: trio.Nursery,
                 pages: KernelPages | None = None):
        self._store = store
        self._cache = cache
        self._nursery = nursery
        self.store_ahead = StoreAhead(pages)
        # blocks FUSE reads wait for now: the kernel is reading their pages
        # itself, so storing them would only copy them twice
        self._awaited: collections.Counter[tuple[str, int]] = collections.Counter()
        self._fetches: dict[str, _Fetches] = {}
        self._inflight = 0
        # whether one connection carries enough that a window needs no split;
        # not until a GET has shown it
        self._connection_enough = False
        self._rates: collections.deque[float] = collections.deque(maxlen=RATES_KEPT)
        self._logged: cachetools.LRUCache = cachetools.LRUCache(256)  # (object, message)

    async def read(self, entry: Entry, offset: int, size: int,
                   state: ReadState) -> bytes | memoryview:
        end = min(offset + size, entry.size)
        if offset >= end:
            return b""
        obj = object_id(self._store.cache_key(entry.key), entry.version)
        first, last = offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE
        state.largest_read = max(state.largest_read, size)
        in_order = self._follow(state, offset, end)
        if not in_order and self._piece_serves(entry, obj, offset, end):
            return await self._read_piece(entry, obj, offset, end)
        self._start_missing(entry, obj, first, last)
        if (in_order and state.next_offset - state.in_order_from >= IN_ORDER_AFTER
                and self._store.ranged_reads and self._read_ahead(entry, obj, state, last)):
            state.early = False  # the reader keeps up: one may be asked early again
        blocks = [(obj, index) for index in range(first, last + 1)]
        self._awaited.update(blocks)
        try:
            parts = [await self._block_bytes(entry, obj, index, offset, end)
                     for index in range(first, last + 1)]
        finally:
            self._awaited.subtract(blocks)
            for block in blocks:
                if self._awaited[block] <= 0:
                    del self._awaited[block]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def prefetch(self, entry: Entry) -> bool:
        """Start fetching a whole file into the cache without waiting (a small
        file about to be read, as when a folder is copied). Nothing happens when
        it is cached or on its way, or when read-ahead is at its bound: then
        False, the caller may ask again later."""
        if entry.is_dir or not entry.ready or entry.size <= 0:
            return True
        nblocks = -(-entry.size // BLOCK_SIZE)
        if self._inflight + entry.size > MAX_INFLIGHT_BYTES:
            return False
        obj = object_id(self._store.cache_key(entry.key), entry.version)
        self._start_missing(entry, obj, 0, nblocks - 1, counted=True)
        return True

    def release(self, state: ReadState) -> None:
        """The handle closed: stop what its cursor still fetches."""
        self._cancel(state)

    def forget(self, entry: Entry) -> None:
        """Drop what is cached of this version of a file (it changed or went away)."""
        obj = object_id(self._store.cache_key(entry.key), entry.version)
        fetches = self._fetches.pop(obj, None)
        if fetches is not None:
            for scope in fetches.runs:
                scope.cancel()
        self._cache.drop_object(obj)
        self.store_ahead.forget(obj)

    # -- the cursor ----------------------------------------------------------------

    def _follow(self, state: ReadState, offset: int, end: int) -> bool:
        """Move the cursor; True when the read follows the one before (in order)."""
        # the kernel answers its own reads out of order: a read counts as in
        # order when it ends within REORDER_BYTES of where reading has got to
        # (two swapped 1 MiB reads: the earlier one ends where the later began)
        near = (state.next_offset >= 0 and state.next_offset - REORDER_BYTES <= end
                and offset <= max(state.next_offset + REORDER_BYTES,
                                  state.ahead_to * BLOCK_SIZE))
        if near:
            state.in_order_from = min(state.in_order_from, offset)
            state.next_offset = max(state.next_offset, end)
        else:
            self._cancel(state)
            state.in_order_from, state.next_offset = offset, end
            state.ahead_to, state.window, state.early = 0, 1, False
        return near

    def _read_ahead(self, entry: Entry, obj: str, state: ReadState, last: int,
                    lead: float = 0.5) -> bool:
        """Ask for the cursor's next window once what is already asked for
        ahead of the reader (at block ``last``) is under ``lead`` windows:
        half of one as the reader reads. True when it was asked."""
        start = max(state.ahead_to, last + 1)
        count = min(state.window, -(-entry.size // BLOCK_SIZE) - start,
                    (MAX_INFLIGHT_BYTES - self._inflight) // BLOCK_SIZE)
        if count <= 0 or start - last - 1 >= lead * state.window:
            return False
        self._start_missing(entry, obj, start, start + count - 1, counted=True, cursor=state)
        cached = [((obj, index), _length(entry, index)) for index in range(start, start + count)
                  if self._cache.on_disk_only((obj, index))]
        if cached:  # from disk to memory now, each block then to the kernel's page cache
            supervise.spawn(self._nursery, f"read {entry.name} from the cache",
                            self._cache.load_run, cached,
                            lambda block, data: self._offer(state, obj, block[1], data))
        state.tripwires = {t for t in state.tripwires if t > last} | {start + count // 2}
        for index in range(start, start + count):
            if (data := self._cache.get((obj, index))) is not None:
                self._offer(state, obj, index, data)
        state.ahead_to = start + count
        state.window = min(2 * state.window, MAX_WINDOW_BLOCKS)
        return True

    def _offer(self, state: ReadState | None, obj: str, index: int, data: Buffer) -> None:
        """Store-ahead, but for the window's middle block: a read the kernel
        answers from its page cache never reaches this cursor, so that block
        is left for a FUSE read, which moves the cursor on and asks for the
        next window while half of this one is still ahead of the reader."""
        if (state is not None and state.store_to is not None and gains(state.largest_read)
                and index not in state.tripwires and (obj, index) not in self._awaited):
            ino = state.store_to()
            if ino is not None:
                self.store_ahead.offer(obj, ino, index, data)

    def _keep_link_busy(self, run: _Run) -> None:
        """One of a cursor's GETs ended: over a link where one connection is
        slow, ask for the next window now, one at a time between the
        reader's own asks. Why: a window's GETs side by side share the link,
        so they all end about when its reader is through the first of them;
        the reader then got to the tripwire in no time, and the next window,
        asked only then, left the link idle for its round trips, once every
        window. One at a time: a reader that stops has at most that window
        more asked for it. Only once a GET has shown the link slow: where the
        CPU is the bound, asks ahead of the reader only add GETs at once."""
        state = run.cursor
        if (state is None or state.early or run.next <= run.last or run.scope.cancel_called
                or not self._rates or self._connection_enough or state.next_offset <= 0
                or self._inflight > MAX_INFLIGHT_BYTES - PART_BLOCKS * BLOCK_SIZE):
            return  # (nor for less than a GET's worth: many small GETs)
        state.early = self._read_ahead(run.entry, run.obj, state,
                                       (state.next_offset - 1) // BLOCK_SIZE, lead=math.inf)

    def _cancel(self, state: ReadState) -> None:
        for scope in state.runs:
            scope.cancel()
        state.runs.clear()

    # -- pieces ----------------------------------------------------------------------

    def _piece_serves(self, entry: Entry, obj: str, offset: int, end: int) -> bool:
        """Whether a read out of order is fetched as its own bytes: it asks
        for less than half of the blocks it falls in, and one of those is
        neither cached nor on its way."""
        if not self._store.ranged_reads:
            return False
        first, last = offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE
        blocks = min(entry.size, (last + 1) * BLOCK_SIZE) - first * BLOCK_SIZE
        if 2 * (end - offset) >= blocks:
            return False
        fetches = self._fetches.get(obj)
        return any(not self._cache.has((obj, index))
                   and not (fetches and index in fetches.waiting)
                   for index in range(first, last + 1))

    async def _read_piece(self, entry: Entry, obj: str, offset: int,
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

    async def _block_bytes(self, entry: Entry, obj: str, index: int, offset: int,
                           end: int) -> memoryview:
        block, length = (obj, index), _length(entry, index)
        start = index * BLOCK_SIZE
        for _ in range(3):
            fetches = self._fetches.get(obj)
            if fetches is not None and (event := fetches.waiting.get(index)) is not None:
                await event.wait()
                error = fetches.errors.pop(index, None)
                if error is not None:
                    raise error
            data = self._cache.get(block)
            if data is None:
                data = await self._cache.load(block, length)
            if data is not None:
                return memoryview(data)[max(offset, start) - start:min(end, start + length) - start]
            # evicted before it could be read, dropped as damaged, or its run was
            # cancelled: fetch it now
            self._start_missing(entry, obj, index, index)
        raise RemoteIOError(f"block {index} of {entry.name} could not be kept in memory")

    def _start_missing(self, entry: Entry, obj: str, first: int, last: int, *,
                       counted: bool = False, cursor: ReadState | None = None) -> None:
        """Start runs for the blocks in [first, last] neither cached nor coming."""
        ranged = self._store.ranged_reads
        part = RUN_BLOCKS if self._connection_enough else PART_BLOCKS
        if not ranged:
            first, last = 0, max(0, -(-entry.size // BLOCK_SIZE) - 1)
        fetches = self._fetches.get(obj)
        run: list[int] = []
        for index in range(first, last + 1):
            if self._cache.has((obj, index)) or (fetches and index in fetches.waiting):
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
                cursor: ReadState | None) -> None:
        fetches = self._fetches.setdefault(obj, _Fetches())
        for index in range(first, last + 1):
            fetches.waiting[index] = trio.Event()
            fetches.errors.pop(index, None)
        run = _Run(entry, obj, fetches, first, last, counted, cursor, next=first)
        fetches.runs.add(run.scope)
        if cursor is not None:
            cursor.runs.add(run.scope)
        if counted:
            self._inflight += min(entry.size, (last + 1) * BLOCK_SIZE) - first * BLOCK_SIZE
        supervise.spawn(self._nursery, f"read {entry.name}", self._fetch_run, run)

    async def _fetch_run(self, run: _Run) -> None:
        try:
            with run.scope:
                await self._receive(run)
            self._measure(run)
        except Exception as exc:  # noqa: BLE001 - every failure goes to the waiters
            waited = any(run.fetches.waiting[index].statistics().tasks_waiting
                         for index in range(run.next, run.last + 1)
                         if index in run.fetches.waiting)
            error = self._failure(run.entry, run.obj, exc, waited)
            for index in range(run.next, run.last + 1):
                run.fetches.errors[index] = error
        finally:
            self._finish(run)

    async def _receive(self, run: _Run) -> None:
        entry = run.entry
        end = min((run.last + 1) * BLOCK_SIZE, entry.size)
        partial = bytearray()  # for a store whose chunks are not whole blocks
        async with self._store.read(entry, run.first * BLOCK_SIZE, end) as chunks:
            async for chunk in chunks:
                if not partial and len(chunk) == _length(entry, run.next):
                    await self._deliver(run, chunk)  # the common case: no copy
                    continue
                partial += chunk
                while run.next <= run.last and len(partial) >= _length(entry, run.next):
                    length = _length(entry, run.next)
                    block = partial[:length]
                    del partial[:length]
                    await self._deliver(run, block)
        if run.next <= run.last:
            raise RemoteIOError(f"{entry.name}: the store sent "
                                f"{run.next * BLOCK_SIZE + len(partial)} bytes where it "
                                f"declared {entry.size}")

    async def _deliver(self, run: _Run, data: Buffer) -> None:
        """Hand a block to its readers now; its disk write follows on its own."""
        await self._cache.reserve_write()  # a disk that lags slows the fetch, not memory
        if self._cache.keep((run.obj, run.next), data, run.entry.size):
            supervise.spawn(self._nursery, "cache write", self._cache.write_kept)
        event = run.fetches.waiting.pop(run.next, None)
        if event is not None:
            event.set()
        if run.counted:  # read ahead of a reader, not asked by it
            self._offer(run.cursor, run.obj, run.next, data)
            self._inflight -= _length(run.entry, run.next)
        run.next += 1

    def _measure(self, run: _Run) -> None:
        """What one connection carried, from a GET of a whole block or more.
        GETs side by side share the CPU and the link, so one GET's rate says
        what a connection carries only at its best: the best of the last
        ``RATES_KEPT`` is what counts."""
        size = min(run.entry.size, (run.last + 1) * BLOCK_SIZE) - run.first * BLOCK_SIZE
        seconds = trio.current_time() - run.started
        if size >= BLOCK_SIZE and seconds > 0:
            self._rates.append(size / seconds)
            self._connection_enough = max(self._rates) >= ONE_CONNECTION_ENOUGH

    def _finish(self, run: _Run) -> None:
        fetches = run.fetches
        fetches.runs.discard(run.scope)
        if run.cursor is not None:
            run.cursor.runs.discard(run.scope)
        if run.counted and run.next <= run.last:
            self._inflight -= (min(run.entry.size, (run.last + 1) * BLOCK_SIZE)
                               - run.next * BLOCK_SIZE)
        for index in range(run.next, run.last + 1):
            event = fetches.waiting.pop(index, None)
            if event is not None:
                event.set()
        if not fetches.runs and self._fetches.get(run.obj) is fetches:
            del self._fetches[run.obj]  # waiters keep their reference to see errors
        self._keep_link_busy(run)

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
