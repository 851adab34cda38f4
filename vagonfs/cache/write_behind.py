"""Big spool writes answered before they reach the disk.

Why: ``cp`` and ``rsync`` send a file as 1 MiB FUSE writes, one at a time,
each waiting for its reply before the next. Written to the spool before the
reply, every write waited for the disk (``O_DIRECT``) on top of FUSE's own
cost: ``cp`` of 1 GiB took two to three times as long as the same copy
answered without writing anything. So a
whole-page write is answered once it is queued, and one task writes the queue
to the spools in order, in a worker thread, while the kernel sends the next.

What keeps this from misleading anyone:

- The queue is short (``DEPTH`` writes, a few MiB for the whole mount): a
  writer faster than the disk waits for room, so memory stays bounded.
- A write goes behind only while the cache disk has ``ROOM`` free beyond what
  is queued; on a filling disk writes land before they are answered again, so
  a full disk still fails the ``write`` itself with ENOSPC.
- Everything else done with a spool (reads, other writes, truncates, copies,
  the upload, ``close`` and ``fsync``) first waits until that spool's writes
  have landed (``Spool.settle``). A write that failed on the way (an I/O
  error; a disk filled by someone else in the last ``ROOM``) is kept in memory
  and tried again there: until it lands, its errno is what that ``close`` or
  ``fsync`` returns, and the file is neither journaled nor uploaded.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable

import trio

DEPTH = 4  # writes queued for the whole mount, beside the one being written
ROOM = 16 * 1024 * 1024  # bytes the cache disk keeps free for a write to go behind

Landing = Callable[[], Awaitable[None]]


class WriteBehind:
    """The mount's queue of spool writes answered before they landed.

    Protects: ``_queued_bytes`` and the channel; trio thread only.
    """

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[tuple[Landing, int]](DEPTH)
        self._queued_bytes = 0
        self._running = False

    def takes(self, fd: int, length: int) -> bool:
        """Whether a write of ``length`` bytes to the spool open on ``fd`` may
        be answered before it lands: the queue runs and the disk has room."""
        if not self._running:
            return False
        try:
            disk = os.fstatvfs(fd)
        except OSError:
            return False
        return disk.f_bavail * disk.f_frsize >= self._queued_bytes + length + ROOM

    async def put(self, land: Landing, length: int) -> None:
        """Queue ``land`` (it writes ``length`` bytes, and never raises);
        waits while the queue is full."""
        self._queued_bytes += length
        try:
            await self._send.send((land, length))
        except trio.BrokenResourceError:  # the queue has stopped (unmount): now, then
            self._queued_bytes -= length
            await land()
        except BaseException:
            self._queued_bytes -= length
            raise

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Land the queued writes in order until cancelled (unmount); what is
        still queued then lands before this returns, and later ones at once."""
        self._running = True
        task_status.started()
        try:
            async for land, length in self._receive:
                await land()
                self._queued_bytes -= length
        finally:
            self._running = False
            with trio.CancelScope(shield=True):
                while True:
                    try:
                        land, length = self._receive.receive_nowait()
                    except trio.WouldBlock:
                        break
                    await land()
                    self._queued_bytes -= length
                self._receive.close()
