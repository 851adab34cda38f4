"""Reads of remote files through the block cache, with a read-ahead per open handle.

A read asks for the blocks it covers: from memory, else from the disk cache
(checked there), else from the store, whose GETs ``cache/block_fetches.py``
makes. What is decided here is what to ask for ahead of each reader, so that
its next blocks are in memory before it asks.

Read-ahead follows mountpoint-s3's prefetcher. Each open handle has a cursor
(:class:`ReadState`). Once the handle has read half a block in order, the
cursor streams ahead of it, and the window doubles (1, 2, 4 ...
``MAX_WINDOW_BLOCKS`` blocks, ``SLOW_LINK_WINDOW_BLOCKS`` once a GET has shown
one connection slow) while reading stays in order; the next window is
asked for when the reader is half-way into what is ahead. A read up to a
block behind (the kernel reorders its own read-ahead) or skipping forward
within what the cursor asked for keeps the cursor; any other seek resets it
and cancels its runs. All cursors together keep at most
``MAX_INFLIGHT_BYTES`` of read-ahead asked for and not yet received, below
the blocks kept in memory, so that what was read ahead is still there when
it is read.

A read out of order (a handle's first, or a seek) of less than half the
blocks it falls in, of which one is neither cached nor on its way, is a
*piece*: just its bytes, for it alone. A reader that goes on in order gets
whole blocks, so a sequential read costs a piece more than it would.

Over a link where one connection is slow, a window's GETs side by side end
about together, once the reader has got through the first of them: the next
window is asked as a GET ends (``_keep_link_busy``), one at a time between
the reader's own asks, instead of only at the reader's tripwire, where the
link had sat idle for round trips once every window.

Blocks read ahead also go to the kernel's page cache for the handle's file
(store-ahead, ``cache/store_ahead.py``): those from the disk cache read by
the thread that stores them, those just received while the handle's FUSE
reads are small; but for each window's middle block (its *tripwire*) and
for blocks a FUSE read is already waiting for: the reader's FUSE read of the
tripwire is how the cursor learns where a reader served by the page cache
has got to.

A cursor lives in its handle, and ``release`` cancels what it still fetches.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from vagonfs.cache.block_fetches import PART_BLOCKS, BlockFetches, block_count, block_length
from vagonfs.cache.blocks import BLOCK_SIZE, BlockCache, Buffer, object_id
from vagonfs.cache.store_ahead import KernelPages, StoreAhead, gains
from vagonfs.remote.base import Entry, Store
from vagonfs.runtime import supervise

MAX_WINDOW_BLOCKS = 32
# over a link where one connection is slow a window is GETs side by side,
# each bringing one TCP window a round trip: a wider window keeps more of
# them on the link (MAX_INFLIGHT_BYTES still bounds all cursors together)
SLOW_LINK_WINDOW_BLOCKS = 48
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


class Reader:
    """Protects: the cursors' read-ahead and the blocks FUSE reads await; trio thread only."""

    def __init__(self, store: Store, cache: BlockCache, nursery: trio.Nursery,
                 pages: KernelPages | None = None):
        self._store = store
        self._cache = cache
        self._nursery = nursery
        self.store_ahead = StoreAhead(pages)
        self.fetches: BlockFetches[ReadState] = BlockFetches(
            store, cache, nursery, ahead_arrived=self._offer,
            cursor_get_ended=self._keep_link_busy)
        # blocks FUSE reads wait for now: the kernel is reading their pages
        # itself, so storing them would only copy them twice
        self._awaited: collections.Counter[tuple[str, int]] = collections.Counter()

    async def read(self, entry: Entry, offset: int, size: int,
                   state: ReadState) -> bytes | memoryview:
        end = min(offset + size, entry.size)
        if offset >= end:
            return b""
        obj = object_id(self._store.cache_key(entry.key), entry.version)
        first, last = offset // BLOCK_SIZE, (end - 1) // BLOCK_SIZE
        state.largest_read = max(state.largest_read, size)
        in_order = self._follow(state, offset, end)
        if not in_order and self.fetches.piece_serves(entry, obj, offset, end):
            return await self.fetches.read_piece(entry, obj, offset, end)
        self.fetches.start_missing(entry, obj, first, last)
        if (in_order and state.next_offset - state.in_order_from >= IN_ORDER_AFTER
                and self._store.ranged_reads and self._read_ahead(entry, obj, state, last)):
            state.early = False  # the reader keeps up: one may be asked early again
        blocks = [(obj, index) for index in range(first, last + 1)]
        self._awaited.update(blocks)
        try:
            parts = [await self.fetches.block_bytes(entry, obj, index, offset, end)
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
        if self.fetches.inflight + entry.size > MAX_INFLIGHT_BYTES:
            return False
        obj = object_id(self._store.cache_key(entry.key), entry.version)
        self.fetches.start_missing(entry, obj, 0, block_count(entry) - 1, counted=True)
        return True

    def release(self, state: ReadState) -> None:
        """The handle closed: stop what its cursor still fetches."""
        self._cancel(state)

    def forget(self, entry: Entry) -> None:
        """Drop what is cached of this version of a file (it changed or went away)."""
        obj = object_id(self._store.cache_key(entry.key), entry.version)
        self.fetches.cancel(obj)
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
        count = min(state.window, block_count(entry) - start,
                    (MAX_INFLIGHT_BYTES - self.fetches.inflight) // BLOCK_SIZE)
        if count <= 0 or start - last - 1 >= lead * state.window:
            return False
        self.fetches.start_missing(entry, obj, start, start + count - 1, counted=True,
                                   cursor=state)
        state.tripwires = {t for t in state.tripwires if t > last} | {start + count // 2}
        loads = []
        for index in range(start, start + count):
            block, length = (obj, index), block_length(entry, index)
            if self._cache.on_disk_only(block):
                if not self._store_from_disk(state, block, length):
                    loads.append((block, length))
            elif (data := self._cache.get(block)) is not None:
                self._offer(state, obj, index, data)
        if loads:  # from disk to memory now, for the reader's FUSE reads
            supervise.spawn(self._nursery, f"read {entry.name} from the cache",
                            self._cache.load_run, loads)
        state.ahead_to = start + count
        widest = SLOW_LINK_WINDOW_BLOCKS if self.fetches.shown_slow else MAX_WINDOW_BLOCKS
        state.window = min(2 * state.window, widest)
        return True

    def _store_into(self, state: ReadState, obj: str, index: int,
                    from_disk: bool = False) -> int | None:
        """The inode whose page cache takes block ``index`` ahead of this
        reader, or None. Never the window's middle block: a read the kernel
        answers from its page cache never reaches this cursor, so that block
        is left for a FUSE read, which moves the cursor on and asks for the
        next window while half of this one is still ahead of the reader. A
        block in memory only while the handle's reads are small (``gains``);
        one from disk at any size, as its sender does all its work."""
        if (state.store_to is not None and (from_disk or gains(state.largest_read))
                and index not in state.tripwires and (obj, index) not in self._awaited):
            return state.store_to()
        return None

    def _offer(self, state: ReadState, obj: str, index: int, data: Buffer) -> None:
        """Store-ahead of a block in memory."""
        if (ino := self._store_into(state, obj, index)) is not None:
            self.store_ahead.offer(obj, ino, index, len(data), data)

    def _store_from_disk(self, state: ReadState, block: tuple[str, int], length: int) -> bool:
        """Store-ahead of a block only on disk, read by the thread that sends
        it; it is not loaded into memory here. False when it is not stored,
        the queue of stores full included (the caller loads it for the
        reader's FUSE reads)."""
        ino = self._store_into(state, *block, from_disk=True)
        read = self._cache.disk_reader(block, length) if ino is not None else None
        if ino is None or read is None:
            return False

        def load() -> bytes | None:  # in the sending thread
            return None if block in self._awaited else read()

        return self.store_ahead.offer(block[0], ino, block[1], length, load)

    def _keep_link_busy(self, state: ReadState, entry: Entry, obj: str) -> None:
        """One of a cursor's GETs brought all its blocks: over a link where
        one connection is slow, ask for the next window now, one at a time
        between the reader's own asks. Why: a window's GETs side by side
        share the link, so they all end about when its reader is through the
        first of them; the reader then got to the tripwire in no time, and
        the next window, asked only then, left the link idle for its round
        trips, once every window. One at a time: a reader that stops has at
        most that window more asked for it. Only once a GET has shown the
        link slow: where the CPU is the bound, asks ahead of the reader only
        add GETs at once."""
        if (state.early or not self.fetches.shown_slow or state.next_offset <= 0
                or self.fetches.inflight > MAX_INFLIGHT_BYTES - PART_BLOCKS * BLOCK_SIZE):
            return  # (nor for less than a GET's worth: many small GETs)
        state.early = self._read_ahead(entry, obj, state,
                                       (state.next_offset - 1) // BLOCK_SIZE, lead=math.inf)

    def _cancel(self, state: ReadState) -> None:
        for scope in state.runs:
            scope.cancel()
        state.runs.clear()
