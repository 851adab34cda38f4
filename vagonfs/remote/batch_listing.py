"""One listing of a folder answers every upload into it that finished meanwhile,
and the conflict checks of the uploads about to start.

A store whose upload reply does not say the new file's version (the tenant
API answers only path and size; its versions are ``size@updated_at``) must list
the folder to learn it. The version matters beyond display: local times and
modes are kept per (key, version), so a second ``rsync -a`` finds nothing to
do only if the version recorded at upload is the one every later listing
shows. A listing per upload made copying 1,000 files into a 10,000-file
folder fetch ten million entries.

So uploads into one folder share listings: the first upload whose body has
been sent waits while other uploads into the same folder are still sending
(at most ``GATHER_SECONDS``), then lists once, and every upload that finished
before that listing started takes its entry from it. A lone upload (an
``fsync``) lists at once, as before. Uploads that finish while a listing is
under way wait for the next one.

A lookup (the conflict check right before an upload) is a listing too, as
the API cannot look up one name, and shares them the same way: it takes the
batch about to list, else the listing under way, else starts a batch; what
it sees is at most one listing older than its upload's request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from vagonfs.errors import FsError, NotFound, RemoteIOError
from vagonfs.remote.base import Entry, SharedListing

GATHER_SECONDS = 0.5  # what a batch may add to an upload's confirmation or its check


class ListingBatches:
    """Protects: uploads in flight and the open batch, per folder key; trio-thread only."""

    def __init__(self, list_folder: Callable[[Entry], AsyncIterator[list[Entry]]]):
        self._list = list_folder
        self._sending: Counter = Counter()  # folder key -> upload bodies being sent
        self._sent = trio.Event()  # set (and replaced) whenever one finishes sending
        self._open: dict[object, SharedListing] = {}  # folder key -> batch not yet listing
        self._listing_now: dict[object, SharedListing] = {}  # folder key -> listing under way

    @asynccontextmanager
    async def sending(self, folder: Entry):
        """Around an upload's request: a batch about to list waits for it."""
        self._sending[folder.key] += 1
        try:
            yield
        finally:
            self._sending[folder.key] -= 1
            if not self._sending[folder.key]:
                del self._sending[folder.key]
            self._sent.set()
            self._sent = trio.Event()

    async def entry(self, folder: Entry, name: str) -> Entry:
        """``folder/name`` as a listing made after its upload shows it."""
        entry = (await self._listing(folder, under_way=False)).get(name)
        if entry is None:
            raise NotFound(f"{name} was gone from its folder right after its upload")
        return entry

    async def lookup(self, folder: Entry, name: str) -> Entry:
        """``folder/name`` as the listing under way shows it, or the next one:
        the conflict check before each upload (``vagonfs.core.conflicts``)
        asks this, so uploads copied into one folder check on the listings
        that tell the versions of those before them, not on one more each."""
        entry = (await self._listing(folder, under_way=True)).get(name)
        if entry is None:
            raise NotFound(f"{name} not found")
        return entry

    async def _listing(self, folder: Entry, *, under_way: bool) -> dict[str, Entry]:
        """The listing of the batch not yet listing, else (``under_way``: a
        lookup) the one under way, else a new batch's, which waits while other
        uploads into the folder are still sending, at most ``GATHER_SECONDS``."""
        batch = self._open.get(folder.key) or (self._listing_now.get(folder.key)
                                                if under_way else None)
        if batch is not None:
            await batch.done.wait()
        else:
            batch = self._open[folder.key] = SharedListing()
            try:
                with trio.move_on_after(GATHER_SECONDS):
                    while self._sending[folder.key]:
                        await self._sent.wait()
                self._close(folder, batch)  # uploads finishing from now on wait for the next
                self._listing_now[folder.key] = batch
                batch.listing = {}
                async for page in self._list(folder):
                    for listed in page:  # a name listed twice: the first, as the folder shows
                        batch.listing.setdefault(listed.name, listed)
            except FsError as exc:
                batch.error = exc
            finally:
                self._close(folder, batch)
                if self._listing_now.get(folder.key) is batch:
                    del self._listing_now[folder.key]
                batch.done.set()
        if batch.error is not None:
            raise batch.error
        if batch.listing is None:
            raise RemoteIOError(f"the listing of {folder.name or '/'} was interrupted")
        return batch.listing

    def _close(self, folder: Entry, batch: SharedListing) -> None:
        if self._open.get(folder.key) is batch:
            del self._open[folder.key]
