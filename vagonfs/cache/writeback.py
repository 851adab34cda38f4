"""The write-back queue: closed files wait ``--write-back-delay``, then upload.

States of a written file, and what a crash leaves at each::

    open ──flush/close──▶ queued ──delay──▶ uploading ──confirmed──▶ (gone)
      │                     ▲                  │
      │                     └──── transient ───┤ (retried with backoff)
      │                                        └── refused for good ──▶ failed
      └─ data in a spool file only (lost on a crash only if never flushed)

- ``flush`` (every ``close(2)``) fsyncs the spool and writes its journal
  record (which path, which spool, which version it replaces) before
  returning, so from then on a ``kill -9``, a reboot or a long network outage
  loses nothing: the next mount with the same cache dir reads the journal and
  finishes the upload.
- A record is removed only after the store confirmed the upload.
- A file refused for good (quota, size limit, permission) stays ``failed``
  with its spool kept under the cache dir; ``vagonfs status`` lists it and the
  next ``fsync``/``close`` on it returns the error.

The queue knows nothing of stores or paths: the filesystem core hands it an
``upload`` coroutine and a ``path_of`` function, so the data path does not
reach back up.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from vagonfs.cache.spool import Spool
from vagonfs.errors import (FileTooLarge, InvalidName, NoSpace, PermissionDenied, ReadOnly,
                            StoreError)

log = logging.getLogger("vagonfs.upload")

PERMANENT = (NoSpace, FileTooLarge, PermissionDenied, InvalidName, ReadOnly)
MAX_PARALLEL_UPLOADS = 8  # small files upload side by side; big ones bound their parts


class State(enum.Enum):
    OPEN = "open"
    QUEUED = "queued"
    UPLOADING = "uploading"
    FAILED = "failed"


@dataclass(eq=False)
class Pending:
    node: object  # vagonfs.core.inodes.Node; opaque here
    spool: Spool
    state: State = State.OPEN
    due: float = math.inf
    attempts: int = 0
    error: StoreError | None = None
    progress: int = 0
    replaces: str = ""  # version of the remote file this content replaces
    settled: trio.Event = field(default_factory=trio.Event)


UploadFn = Callable[[object, Spool, Callable[[int], None]], Awaitable[None]]


class WriteBack:
    """Protects: the pending map (node id -> Pending); trio-thread only."""

    def __init__(self, root: Path, delay: float, upload: UploadFn,
                 path_of: Callable[[object], str]):
        self.spool_dir = root / "spool"
        self.journal_dir = root / "journal"
        self.failed_dir = root / "failed"
        for directory in (self.spool_dir, self.journal_dir, self.failed_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._delay = delay
        self._upload = upload
        self._path_of = path_of
        self._pending: dict[int, Pending] = {}
        self._wakeup = trio.Event()
        self._slots = trio.Semaphore(MAX_PARALLEL_UPLOADS)

    # -- what the filesystem tells the queue --------------------------------

    def get(self, node) -> Pending | None:
        return self._pending.get(id(node))

    def opened(self, node, spool: Spool, replaces: str = "") -> Pending:
        """``node`` now has local content in ``spool`` that is newer than the store's."""
        old = self._pending.get(id(node))
        if old is not None and old.spool is not spool and old.state is not State.UPLOADING:
            self._drop_record(old)
            old.spool.discard()
        pending = Pending(node, spool, replaces=replaces)
        self._pending[id(node)] = pending
        node.dirty = pending
        return pending

    async def flushed(self, node) -> None:
        """A ``close(2)``: journal the file, so a killed daemon loses nothing.

        No ``fsync`` here, as on a local disk: the spool and the record are in
        the kernel's hands, which survives the daemon's death and a clean
        reboot; the one call that promises more, ``fsync``, waits for the
        store itself (``upload_now``).
        """
        pending = self._pending.get(id(node))
        if pending is None:
            return
        if pending.state is State.FAILED and pending.error is not None:
            raise pending.error
        await self._write_record(pending)

    def closed(self, node) -> None:
        """The last writer closed: upload after the write-back delay."""
        pending = self._pending.get(id(node))
        if pending is None or pending.state is not State.OPEN:
            return
        pending.state = State.QUEUED
        pending.due = trio.current_time() + self._delay
        self._wakeup.set()

    async def upload_now(self, node) -> None:
        """``fsync``: upload at once and return when the store confirmed it."""
        pending = self._pending.get(id(node))
        if pending is None:
            return
        await self.flushed(node)
        if pending.state in (State.OPEN, State.QUEUED, State.FAILED):
            pending.state, pending.due, pending.error = State.QUEUED, 0.0, None
            self._wakeup.set()
        await pending.settled.wait()
        if pending.error is not None:
            raise pending.error

    async def moved(self, node) -> None:
        """The file was renamed before its upload: record the new path."""
        pending = self._pending.get(id(node))
        if pending is not None and pending.state is not State.OPEN:
            await self._write_record(pending)

    def discard(self, node) -> None:
        """The file was deleted: drop its pending content."""
        pending = self._pending.pop(id(node), None)
        if pending is None:
            return
        node.dirty = None
        self._drop_record(pending)
        if pending.state is not State.UPLOADING:
            pending.spool.discard()
        pending.settled.set()

    def all(self) -> list[Pending]:
        return list(self._pending.values())

    async def drain(self, timeout: float | None = None) -> bool:
        """Upload everything now (unmount); False when the timeout came first."""
        for pending in self._pending.values():
            if pending.state in (State.OPEN, State.QUEUED):
                pending.state, pending.due = State.QUEUED, 0.0
        self._wakeup.set()
        with trio.move_on_after(timeout if timeout is not None else math.inf):
            while any(p.state is not State.FAILED for p in self._pending.values()):
                await trio.sleep(0.1)
            return True
        return False

    # -- the journal ---------------------------------------------------------

    async def _write_record(self, pending: Pending) -> None:
        record = {"path": self._path_of(pending.node), "spool": pending.spool.id,
                  "size": pending.spool.size, "replaces": pending.replaces}
        path = self.journal_dir / f"{pending.spool.id}.json"

        def write() -> None:
            tmp = path.with_suffix(".tmp")
            with open(tmp, "w") as fh:
                json.dump(record, fh)
            os.replace(tmp, path)

        await trio.to_thread.run_sync(write)

    def _drop_record(self, pending: Pending) -> None:
        try:
            os.unlink(self.journal_dir / f"{pending.spool.id}.json")
        except FileNotFoundError:
            pass

    def recovered(self) -> list[tuple[str, Spool, str]]:
        """(path, spool, replaced version) for every upload a previous run left."""
        found = []
        for record_path in sorted(self.journal_dir.glob("*.json")):
            try:
                record = json.loads(record_path.read_text())
                spool = Spool.reopen(self.spool_dir / record["spool"])
            except (OSError, ValueError, KeyError) as exc:
                log.error("journal record %s is unreadable (%s); moved to %s",
                          record_path.name, exc, self.failed_dir)
                os.replace(record_path, self.failed_dir / record_path.name)
                continue
            found.append((record["path"], spool, record.get("replaces", "")))
            os.unlink(record_path)  # rewritten when the recovered file is queued
        return found

    # -- the scheduler -------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                now = trio.current_time()
                for pending in list(self._pending.values()):
                    if pending.state is State.QUEUED and pending.due <= now:
                        pending.state = State.UPLOADING
                        nursery.start_soon(self._upload_one, pending)
                due = [p.due for p in self._pending.values() if p.state is State.QUEUED]
                self._wakeup = trio.Event()
                with trio.move_on_at(min(due, default=math.inf)):
                    await self._wakeup.wait()

    async def _upload_one(self, pending: Pending) -> None:
        node = pending.node
        path = self._path_of(node)
        async with self._slots:
            pending.attempts += 1

            def progress(done: int) -> None:
                pending.progress = done

            try:
                await self._upload(node, pending.spool, progress)
            except StoreError as exc:
                self._failed(pending, path, exc)
                return
        log.info("uploaded %s (%d bytes)", path, pending.spool.size)
        pending.error = None
        self._drop_record(pending)
        pending.settled.set()
        if self._pending.get(id(node)) is pending:
            del self._pending[id(node)]
            node.dirty = None
        pending.spool.discard()

    def _failed(self, pending: Pending, path: str, exc: StoreError) -> None:
        pending.error = exc
        exc.logged = True  # told below; an fsync that returns it need not repeat it
        if self._pending.get(id(pending.node)) is not pending:  # deleted or rewritten meanwhile
            pending.spool.discard()
            pending.settled.set()
            return
        if isinstance(exc, PERMANENT):
            pending.state = State.FAILED
            log.error("upload of %s refused by the store: %s; the data is kept in %s",
                      path, exc, pending.spool.path)
            pending.settled.set()
            return
        delay = min(300.0, 2.0 * 2 ** pending.attempts)
        log.warning("upload of %s failed (%s); retrying in %.0f s", path, exc, delay)
        pending.state, pending.due = State.QUEUED, trio.current_time() + delay
        # an fsync waiting on this upload gets the error now rather than waiting
        pending.settled.set()
        pending.settled = trio.Event()
        self._wakeup.set()
