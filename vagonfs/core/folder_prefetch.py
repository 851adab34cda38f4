"""Read-ahead across files: a folder copied file by file in listing order.

``rsync``, ``cp -r`` and ``tar`` read a folder's files one after another, each
whole, in the order the folder lists them (both stores list by name, as rsync
sorts). For small files the time goes to the round trips before the first
byte (a download link, then the GET), one file at a time; read-ahead inside
a file cannot help. So once two files of a folder were opened in listing
order, the next ``AHEAD`` small files of that listing are fetched into the
block cache in parallel (``Reader.prefetch``), and the window slides with each
open. Over a link of 40 ms a small file costs two round trips (its link, its
GET), so the window must hold what two round trips of copying take: 24
files made ``rsync`` of 200 wait about 30 round trips. A folder read in any other order, or a file opened alone, fetches
nothing more than it asks for.

State: the order of the last ``FOLDERS`` folders read this way (built once per
listing, so a 100,000-file folder costs one pass, not one per open) and where
their last open was.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cachetools

from vagonfs.cache.blocks import BLOCK_SIZE
from vagonfs.cache.reader import Reader
from vagonfs.remote.base import Entry

AHEAD = 64  # files fetched ahead of the one opened (within the reader's in-flight bound)
SMALL = BLOCK_SIZE  # bytes: a file fetched whole ahead of time; bigger ones wait for their reader
FOLDERS = 8


@dataclass(eq=False)
class _Walk:
    listing: Mapping[str, Entry]  # the listing the order was built from
    order: list[Entry]
    position: dict[str, int]
    last: int = -2  # index of the last file opened
    ahead: int = 0  # the first file not yet asked for ahead


class FolderPrefetch:
    """Protects: the walks; trio-thread only."""

    def __init__(self, reader: Reader):
        self._reader = reader
        self._walks: cachetools.LRUCache = cachetools.LRUCache(FOLDERS)  # folder ino -> _Walk

    def opened(self, folder: int, name: str, listing: Mapping[str, Entry] | None) -> None:
        """A file of ``folder`` was opened for reading."""
        if not listing:
            return
        walk = self._walks.get(folder)
        if walk is None or walk.listing is not listing:
            order = list(listing.values())
            walk = _Walk(listing, order, {e.name: i for i, e in enumerate(order)})
            self._walks[folder] = walk
        index = walk.position.get(name)
        if index is None:
            return
        in_order = 0 < index - walk.last <= 2  # a file skipped (a folder, a deleted one) is fine
        walk.last = index
        if not in_order:
            walk.ahead = 0
            return
        # each file is asked for once as the window slides (asking all AHEAD
        # again at every open was 6% of the trio thread's time in rsync down)
        for at in range(max(index + 1, walk.ahead), min(index + 1 + AHEAD, len(walk.order))):
            entry = walk.order[at]
            if not entry.is_dir and 0 < entry.size <= SMALL and not self._reader.prefetch(entry):
                return  # read-ahead is at its bound: the next open asks from here
            walk.ahead = at + 1
