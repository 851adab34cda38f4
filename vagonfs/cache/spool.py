"""Spool files: the local copy of a file being written, until the store has it.

Writes at any offset, truncates and appends land here, on disk and never in
RAM; the upload later reads the finished file from here. Spools are named by
random ids under the cache dir, never by remote names. Disk I/O runs in worker
threads so the trio thread keeps serving other requests, except writes of up
to ``INLINE_WRITE`` bytes: a small ``pwrite`` into the page cache takes a few
microseconds, far less than the hop to a worker thread and back, which on a
busy machine costs milliseconds of waiting per small file copied.

Writes of whole pages at page offsets (what ``cp``, ``rsync`` and ``dd``
send: 1 MiB FUSE writes) go to disk with ``O_DIRECT``, through a page-aligned
buffer, and are answered before they land (``write_behind``). Buffered
writes of a big copy are throttled by the kernel's dirty-page limits and cost
the writer a ``pwrite`` of milliseconds per MiB, where direct ones run at the
disk's own rate; the file being copied is not held a second time in the page
cache either. Anything
else (a tail, an editor's small write) is written buffered; Linux keeps the
two kinds coherent on one file. A filesystem that refuses ``O_DIRECT``
(tmpfs) gets buffered writes only.

A write the cache disk refuses (full, over quota, failing) raises the
``LocalDiskError`` with its errno, so the ``write(2)`` that could not be
spooled fails with ENOSPC and not some later ``close``; what other spools
hold is untouched.

Spool files are made before they are asked for (:class:`SpoolFiles`): making
a file is the dearest thing a small copy asks of the cache disk.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import shutil
import uuid
import weakref
from pathlib import Path

import trio

from vagonfs.cache.write_behind import WriteBehind
from vagonfs.errors import LocalCopyLost
from vagonfs.runtime import buffers, supervise, threads

log = logging.getLogger("vagonfs.cache")

INLINE_WRITE = 64 * 1024
_DIRECT_MIN = 128 * 1024  # smaller page-aligned writes are not worth a copy
STOCK = 64  # empty spool files kept ready
KEEP_MAX = 1024 * 1024  # bytes: a spool up to this size is emptied and kept when done
_FREE = "free-"  # the name's prefix of a spool file kept ready


class SpoolFiles:
    """The spool folder, with empty spool files made ahead of need.

    Why: on ext4 an ``open(O_CREAT)`` costs the CPU of an inode allocation
    (``O_TMPFILE`` costs the same), tens of times a rename or an unlink; ``create`` used to wait for it on the
    trio thread for every file ``rsync`` copied in. So a worker thread keeps
    up to ``STOCK`` empty files ready (named ``free-<id>``), a new spool is
    one of them renamed, and a small spool that is done with is emptied and
    kept instead of unlinked. At start, files a crashed run left that the
    journal does not name are emptied and kept the same way.

    Protects: the files kept ready; trio thread only.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._ready: list[Path] = []
        self._wanted = trio.Event()
        self.behind = WriteBehind()  # its ``run`` is started with ``keep_stocked``

    def new(self) -> Spool:
        """An empty spool, one made ahead when there is one."""
        path = self.directory / uuid.uuid4().hex
        try:
            while self._ready:
                try:
                    os.rename(self._ready.pop(), path)
                    break
                except FileNotFoundError:  # removed by hand: the next one
                    continue
            if len(self._ready) < STOCK // 2:
                self._wanted.set()
            return Spool(path, self)
        except OSError as exc:
            raise supervise.failure("new spool", exc) from None

    def reopen(self, spool_id: str) -> Spool:
        """A spool left by an earlier run (its journal record names it)."""
        path = self.directory / spool_id
        return Spool(path, self, path.stat().st_size)

    def adopt(self, named: set[str]) -> None:
        """At start: what the spool folder holds beyond the spools ``named``
        by the journal (files kept ready, a crashed run's unjournaled
        spools) is emptied and kept ready, or removed past ``STOCK``."""
        for path in list(self.directory.iterdir()):  # renamed on the way: listed first
            if path.name not in named:
                self.done_with(path)
        self._wanted.set()  # stocking starts once the folder is sorted out

    def done_with(self, path: Path, *, small: bool = True) -> None:
        """The spool file at ``path`` is not wanted any more: emptied and
        kept ready when ``small`` and there is room, else unlinked."""
        if small and len(self._ready) < STOCK:
            ready = path.with_name(_FREE + path.name.removeprefix(_FREE))
            try:
                os.truncate(path, 0)
                os.rename(path, ready)
                self._ready.append(ready)
                return
            except OSError as exc:
                log.debug("spool file %s not kept: %s", path.name, exc)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    async def keep_stocked(self) -> None:
        """Make spool files in a worker thread whenever fewer than half of
        ``STOCK`` are ready (and once ``adopt`` has sorted out the folder).
        A disk that refuses (full) ends the stocking quietly: ``new`` then
        makes its own, and says why it cannot."""
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            if len(self._ready) < STOCK:
                wanted = STOCK - len(self._ready)
                try:
                    made = await threads.run_sync(_make_files, self.directory, wanted)
                except OSError as exc:
                    log.debug("spool files are no longer made ahead: %s", exc)
                    return
                self._ready.extend(made)


def _make_files(directory: Path, count: int) -> list[Path]:
    made = []
    for _ in range(count):
        path = directory / f"{_FREE}{uuid.uuid4().hex}"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        made.append(path)
    return made


