"""statfs without a round trip: ``df``, file managers and ``find`` (gnulib's
fts asks for each walk) ask for the store's capacity often, and it changes
slowly, so once known it is answered at once and asked again in the
background when older than ``CAPACITY_FRESH``.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from vagonfs.remote.base import Capacity, Store
from vagonfs.runtime import supervise

CAPACITY_FRESH = 30.0  # seconds statfs answers from what it heard without asking again
# a store that does not say its size gets a nominal 1 PiB, as rclone does: a
# size of 0 makes file managers refuse to copy anything
UNKNOWN_CAPACITY = 1 << 50
FREE_INODES = 1_000_000  # inodes are numbers, never used up: the figure df shows free


@dataclass(frozen=True)
class FsStats:
    """What ``statfs`` answers, in bytes and inodes."""

    total: int
    free: int
    files: int
    free_files: int
    name_max: int


class KnownCapacity:
    """Protects: the capacity last heard and whether it is being asked; trio-thread only."""

    def __init__(self, store: Store, nursery: trio.Nursery):
        self._store = store
        self._nursery = nursery
        self._capacity: tuple[float, Capacity] | None = None  # (when heard, what)
        self._asking_capacity = False

    async def stats(self, inodes: int) -> FsStats:
        """``inodes``: how many the mount knows now."""
        capacity = await self._capacity_now()
        total = capacity.total or UNKNOWN_CAPACITY
        return FsStats(total, max(0, total - capacity.used), inodes + FREE_INODES,
                       FREE_INODES, self._store.capabilities.max_name_length)

    async def _capacity_now(self) -> Capacity:
        known = self._capacity
        if known is None:
            return await self._ask_capacity()
        if trio.current_time() - known[0] > CAPACITY_FRESH and not self._asking_capacity:
            self._asking_capacity = True
            supervise.spawn(self._nursery, "capacity", self._ask_capacity)
        return known[1]

    async def _ask_capacity(self) -> Capacity:
        try:
            capacity = await self._store.capacity()
        finally:
            self._asking_capacity = False
        self._capacity = (trio.current_time(), capacity)
        return capacity
