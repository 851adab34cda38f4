"""Listing ahead: the subfolders of a folder someone reads are listed before
they are asked for.

``find``, ``du``, ``ls -R``, rsync's walk and a file manager stepping into
folders read a folder, then each of its subfolders, one after another. Over a
link of 40 ms each listing is a round trip the walk waits for: ``find`` over
100 folders took 5 s where the listings, sent together, take a few round
trips. So once a reader (``readdir``) has a folder's listing, the listings of
its first subfolders start in the background; as the walk steps into one of
them, the window slides to keep ``ahead`` subfolders listed beyond it (the
order is the listing's, the one walks follow). When the walk enters a folder
whose listing is on its way, it waits for that fetch instead of asking again.

A listing ahead is fetched by ``Namespace.listing``, like any other: whole or
an error, kept in the same cache and under its bound. What it costs is
bounded four ways:
- ``ahead`` subfolders of one folder beyond the last one entered
  (``--list-ahead``; 0 turns listing ahead off): an ``ls`` of one folder lists
  at most that many more;
- ``IN_FLIGHT`` listings at once for the whole mount;
- ``QUEUED`` waiting; past that the oldest are given up (the walk has moved
  on, and the newest are where it is);
- none starts while the listing cache holds more than half the entries it
  may keep, so listings fetched ahead never push out most of what readers
  asked for.
Only a listing someone read starts listing ahead, never one fetched ahead:
that would walk the whole tree.

A listing ahead that fails is logged as any failed listing is, and nothing
of it is kept: a reader who comes to that folder asks again and hears the
error then.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass

import cachetools
import trio

from vagonfs.core.inodes import Node
from vagonfs.core.namespace import Namespace
from vagonfs.errors import FsError
from vagonfs.remote.base import Entry
from vagonfs.runtime import supervise

AHEAD = 32  # the default of --list-ahead
IN_FLIGHT = 16  # within the HTTP client's 32 connections, beside a listing's own pages
QUEUED = 1024
WALKS = 64  # folders whose subfolders' order is kept, for the window to slide


@dataclass(eq=False)
class _Walk:
    """The subfolders of one folder read, in listing order, and how far the
    window has gone."""

    folders: list[Node]
    position: dict[str, int]
    queued_to: int = 0  # the first subfolder not yet asked for


class ListAhead:
    """Protects: the walks, the queue and the count in flight; trio-thread only."""

    def __init__(self, namespace: Namespace, nursery: trio.Nursery, ahead: int = AHEAD):
        self._namespace = namespace
        self._nursery = nursery
        self._ahead = ahead
        self._walks: cachetools.LRUCache = cachetools.LRUCache(WALKS)  # folder ino -> _Walk
        self._queue: collections.deque[Node] = collections.deque()  # the next to list first
        self._in_flight = 0
        self.started = 0  # listings fetched ahead so far (what the tests count)

    def read(self, folder: Node, entries: Sequence[Entry]) -> None:
        """A reader has ``folder``'s listing: list its first subfolders, and
        slide the window of the folder it is in."""
        if self._ahead <= 0:
            return
        parent = self._walks.get(folder.parent)
        if parent is not None and folder.ino != folder.parent:
            index = parent.position.get(folder.name)
            if index is not None and parent.folders[index] is folder:
                self._queue_to(parent, index + 1 + self._ahead)
        if folder.ino in self._walks:
            return  # read again: its window is where the walk left it
        subfolders = [self._namespace.adopt(folder, e) for e in entries
                      if e.is_dir and e.key is not None]
        if subfolders:
            walk = _Walk(subfolders, {node.name: i for i, node in enumerate(subfolders)})
            self._walks[folder.ino] = walk
            self._queue_to(walk, self._ahead)
        self._start()  # what waited for room (the cache was half full) goes now if it can

    def _queue_to(self, walk: _Walk, end: int) -> None:
        end = min(end, len(walk.folders))
        if end <= walk.queued_to:
            return
        # newest first, each folder's in listing order: a depth-first walk
        # wants the subfolders of where it just went before older ones
        self._queue.extendleft(reversed(walk.folders[walk.queued_to:end]))
        walk.queued_to = end
        while len(self._queue) > QUEUED:
            self._queue.pop()
        self._start()

    def _start(self) -> None:
        listings = self._namespace.listings
        while self._queue and self._in_flight < IN_FLIGHT:
            if listings.entries > listings.max_entries // 2:
                return  # the cache is half full: what is queued waits for the next read
            node = self._queue.popleft()
            if node.unlinked or listings.get(node.ino) is not None:
                continue
            self._in_flight += 1
            self.started += 1
            supervise.spawn(self._nursery, "listing ahead", self._list, node)

    async def _list(self, node: Node) -> None:
        try:
            await self._namespace.listing(node)
        except FsError:
            pass  # logged by the listing; its reader, if one comes, asks again
        finally:
            self._in_flight -= 1
            self._start()
