"""A written file's content on its way to the store, and the states it goes through.

Apart from the queue that moves it (``vagonfs.cache.uploads``), so that what
reads a file's state (the core's nodes, ``vagonfs status``, the daemon's
unmount) depends on the states alone, and the machine is drawn in one place.

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
"""

from __future__ import annotations

import enum
import math
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import trio

from vagonfs.cache.spool import Spool
from vagonfs.errors import FsError


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
