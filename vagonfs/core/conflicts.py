"""Conflicts kept, never lost: where an upload goes when its file changed elsewhere.

Two mounts of one store (colleagues on two machines) may change one file. An
upload replaces a file whole, so writing over a version this mount never saw
would lose it without a word. Each pending upload knows its *base*: the
version of the file its content was made from (``Pending.replaces``: the one
the mount showed when the file was opened for writing or truncated; ``""`` for
a file new here), kept in the journal so a replay after a crash knows it too.
Our own successive uploads move the base to the version each produced, so
they are never conflicts (``UploadQueue``).

Right before the upload's first request, ``upload`` asks the store for the
file as it is now (one request: a Vagon lookup by name with ``q=``, a listing
of the folder on the tenant store, whose version is ``size@updated_at``,
shared with other uploads into the folder by ``remote.batch_listing``). An
upload under the name that never completed holds nothing anyone can read
and counts as no file (``_current``):

- the base version is there (or nothing, for a file new here): the upload
  goes under the file's name;
- another version, or a file that appeared where ours is new: our content is
  uploaded beside it under a conflict name (``conflict_names``), never over
  it; one WARNING line names both, and ``kept`` lists it for ``vagonfs status``;
- nothing where we had a base: it was deleted elsewhere while we changed it,
  and is recreated with our content (one WARNING line).

A store with an exclusive create (Vagon's ``overwrite`` off:
``Capabilities.exclusive_create``) needs no lookup for a file new here: its
upload is created with ``overwrite`` off, and a name taken meanwhile is
refused in that same request (409), so no window at all (one lookup after
a refusal tells a file from an upload never completed). Conflict copies are
always sent that way, so a copy never replaces anything either; on a store
without one, a copy's name is looked up first.

The stores offer no conditional replace, so between the lookup's answer and
the moment the store takes the new content (tenant: the upload request;
Vagon: the complete, after the create and the parts) another client's change
can still be overwritten: the window is the upload itself, as
docs/SEMANTICS.md says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vagonfs.core.conflict_names import conflict_name
from vagonfs.errors import AlreadyExists, NotFound
from vagonfs.remote.base import Entry, Store

log = logging.getLogger("vagonfs.conflicts")

MAX_COPY_NAMES = 20  # conflict names tried for one copy before the upload fails (and retries)

SendFn = Callable[[str, bool], Awaitable[Entry]]  # (name, replace) -> the entry stored


@dataclass(frozen=True)
class Conflict:
    """One conflict kept: the file's path, where our content went, and when."""

    path: str
    kept_as: str
    at: float


class Conflicts:
    """Protects: ``kept``, the conflicts kept since the mount started; trio-thread only."""

    def __init__(self, store: Store):
        self.store = store
        self.kept: list[Conflict] = []

    async def upload(self, folder: Entry, name: str, base: str, path: str,
                     send: SendFn) -> Entry:
        """Send content made from version ``base`` of ``path`` (``folder/name``)
        with ``send``, under its name or beside it (module doc)."""
        exclusive = self.store.capabilities.exclusive_create
        if base or not exclusive:
            current = await self._current(folder, name)
            if current is not None:
                if base and not current.is_dir and current.version == base:
                    return await send(name, True)
                return await self._keep_beside(folder, name, path, send)
        try:
            entry = await send(name, False)
        except AlreadyExists:  # refused by an exclusive create: something is there
            if exclusive and await self._current(folder, name) is None:
                return await send(name, True)  # an upload never completed: nothing to keep
            return await self._keep_beside(folder, name, path, send)
        if base:  # said once it is true: a folder gone too fails the upload instead
            log.warning("%s was deleted on the store while it was changed here; "
                        "recreated with this mount's content", path)
        return entry

    async def _current(self, folder: Entry, name: str) -> Entry | None:
        """The file the store holds as ``folder/name``. An upload there that
        never completed (our own attempt, cut short before a retry) holds
        nothing anyone can read: it counts as no file."""
        try:
            entry = await self.store.lookup(folder, name)
        except NotFound:
            return None
        return entry if entry.ready else None

    async def _keep_beside(self, folder: Entry, name: str, path: str, send: SendFn) -> Entry:
        """Upload under the first free conflict name; never over anything."""
        when = time.time()
        for attempt in range(1, MAX_COPY_NAMES + 1):
            copy = conflict_name(name, when, attempt, self.store.capabilities.max_name_length)
            if not self.store.capabilities.exclusive_create \
                    and await self._current(folder, copy) is not None:
                continue
            try:
                entry = await send(copy, False)
            except AlreadyExists:
                continue
            kept_as = path[:len(path) - len(name)] + copy
            log.warning("%s changed on the store since this mount's copy was made from it; "
                        "this mount's content is kept beside it as %s", path, kept_as)
            self.kept.append(Conflict(path, kept_as, when))
            return entry
        raise AlreadyExists(f"{MAX_COPY_NAMES} conflict names for {path} are all taken")
