"""The upload queue (write-back): closed files wait ``--write-back-delay``, then upload.

(Over 350 lines on purpose: the states below and every transition between them
are one machine, read best in one place; the journal is apart, in ``journal``.)

States of a written file, and what a crash leaves at each::

    open ──close──▶ queued ──delay──▶ uploading ──confirmed──▶ (gone)
      │ ▲             ▲                 │  │
      │ │             └─── transient ───┤  └─ a writer still has it open ──▶ synced
      │ │                               ├── refused for good ──▶ failed         │
      │ │                               └── its spool unreadable ──▶ lost       │
      │ └──────────── a write (the same spool; a copy while uploading) ─────────┘
      ├─ fsync ──▶ uploading, at once
      └─ data in a spool file only (lost on a crash only if never flushed)

- A file stays writable for as long as it is open: ``fsync`` uploads what is
  written so far and the file goes on ``synced`` (its spool kept as the base
  of the next writes, nothing to upload). A later write makes it ``open``
  again in the same spool, or, while an upload still reads that spool, in a
  copy (copy on write); that new content uploads only after the older upload
  of the same file has settled, so the store never ends up with the older
  content. The last close of a ``synced`` file drops its spool.
- ``flush`` (every ``close(2)``) writes the file's journal record (which
  path, which spool, which version its content was made from: the base that
  ``vagonfs.core.conflicts`` checks) before returning, so from
  then on a ``kill -9``, a reboot or a long network outage loses nothing: the
  next mount with the same cache dir reads the journal and finishes the
  upload.
- The journal (``vagonfs.cache.journal``) is one append-only log; a record
  is closed only once the store confirmed the upload.
- A file refused for good (quota, size limit, permission) stays ``failed``
  with its spool kept under the cache dir; ``vagonfs status`` lists it and the
  next ``fsync``/``close`` on it returns the error.
- A file whose spool is gone or unreadable (``LocalCopyLost``) can never be
  sent: it goes ``lost`` at its first attempt, with one ERROR line, its journal
  record closed (no later mount replays it) and no retry; ``vagonfs status``
  lists it and ``fsync``/``close`` return EIO.
- ``upload_all`` (``vagonfs sync``, unmount) starts every upload at once and
  waits on each one's ``settled`` event, never polling: a retry replaces the
  event, so the wait goes on to the retry's outcome.

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
import enum
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import trio

from vagonfs.cache.journal import Journal
from vagonfs.cache.spool import Spool, SpoolFiles
from vagonfs.errors import (FileTooLarge, FsError, InvalidName, LocalCopyLost, NoSpace,
                            PermissionDenied, ReadOnly)
from vagonfs.runtime import supervise

log = logging.getLogger("vagonfs.upload")

PERMANENT = (NoSpace, FileTooLarge, PermissionDenied, InvalidName, ReadOnly)
MAX_PARALLEL_UPLOADS = 32  # files sending at once: a small one waits out three round trips
HOLD_MAX = 30.0  # seconds an upload waits past its delay for the mount's writers to pause


class State(enum.Enum):
    OPEN = "open"
    QUEUED = "queued"
    UPLOADING = "uploading"
    FAILED = "failed"
    LOST = "lost"  # its spool is gone or unreadable: never uploaded, not retried
    SYNCED = "synced"  # on the store; the spool kept while a writer has the file open


K = TypeVar("K", bound=Hashable)  # the core's key for a file: compared by identity or value


@dataclass(eq=False)
class Pending(Generic[K]):
    key: K
    spool: Spool
    state: State = State.OPEN
    due: float = math.inf
    attempts: int = 0
    error: FsError | None = None
    progress: int = 0
    replaces: str = ""  # the version this content was made from, its base ("" new here)
    settled: trio.Event = field(default_factory=trio.Event)
    writing: bool = True  # a writer still has the file open (until ``closed``)
    after: Pending[K] | None = None  # an older upload of the file, to land first

    @property
    def uploaded(self) -> bool:
        """Settled without an error: on the store (or deleted meanwhile)."""
        return self.settled.is_set() and self.error is None


# uploads a pending content; answers the version it left on the store (None: nothing sent)
UploadFn = Callable[[Pending[K], Callable[[int], None]], Awaitable["str | None"]]


class UploadQueue(Generic[K]):
    """Protects: the pending map (key -> Pending); trio-thread only."""

    def __init__(self, root: Path, delay: float, upload: UploadFn[K],
                 path_of: Callable[[K], str], changed: Callable[[K, Pending[K] | None], None]):
        self.spools = SpoolFiles(root / "spool")
        self._journal = Journal(root / "journal")
        self._delay = delay
        self._upload = upload
        self._path_of = path_of
        self._changed = changed  # the key's pending content, or None: it holds nothing
        self._pending: dict[K, Pending[K]] = {}
        # (due, tie-breaker, pending) of every queueing, earliest first; an entry
        # whose pending has moved on since is dropped when it comes to the top
        self._queue: list[tuple[float, int, Pending[K]]] = []
        self._queued_count = itertools.count()
        self._wakeup = trio.Event()
        self._slots = trio.Semaphore(MAX_PARALLEL_UPLOADS)
        self._nursery: trio.Nursery | None = None  # the uploads', once ``run`` started
        self._last_close = -math.inf  # when a writer last closed a file on this mount

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
            self._last_close = trio.current_time()
            self._queue_at(pending, self._last_close + self._delay)

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
        heapq.heappush(self._queue, (due, next(self._queued_count), pending))
        self._wakeup.set()

    def _start_due(self) -> float:
        """Start the uploads whose time has come; when the next one starts.

        Earliest first, from a heap: ``_starts_at`` never puts a later ``due``
        before an earlier one, so the first that must wait ends the pass.
        Scanning every pending file instead, at every close, was half of the
        trio thread's time while ``rsync`` copied 1,000 small files."""
        now = trio.current_time()
        while self._queue:
            due, _, pending = self._queue[0]
            if (pending.state is not State.QUEUED or pending.due != due
                    or self._pending.get(pending.key) is not pending):
                heapq.heappop(self._queue)  # started, rewritten or deleted since
                continue
            starts = self._starts_at(pending)
            if starts > now:
                return starts
            heapq.heappop(self._queue)
            self._start(pending)
        return math.inf

    def _starts_at(self, pending: Pending[K]) -> float:
        """When a queued upload starts: its delay after its close, held while
        other files are still being closed on the mount (a copy under way),
        at most ``HOLD_MAX`` longer. The copy's requests and the uploads share
        the one trio thread, and an upload's HTTP calls cost more of it than
        the small file's FUSE requests: with ``rsync -a`` of many small files
        the copy returns about twice as soon, and the last upload is
        confirmed later, as the uploads no longer overlap the copy.
        ``drain`` and ``fsync`` start uploads at once."""
        if pending.due <= 0:
            return pending.due
        return max(pending.due, min(self._last_close + self._delay, pending.due + HOLD_MAX))

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
        # a slot bounds the uploads sending bytes; one that has sent them all
        # and waits for the store's confirmation (Vagon's complete, the tenant
        # listing) gives its slot to the next file
        await self._slots.acquire()
        holding = True

        def release() -> None:
            nonlocal holding
            if holding:
                holding = False
                self._slots.release()

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
        finally:
            release()
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
        delay = min(300.0, 2.0 * 2 ** pending.attempts)
        if not told:
            log.warning("upload of %s failed (%s); retrying in %.0f s", path, error, delay)
        self._queue_at(pending, trio.current_time() + delay)
        # an fsync waiting on this upload gets the error now rather than waiting
        pending.settled.set()
        pending.settled = trio.Event()
