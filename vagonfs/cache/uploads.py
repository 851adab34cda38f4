"""The upload queue (write-back): closed files wait ``--write-back-delay``, then upload.

Every transition between the states a written file goes through is here, in
one place; the states themselves, and what a crash leaves at each, are drawn
in ``vagonfs.cache.upload_states``, and when an upload starts (or is tried
again) is ``vagonfs.cache.upload_schedule``'s policy. ``upload_all``
(``vagonfs sync``, unmount) starts every upload at once and waits on each
one's ``settled`` event, never polling: a retry replaces the event, so the
wait goes on to the retry's outcome.

The queue knows nothing of stores, paths or inodes: it keys each file on an
opaque, hashable key the filesystem core chose (its node), and the core hands it
an ``upload`` coroutine, a ``path_of`` function (for logs and the journal) and a
``changed`` callback, told the file's pending content when it has some and
``None`` once it holds nothing of it (uploaded or dropped): the core sets and
clears its own node state there, as rclone's vfs write-back reports through a
callback on its opaque handle. Nothing here imports the core.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Generic

import trio

from vagonfs.cache.journal import Journal
from vagonfs.cache.spool import Spool, SpoolFiles
from vagonfs.cache.upload_schedule import PERMANENT, SendSlots, UploadSchedule, retry_delay
from vagonfs.cache.upload_states import K, Pending, State, UploadFn
from vagonfs.errors import FsError, LocalCopyLost
from vagonfs.runtime import supervise

log = logging.getLogger("vagonfs.upload")

class UploadQueue(Generic[K]):
    """Protects: the pending map (key -> Pending); trio-thread only."""

    def __init__(self, root: Path, delay: float, upload: UploadFn[K],
                 path_of: Callable[[K], str], changed: Callable[[K, Pending[K] | None], None]):
        self.spools = SpoolFiles(root / "spool")
        self._journal = Journal(root / "journal")
        self._schedule: UploadSchedule[Pending[K]] = UploadSchedule(delay)
        self._upload = upload
        self._path_of = path_of
        self._changed = changed  # the key's pending content, or None: it holds nothing
        self._pending: dict[K, Pending[K]] = {}
        self._wakeup = trio.Event()
        self._slots = SendSlots()
        self._nursery: trio.Nursery | None = None  # the uploads', once ``run`` started

    # -- what the filesystem tells the queue --------------------------------

    def get(self, key: K) -> Pending[K] | None:
        return self._pending.get(key)

    def opened(self, key: K, spool: Spool, replaces: str = "", *,
               after: Pending[K] | None = None, synced: bool = False) -> Pending[K]:
        """``key`` now has local content in ``spool`` that is newer than the
        store's; or, ``synced``, the store's own content, opened for writing
        (it uploads only once written to)."""
        old = self._pending.get(key)
        if old is not None and old.spool is not spool and old.state is not State.UPLOADING:
            self._drop_record(old)
            old.spool.discard()
        pending = Pending(key, spool, replaces=replaces, after=after)
        if synced:
            pending.state = State.SYNCED
        self._pending[key] = pending
        self._changed(key, pending)
        return pending

    def writer_opened(self, key: K) -> None:
        """One more writer opened the file: keep its spool while it is open."""
        self._pending[key].writing = True

    async def reopen(self, key: K, landed_version: str) -> Pending[K]:
        """More writes to a file that is queued, uploading, synced, failed or
        lost: its content is ``open`` again. While an upload still reads the
        spool, the writes go to a copy, uploaded after that upload settles.
        A lost file's content is gone for good: the writes start an empty
        spool. ``landed_version`` is the store's version of the file now,
        which a synced file's next content replaces."""
        pending = self._pending[key]
        if pending.state is State.OPEN:
            return pending
        if pending.state is State.LOST:
            return self.opened(key, self.spools.new(), pending.replaces)
        if pending.state is State.UPLOADING:
            path = self._path_of(key)
            try:
                spool = await pending.spool.copy()
            except Exception as exc:  # noqa: BLE001 - a full disk is the writer's ENOSPC
                raise supervise.failure(f"copy of {path} to write while it uploads",
                                        exc, logger=log) from None
            if self._pending.get(key) is not pending:  # changed while copying
                spool.discard()
                return await self.reopen(key, landed_version)
            return self.opened(key, spool, pending.replaces, after=pending)
        replaces = landed_version if pending.state is State.SYNCED else pending.replaces
        return self.opened(key, pending.spool, replaces, after=pending.after)

    def flushed(self, key: K) -> None:
        """A ``close(2)``: journal the file, so a killed daemon loses nothing.

        No ``fsync`` here, as on a local disk: the spool and the record are in
        the kernel's hands, which survives the daemon's death and a clean
        reboot; the one call that promises more, ``fsync``, waits for the
        store itself (``upload_now``).
        """
        pending = self._pending.get(key)
        if pending is None or pending.state is State.SYNCED:
            return
        if pending.state in (State.FAILED, State.LOST) and pending.error is not None:
            raise pending.error
        self._write_record(pending)

    def closed(self, key: K) -> None:
        """The last writer closed: upload after the write-back delay."""
        pending = self._pending.get(key)
        if pending is None:
            return
        pending.writing = False
        if pending.state is State.SYNCED:
            self._done(pending)
        elif pending.state is State.OPEN:
            self._queue_at(pending, self._schedule.closed())

    async def upload_now(self, key: K) -> None:
        """``fsync``: upload at once and return when the store confirmed it."""
        pending = self._pending.get(key)
        if pending is None or pending.state is State.SYNCED:
            return
        self.flushed(key)
        if pending.state in (State.OPEN, State.QUEUED):
            pending.error = None
            self._start(pending)
        await pending.settled.wait()
        if pending.error is not None:
            raise pending.error

    async def landed(self, key: K) -> None:
        """Until an upload of ``key`` under way has settled: a change that acts
        on the store's file (a delete, a rename, a create over it) acts on
        what landed, and content that replaces it is made from that version."""
        pending = self._pending.get(key)
        if pending is not None and pending.state is State.UPLOADING:
            await pending.settled.wait()

    def moved(self, key: K) -> None:
        """The file was renamed before its upload: record the new path."""
        pending = self._pending.get(key)
        if pending is not None and pending.state not in (State.OPEN, State.SYNCED):
            self._write_record(pending)

    def discard(self, key: K) -> None:
        """The file was deleted: drop its pending content."""
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        self._drop_record(pending)
        if pending.state is not State.UPLOADING:
            pending.spool.discard()
        pending.settled.set()
        self._changed(key, None)

    def all(self) -> list[Pending[K]]:
        """What is not on the store yet."""
        return [p for p in self._pending.values() if p.state is not State.SYNCED]

    async def upload_all(self, timeout: float | None = None) -> list[Pending[K]]:
        """Upload everything pending now, without the write-back delay
        (``vagonfs sync``, unmount), and wait until the store confirmed or
        refused each; what is not uploaded when they all settled or
        ``timeout`` passed. Files still open for writing upload what is
        written so far, journaled first: a wait cut short (a signal's
        deadline) leaves them recorded for the next mount."""
        for pending in self._pending.values():
            if pending.state is State.OPEN:
                with contextlib.suppress(FsError):  # logged once; uploaded all the same
                    self._write_record(pending)
            if pending.state in (State.OPEN, State.QUEUED):
                self._queue_at(pending, 0.0)
        self._wakeup.set()
        waited = [p for p in self._pending.values() if p.state is not State.SYNCED]
        with trio.move_on_after(timeout if timeout is not None else math.inf):
            for pending in waited:
                while not pending.settled.is_set():  # a retry brings a new event
                    await pending.settled.wait()
        return [p for p in waited if not p.uploaded]

    async def drain(self, timeout: float | None = None) -> bool:
        """Upload everything now (unmount); False when the timeout came first.
        What the store refused for good, or whose spool is lost, does not
        hold it: no wait would change them."""
        left = await self.upload_all(timeout)
        return all(p.settled.is_set() for p in left)

    # -- the journal ---------------------------------------------------------

    def _write_record(self, pending: Pending[K]) -> None:
        """Raises the errno for the ``close``/``fsync`` that waits (ENOSPC when
        the cache disk is full), logged once; the spool itself is kept."""
        path = self._path_of(pending.key)
        try:
            self._journal.record(path, pending.spool, pending.replaces)
        except OSError as exc:
            raise supervise.failure(f"journal record of {path}", exc, logger=log) from None

    def _drop_record(self, pending: Pending[K]) -> None:
        try:
            self._journal.close(pending.spool)
        except OSError as exc:  # the next mount uploads the file again: harmless
            supervise.failure(f"closing the journal record of {self._path_of(pending.key)}",
                              exc, logger=log)

    def recovered(self) -> list[tuple[str, Spool, str]]:
        """(path, spool, replaced version) for every upload a previous run left;
        the spool folder's other files are kept ready for new spools."""
        found = self._journal.recovered(self.spools)
        self.spools.adopt({spool.id for _, spool, _ in found})
        return found

    # -- the scheduler -------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            supervise.spawn(nursery, "making spool files", self.spools.keep_stocked)
            supervise.spawn(nursery, "spool writes behind", self.spools.behind.run)
            task_status.started()
            while True:
                self._wakeup = trio.Event()
                with trio.move_on_at(self._start_due()):
                    await self._wakeup.wait()

    def _queue_at(self, pending: Pending[K], due: float) -> None:
        pending.state, pending.due = State.QUEUED, due
        self._schedule.push(pending, due)
        self._wakeup.set()

    def _start_due(self) -> float:
        """Start the uploads whose time has come; when the next one starts."""
        now = trio.current_time()
        while (pending := self._schedule.pop_due(now, self._queued)) is not None:
            self._start(pending)
        return self._schedule.next_start(self._queued)

    def _queued(self, pending: Pending[K], due: float) -> bool:
        """Still queued for ``due``: not started, rewritten or deleted since."""
        return (pending.state is State.QUEUED and pending.due == due
                and self._pending.get(pending.key) is pending)

    def _start(self, pending: Pending[K]) -> None:
        if self._nursery is None:
            raise RuntimeError("an upload started before the write-back queue runs")
        pending.state, pending.due = State.UPLOADING, math.inf
        path = self._path_of(pending.key)
        supervise.spawn(self._nursery, f"upload of {path}", self._upload_one, pending, path)

    async def _upload_one(self, pending: Pending[K], path: str) -> None:
        key = pending.key
        if pending.after is not None:  # an older content of this file lands first
            await pending.after.settled.wait()
            pending.after = None
        async with self._slots.held() as release:

            def progress(done: int) -> None:
                pending.progress = done
                if done >= pending.spool.size:
                    release()

            pending.attempts += 1
            try:
                version = await self._upload(pending, progress)
            except Exception as exc:  # noqa: BLE001 - wakes the fsync with its errno
                self._failed(pending, path, exc)
                return
        log.info("uploaded %s (%d bytes)", path, pending.spool.size)
        pending.error = None
        self._drop_record(pending)
        if version is not None:
            self._rebase_newer(pending, version)
        if self._pending.get(key) is not pending:  # rewritten or deleted meanwhile
            pending.spool.discard()
        elif pending.writing:
            pending.state = State.SYNCED
        else:
            self._done(pending)
        pending.settled.set()

    def _rebase_newer(self, landed: Pending[K], version: str) -> None:
        """Content written while ``landed`` uploaded (copy on write) was made
        from it: its base is the version that upload left on the store, so our
        own successive uploads of a file are never conflicts, after a replay of
        the journal too."""
        newer = self._pending.get(landed.key)
        if newer is None or newer.after is not landed:
            return
        newer.replaces = version
        if self._journal.holds(newer.spool):
            with contextlib.suppress(FsError):  # logged once; a replay keeps a copy beside
                self._write_record(newer)

    def _done(self, pending: Pending[K]) -> None:
        """The store has this content and no writer has the file open."""
        del self._pending[pending.key]
        pending.spool.discard()
        self._changed(pending.key, None)

    def _failed(self, pending: Pending[K], path: str, exc: Exception) -> None:
        if isinstance(exc, FsError):
            error, told = exc, exc.logged
        else:  # a bug or the local disk: one line with the traceback at debug
            error, told = supervise.failure(f"upload of {path}", exc, logger=log), True
        pending.error = error
        error.logged = True  # told below; an fsync that returns it need not repeat it
        if self._pending.get(pending.key) is not pending:  # deleted or rewritten meanwhile
            pending.spool.discard()
            pending.settled.set()
            return
        if isinstance(error, LocalCopyLost):
            pending.state = State.LOST
            log.error("upload of %s failed for good: %s; not retried, and the journal "
                      "no longer names it", path, error)
            self._drop_record(pending)
            pending.settled.set()
            return
        if isinstance(error, PERMANENT):
            pending.state = State.FAILED
            if not told:
                log.error("upload of %s refused by the store: %s; the data is kept in %s",
                          path, error, pending.spool.path)
            pending.settled.set()
            return
        delay = retry_delay(pending.attempts)
        if not told:
            log.warning("upload of %s failed (%s); retrying in %.0f s", path, error, delay)
        self._queue_at(pending, trio.current_time() + delay)
        # an fsync waiting on this upload gets the error now rather than waiting
        pending.settled.set()
        pending.settled = trio.Event()