class Spool:
    """Protects: the writes behind (``_behind``, ``_landed``, ``_unlanded``);
    trio thread only."""

    def __init__(self, path: Path, files: SpoolFiles, size: int = 0):
        self.path = path
        self.size = size
        self._files = files
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._direct_fd = -1  # opened at the first write that can go direct
        self._readers: weakref.WeakSet = weakref.WeakSet()  # of open ``reader()`` files
        self._behind = 0  # writes answered and not landed yet
        self._landed = trio.Event()  # set whenever ``_behind`` is back at 0
        self._unlanded: list[tuple[int, bytes | memoryview]] = []  # failed on the way
        self._settling = trio.Lock()

    @property
    def id(self) -> str:
        return self.path.name

    async def write(self, offset: int, data: bytes | memoryview) -> int:
        direct = self._can_go_direct(offset, len(data))
        try:
            if direct and self._files.behind.takes(self._fd, len(data)):
                await self._write_behind(offset, data)
                written = len(data)
            else:
                await self.settle()  # a write behind it over the same bytes lands first
                written = await self._write_now(offset, data, direct)
        except OSError as exc:
            raise supervise.failure("spool write", exc) from None
        self.size = max(self.size, offset + written)
        return written

    async def _write_now(self, offset: int, data: bytes | memoryview, direct: bool) -> int:
        if len(data) <= INLINE_WRITE:
            return os.pwrite(self._fd, data, offset)
        if direct:
            return await _write_direct(self._direct_fd, offset, data)
        return await threads.run_sync(os.pwrite, self._fd, data, offset)

    async def _write_behind(self, offset: int, data: bytes | memoryview) -> None:
        """Queue the write; it lands through its own descriptor, so closing
        the spool meanwhile cannot send it to another file."""
        fd = os.dup(self._direct_fd)
        if not self._behind:
            self._landed = trio.Event()
        self._behind += 1
        try:
            await self._files.behind.put(functools.partial(self._land, fd, offset, data),
                                         len(data))
        except BaseException:
            self._landed_one(fd)
            raise

    async def _land(self, fd: int, offset: int, data: bytes | memoryview) -> None:
        """Run by the write-behind queue: write ``data``, or keep it to try again."""
        try:
            _whole(await _write_direct(fd, offset, data), data)
        except Exception as exc:  # noqa: BLE001 - kept: settle raises its errno
            log.debug("spool write at %d of %s failed on the way (%s); kept to try again",
                      offset, self.path.name, exc)
            self._unlanded.append((offset, data))
        finally:
            self._landed_one(fd)

    def _landed_one(self, fd: int) -> None:
        os.close(fd)
        self._behind -= 1
        if not self._behind:
            self._landed.set()

    async def settle(self) -> None:
        """Return once every write answered before it landed has landed: one
        that failed on the way is written again here, and while it still
        fails its errno is raised (``write_behind``)."""
        if self._behind:
            await self._landed.wait()
        if not self._unlanded:
            return
        async with self._settling:
            while self._unlanded:
                offset, data = self._unlanded[0]
                try:
                    _whole(await threads.run_sync(os.pwrite, self._fd, data, offset), data)
                except OSError as exc:
                    raise supervise.failure("spool write", exc) from None
                self._unlanded.pop(0)

    def _can_go_direct(self, offset: int, length: int) -> bool:
        if length < _DIRECT_MIN or offset % buffers.ALIGN or length % buffers.ALIGN:
            return False
        if self._direct_fd < 0:
            fd = buffers.open_direct(self.path, os.O_WRONLY)
            if fd is None:
                return False
            self._direct_fd = fd
        return True

    async def read(self, offset: int, length: int) -> bytes:
        await self.settle()
        return await threads.run_sync(os.pread, self._fd, length, offset)

    async def truncate(self, size: int) -> None:
        await self.settle()
        try:
            await threads.run_sync(os.ftruncate, self._fd, size)
        except OSError as exc:
            raise supervise.failure("spool truncate", exc) from None
        self.size = size

    async def copy(self) -> Spool:
        """A new spool with the same content (a writer while this one uploads)."""
        await self.settle()
        other = self._files.new()
        try:
            await threads.run_sync(shutil.copyfile, self.path, other.path)
        except BaseException:
            other.discard()  # a half copy on a full disk would only take more room
            raise
        other.size = self.size
        return other

    async def reader(self):
        """A file object for the upload to read from (it reads with
        ``os.pread``), once every write has landed."""
        await self.settle()
        try:
            source = open(self.path, "rb")
        except OSError as exc:
            raise LocalCopyLost(f"its local copy {self.path} cannot be read: "
                                f"{exc.strerror or exc}", exc.errno) from None
        self._readers.add(source)
        return source

    def discard(self) -> None:
        """Done with: the file goes back to the files kept ready when it is
        small and no upload reads it any more (emptying it would cut that
        upload short) nor any write behind still lands in it, else it is
        unlinked."""
        self.close()
        read = any(not source.closed for source in self._readers)
        self._files.done_with(self.path, small=self.size <= KEEP_MAX and not read
                              and not self._behind)

    def close(self) -> None:
        for fd in (self._fd, self._direct_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._direct_fd = -1


async def _write_direct(fd: int, offset: int, data: bytes | memoryview) -> int:
    """``data`` copied into a page-aligned buffer and written from there, both
    in a worker thread."""
    aligned = buffers.receive_buffer(len(data))
    written = await threads.run_sync(_copy_and_write, fd, aligned, data, offset)
    buffers.reuse(aligned)
    return written


def _copy_and_write(fd: int, aligned: memoryview, data: bytes | memoryview, offset: int) -> int:
    aligned[:] = data
    return os.pwrite(fd, aligned, offset)


def _whole(written: int, data: bytes | memoryview) -> None:
    """A write that kept its bytes back landed short: as a full disk does."""
    if written != len(data):
        raise OSError(errno.ENOSPC, f"{written} of {len(data)} bytes written")
