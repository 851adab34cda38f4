"""Folder listings kept for ``dir_cache_time``, bounded by the entries they hold.

A listing lets a lookup in its folder cost no request, and a second ``ls``
cost nothing. What it costs is memory per entry, and folders differ by five
orders of magnitude (render outputs of 100,000 frames beside folders of
three files), so the bound counts entries across all folders, not folders:
a count of folders would let a few big ones take gigabytes. Past the bound
the least recently used listings go first; the newest one stays even when it
alone is over the bound, or a folder bigger than the bound could never be
listed from the cache and every lookup in it would cost a request (a whole
listing, on the stores that cannot look up one name).

The entries are the same objects the inode table holds, so a listing adds
only its map (about 50 bytes an entry) while the kernel keeps its nodes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from vagonfs.remote.base import Entry

MAX_ENTRIES = 250_000  # across all folders: a 100,000-file folder and more fit


class Listings:
    """Protects: the listings and their entry count; trio-thread only."""

    def __init__(self, ttl: float, max_entries: int = MAX_ENTRIES,
                 clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        # folder ino -> (expiry, name -> entry); least recently used first
        self._kept: OrderedDict[int, tuple[float, dict[str, Entry]]] = OrderedDict()
        self._entries = 0

    def __len__(self) -> int:
        """Folders with a listing kept."""
        return len(self._kept)

    @property
    def entries(self) -> int:
        """Entries kept across all folders (what the bound counts)."""
        return self._entries

    @property
    def max_entries(self) -> int:
        """The bound on ``entries``."""
        return self._max_entries

    def get(self, ino: int) -> Mapping[str, Entry] | None:
        """Folder ``ino``'s listing while fresh, else None."""
        kept = self._kept.get(ino)
        if kept is None:
            return None
        if kept[0] <= self._clock():
            self.drop(ino)
            return None
        self._kept.move_to_end(ino)
        return kept[1]

    def fresh_for(self, ino: int) -> float | None:
        """Seconds folder ``ino``'s listing stays fresh, None when none is
        kept (not counted as a use: the kernel's timeouts are asked of every
        entry it is shown)."""
        kept = self._kept.get(ino)
        return None if kept is None else max(0.0, kept[0] - self._clock())

    def put(self, ino: int, listing: Mapping[str, Entry]) -> None:
        """Keep ``listing`` (copied) as folder ``ino``'s, fresh for the TTL."""
        self.drop(ino)
        names = dict(listing)
        self._kept[ino] = (self._clock() + self._ttl, names)
        self._entries += len(names)
        self._trim()

    def drop(self, ino: int) -> None:
        """Forget folder ``ino``'s listing (changed, moved, or its node dropped)."""
        kept = self._kept.pop(ino, None)
        if kept is not None:
            self._entries -= len(kept[1])

    def set_entry(self, ino: int, entry: Entry) -> None:
        """Show ``entry`` in folder ``ino``'s listing, if one is kept."""
        kept = self._kept.get(ino)
        if kept is not None:
            names = kept[1]
            self._entries += entry.name not in names
            names[entry.name] = entry
            self._trim()

    def drop_entry(self, ino: int, name: str) -> None:
        """Take ``name`` out of folder ``ino``'s listing, if one is kept."""
        kept = self._kept.get(ino)
        if kept is not None and kept[1].pop(name, None) is not None:
            self._entries -= 1

    def _trim(self) -> None:
        """The least recently used listings out while expired or over the bound
        (from the old end only: never a walk over every folder)."""
        now = self._clock()
        while len(self._kept) > 1:
            oldest, (expiry, _) = next(iter(self._kept.items()))
            if expiry > now and self._entries <= self._max_entries:
                return
            self.drop(oldest)
