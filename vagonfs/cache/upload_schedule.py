"""When each queued upload starts, how many send at once, and when a failed one is tried again.

Apart from the upload queue's state machine (``vagonfs.cache.uploads``):
the timing is a policy of its own, tuned against copies of many small files,
and the machine reads the same whatever the timing. The schedule holds the
queue's items without looking into them: the queue says which are still
queued.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

import trio

from vagonfs.errors import FileTooLarge, InvalidName, NoSpace, PermissionDenied, ReadOnly

PERMANENT = (NoSpace, FileTooLarge, PermissionDenied, InvalidName, ReadOnly)  # never retried
MAX_PARALLEL_UPLOADS = 32  # files sending at once: a small one waits out three round trips
HOLD_MAX = 30.0  # seconds an upload waits past its delay for the mount's writers to pause


def retry_delay(attempts: int) -> float:
    """Seconds before a transient failure is tried again: doubling, at most 5 minutes."""
    return min(300.0, 2.0 * 2 ** attempts)


T = TypeVar("T")


class UploadSchedule(Generic[T]):
    """Protects: the heap of queueings and the last close; trio-thread only."""

    def __init__(self, delay: float) -> None:
        self._delay = delay
        # (due, tie-breaker, item) of every queueing, earliest first; an entry
        # whose item has moved on since is dropped when it comes to the top
        self._heap: list[tuple[float, int, T]] = []
        self._count = itertools.count()
        self._last_close = -math.inf  # when a writer last closed a file on this mount

    def closed(self) -> float:
        """A writer closed a file: when its upload is due (the write-back delay)."""
        self._last_close = trio.current_time()
        return self._last_close + self._delay

    def push(self, item: T, due: float) -> None:
        heapq.heappush(self._heap, (due, next(self._count), item))

    def pop_due(self, now: float, queued: Callable[[T, float], bool]) -> T | None:
        """The earliest item still ``queued`` for its due, taken off the heap if
        it starts by ``now``; None when none does.

        Earliest first, from a heap: ``_starts_at`` never puts a later due
        before an earlier one, so the first that must wait ends the pass.
        Scanning every pending file instead, at every close, was half of the
        trio thread's time while ``rsync`` copied 1,000 small files."""
        top = self._top(queued)
        if top is None or self._starts_at(top[0]) > now:
            return None
        heapq.heappop(self._heap)
        return top[2]

    def next_start(self, queued: Callable[[T, float], bool]) -> float:
        """When the earliest item still ``queued`` starts (inf: none is)."""
        top = self._top(queued)
        return math.inf if top is None else self._starts_at(top[0])

    def _top(self, queued: Callable[[T, float], bool]) -> tuple[float, int, T] | None:
        while self._heap:
            if queued(self._heap[0][2], self._heap[0][0]):
                return self._heap[0]
            heapq.heappop(self._heap)  # started, rewritten or deleted since
        return None

    def _starts_at(self, due: float) -> float:
        """When an upload due at ``due`` starts: its delay after its close, held
        while other files are still being closed on the mount (a copy under
        way), at most ``HOLD_MAX`` longer. The copy's requests and the uploads
        share the one trio thread, and an upload's HTTP calls cost more of it
        than the small file's FUSE requests: with ``rsync -a`` of many small
        files the copy returns about twice as soon, and the last upload is
        confirmed later, as the uploads no longer overlap the copy.
        ``drain`` and ``fsync`` start uploads at once (due 0)."""
        if due <= 0:
            return due
        return max(due, min(self._last_close + self._delay, due + HOLD_MAX))


class SendSlots:
    """Bounds the uploads sending bytes: one that has sent them all and waits
    for the store's confirmation (Vagon's complete, the tenant listing) gives
    its slot to the next file."""

    def __init__(self) -> None:
        self._slots = trio.Semaphore(MAX_PARALLEL_UPLOADS)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[Callable[[], None]]:
        """A slot, given back by the function it yields (once the bytes are
        sent) or else when the block ends."""
        await self._slots.acquire()
        holding = True

        def release() -> None:
            nonlocal holding
            if holding:
                holding = False
                self._slots.release()

        try:
            yield release
        finally:
            release()
