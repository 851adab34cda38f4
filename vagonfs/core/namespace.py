"""Names in folders: which node a name is, and what a folder holds.

The filesystem asks here for a name in a folder and for a folder's whole
content. The answer comes from the cheapest place that knows it: the inode
table (a file that exists only here, or here in a newer version), a kept
listing (``vagonfs.core.listings``), a name looked up before in a folder not
listed (found, or found absent), and only then the store. The filesystem
tells each change it makes (``set_entry``, ``created``, ``drop_entry``,
``forget``), so what is kept stays what the store holds.

A listing is never a part of one: a page that fails fails the listing, and
what failed is not cached. ``ls`` or ``rsync --delete`` shown half a folder
as if it were all of it would act on a lie.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Mapping
from contextlib import aclosing

import cachetools

from vagonfs.cache.reader import Reader
from vagonfs.core.inodes import ROOT_INODE, InodeTable, Node
from vagonfs.core.listings import Listings
from vagonfs.errors import (FsError, ListingChanged, NotADirectory, NotEmpty, NotFound,
                            PermissionDenied, RemoteIOError)
from vagonfs.remote.base import Entry, SharedListing, Store
from vagonfs.remote.names import linux_problem
from vagonfs.runtime import supervise

log = logging.getLogger("vagonfs.fs")

LISTING_TRIES = 3  # reads of a listing that keeps changing under pagination
LOOKUP_FOLDERS_KEPT = 1024  # folders not listed whose looked-up entries are kept
MAX_SIZE = 2 ** 63 - 1  # off_t


def held_here(node: Node) -> bool:
    """A file that exists only here (not uploaded yet), or here in a newer
    version: it is what its name shows, whatever the store lists, and what
    keeps its folder from being empty."""
    return node.entry is None or node.dirty is not None


class Namespace:
    """Protects: the inode table, listings, looked-up names and listing
    fetches; trio-thread only."""

    def __init__(self, store: Store, root: Entry, ttl: float, reader: Reader):
        self.store = store
        self._ttl = ttl
        self.listings = Listings(ttl)
        self.inodes = InodeTable(root, dropped=self.listings.drop)
        self._reader = reader
        # folder ino -> (when it goes stale, {name: entry}) found by lookup in
        # folders not listed, kept like a listing: a path walked again would
        # cost a request per name. A name the store said is absent is kept as
        # None: a stat that finds nothing is followed by the kernel's own
        # lookup before a mkdir or create (it keeps no negative entry), which
        # would ask again (rsync into a new folder waited two round trips
        # before its mkdir). The store is asked again once they go stale, as
        # a listing is read again; this mount's own changes replace them.
        self._looked_up: cachetools.TTLCache[int, tuple[float, dict[str, Entry | None]]] = \
            cachetools.TTLCache(maxsize=LOOKUP_FOLDERS_KEPT, ttl=ttl, timer=time.monotonic)
        self._fetches: dict[int, SharedListing] = {}
        # told (folder ino, name) when a name this mount showed leads to another
        # file now (its file kept beside as a conflict copy): the FUSE adapter
        # drops the kernel's entry, which it would trust ``entry_timeout`` longer
        self.name_moved: Callable[[int, str], None] = lambda folder, name: None

    def node(self, ino: int) -> Node:
        node = self.inodes.get(ino)
        if node is None:
            raise NotFound(f"inode {ino} is no longer known")
        return node

    async def lookup(self, parent: Node, name: str) -> Node:
        """The node called ``name`` in ``parent``; NotFound when there is none."""
        if not parent.is_dir:
            raise NotADirectory(f"{self.inodes.path(parent)} is not a folder")
        known = self.inodes.child(parent.ino, name)
        if known is not None and held_here(known):
            return known
        listing = self.listings.get(parent.ino)
        if listing is None and self.store.capabilities.lookup_lists:
            listing = await self.listing(parent)  # the store would list it anyway: keep it
        if listing is not None:
            entry = listing.get(name)
            if entry is None:
                raise NotFound(f"{name} not found")
            return self.adopt(parent, entry)
        looked_up = self._looked_up_names(parent.ino)
        if name in looked_up:
            entry = looked_up[name]
        else:
            entry = await self._ask(parent, name)
            self._keep_looked_up(parent.ino, name, entry)
        if entry is None:
            raise NotFound(f"{name} not found")
        return self.adopt(parent, entry)

    async def _ask(self, parent: Node, name: str) -> Entry | None:
        """The store's entry for ``name`` in ``parent``, None when it has none
        to show."""
        folder = await self.entry(parent)
        try:
            entry = await self.store.lookup(folder, name)
        except NotFound:
            return None
        return entry if visible(entry) else None

    def _keep_looked_up(self, folder_ino: int, name: str, entry: Entry | None) -> None:
        """Keep what folder ``folder_ino`` holds as ``name`` now (None: nothing);
        the names of a folder go stale together, ``ttl`` after the first."""
        self._looked_up.setdefault(
            folder_ino, (time.monotonic() + self._ttl, {}))[1][name] = entry

    def _looked_up_names(self, folder_ino: int) -> dict[str, Entry | None]:
        kept = self._looked_up.get(folder_ino)
        return {} if kept is None else kept[1]

    def fresh_for(self, node: Node) -> float | None:
        """Seconds this namespace goes on answering for ``node`` from what it
        keeps (its folder's listing, or the names looked up in it) before it
        asks the store again; None for what only this mount knows or changes
        (the root, a file not uploaded yet or newer here), 0 when nothing is
        kept."""
        if node.ino == ROOT_INODE or node.entry is None or node.dirty is not None:
            return None
        fresh = self.listings.fresh_for(node.parent)
        if fresh is not None:
            return fresh
        looked_up = self._looked_up.get(node.parent)
        if looked_up is not None and looked_up[1].get(node.name) is not None:
            return max(0.0, looked_up[0] - time.monotonic())
        return 0.0

    async def find(self, parent: Node, name: str) -> Node | None:
        """``lookup`` for a caller that asks whether a name is taken."""
        try:
            return await self.lookup(parent, name)
        except NotFound:
            return None

    def adopt(self, parent: Node, entry: Entry) -> Node:
        """The node for a fresh entry, dropping cached data of a changed file."""
        node = self.inodes.child(parent.ino, entry.name)
        if (node is not None and node.entry is not None and node.dirty is None
                and not node.is_dir and node.entry.version != entry.version):
            self._reader.forget(node.entry)
        return self.inodes.upsert(parent.ino, entry)

    async def entry(self, node: Node) -> Entry:
        """The node's entry, looked up again when a move made its key stale."""
        if node.entry is None:
            raise NotFound(f"{self.inodes.path(node)} is not on the store yet")
        if node.stale and node.ino != ROOT_INODE:
            parent = self.node(node.parent)
            fresh = await self.store.lookup(await self.entry(parent), node.name)
            node.entry, node.stale = fresh, False
        return node.entry

    async def entries(self, folder: Node) -> list[Entry]:
        """What ``readdir`` shows: the listing, then the files ``held_here``
        that it lacks (deleted elsewhere while changed here: their upload
        makes them again)."""
        listing = await self.listing(folder)
        local = [Entry(child.name, False, key=None) for child in self.inodes.children(folder.ino)
                 if held_here(child) and child.name not in listing]
        return [*listing.values(), *local]

    async def listing(self, folder: Node) -> Mapping[str, Entry]:
        """The folder's whole listing, cached or fetched; concurrent askers
        share one fetch."""
        cached = self.listings.get(folder.ino)
        if cached is not None:
            return cached
        fetch = self._fetches.get(folder.ino)
        if fetch is not None:
            await fetch.done.wait()
        else:
            fetch = self._fetches[folder.ino] = SharedListing()
            where = f"listing {self.inodes.path(folder) or '/'}"
            try:
                fetch.listing = await self._fetch_listing(folder, where)
                self.listings.put(folder.ino, fetch.listing)
                # newer than any name looked up there: none may answer once
                # the listing is dropped (an absence would hide a file listed)
                self._looked_up.pop(folder.ino, None)
            except (NotFound, PermissionDenied) as exc:
                fetch.error = exc
            except Exception as exc:  # any failure of any page is the listing's
                fetch.error = supervise.failure(where, exc, logger=log)
                if fetch.error.errno not in (errno.ENOSPC, errno.EDQUOT):
                    fetch.error = _as_listing_error(fetch.error)
            finally:
                del self._fetches[folder.ino]
                fetch.done.set()
        if fetch.error is not None:
            raise fetch.error
        if fetch.listing is None:
            raise RemoteIOError(f"listing {self.inodes.path(folder) or '/'} was interrupted")
        return fetch.listing

    async def _fetch_listing(self, folder: Node, where: str) -> dict[str, Entry]:
        """Every page, read again while the store says the folder changed
        between pages (bounded: a folder that never holds still is an error)."""
        entry = await self.entry(folder)
        for attempt in range(1, LISTING_TRIES + 1):
            listing: dict[str, Entry] = {}
            try:
                async with aclosing(self.store.list(entry)) as pages:
                    async for page in pages:
                        for item in page:
                            if not visible(item):
                                continue
                            if item.name in listing:
                                log.warning("%s: the store listed %r twice; showing the first",
                                            where, item.name)
                                continue
                            listing[item.name] = item
                return listing
            except ListingChanged as exc:
                log.info("%s changed while it was read (%s); reading it again (%d of %d)",
                         where, exc, attempt, LISTING_TRIES)
        raise RemoteIOError(f"{where}: the folder changed during each of {LISTING_TRIES} "
                            "reads; not showing a listing stitched from different moments")

    async def check_empty(self, folder: Node) -> None:
        """Stores delete folders with their content: check first, as rmdir must."""
        if any(not c.unlinked and held_here(c) for c in self.inodes.children(folder.ino)):
            raise NotEmpty(f"{folder.name} is not empty")
        async for page in self.store.list(await self.entry(folder)):
            if any(visible(e) for e in page):
                raise NotEmpty(f"{folder.name} is not empty")

    def forget(self, ino: int) -> None:
        """Folder ``ino``'s content is no longer known (moved or removed)."""
        self.listings.drop(ino)
        self._looked_up.pop(ino, None)

    def set_entry(self, parent: Node, entry: Entry) -> None:
        """``entry`` is what the store holds now, as this mount's own change
        (mkdir, an upload, a rename) made it: shown in the folder's listing, or,
        with none kept, kept as a name looked up now. Else the kernel, told to
        keep the name only while its source is kept, would look it up again at
        each use, and each lookup would ask the store."""
        self.listings.set_entry(parent.ino, entry)
        if self.listings.fresh_for(parent.ino) is None:
            self._keep_looked_up(parent.ino, entry.name, entry)
        else:
            self._looked_up_names(parent.ino).pop(entry.name, None)

    def created(self, parent_ino: int, name: str) -> None:
        """This mount made ``name`` in folder ``parent_ino`` (not on the store
        yet): a lookup no longer finds it absent."""
        looked_up = self._looked_up_names(parent_ino)
        if name in looked_up and looked_up[name] is None:
            del looked_up[name]

    def drop_entry(self, parent_ino: int, name: str) -> None:
        self.listings.drop_entry(parent_ino, name)
        self._looked_up_names(parent_ino).pop(name, None)


def visible(entry: Entry) -> bool:
    """Whether a listed entry can be shown: a complete upload with a name Linux
    can hold, with a size it can state. Bad ones from a server are skipped with
    a log line: one bad entry must not fail the whole listing (a name with no
    byte encoding or a size past off_t fails the whole readdir reply; a name
    over NAME_MAX bytes cannot be looked up)."""
    if not entry.ready:
        return False
    problem = linux_problem(entry.name)
    if problem is None and not 0 <= entry.size <= MAX_SIZE:
        problem = f"its size {entry.size} is not a file size"
    if problem:
        shown = entry.name[:80] + "..." if len(entry.name) > 80 else entry.name
        log.warning("skipping an entry the store named %r: %s", shown, problem)
        return False
    return True


def _as_listing_error(error: FsError) -> FsError:
    """A failed listing is EIO to ``ls`` whatever the page said (a 400 is no
    EINVAL of the caller's), keeping the store's own words."""
    if error.errno == errno.EIO:
        return error
    wrapped = RemoteIOError(str(error))
    wrapped.logged = error.logged
    return wrapped
