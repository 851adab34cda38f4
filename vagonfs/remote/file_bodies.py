"""An upload's body, read from its local file (a spool) off the trio thread.

Memory stays at one chunk whatever the file's size, and a large body leaves
the page cache as it found it (``file_range``). A file that cannot be read is
``LocalCopyLost``: no retry can ever send it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

from vagonfs.errors import LocalCopyLost
from vagonfs.runtime import threads

FILE_CHUNK = 1024 * 1024


async def file_range(fd: int, offset: int, length: int,
                     progress: Callable[[int], None] | None = None) -> AsyncIterator[bytes]:
    """An upload body streamed from a local file, a chunk at a time, read off
    the trio thread: memory stays at one chunk whatever the file's size.
    ``progress`` hears the bytes handed on so far.

    A body longer than a chunk leaves the page cache as it found it. What it
    sends is a spool, read once and deleted once uploaded, and written around
    the page cache (``O_DIRECT``) so that a big copy does not evict what the
    machine caches; read back through it, a 1 GiB upload held the whole
    spool there until its end (``fincore``), evicting as much. So the pages
    read are dropped behind the reader (``POSIX_FADV_DONTNEED``), over a
    trailing window: the kernel caches a file in folios of up to 2 MiB and
    drops only those wholly inside the range, so a range of one chunk drops
    nothing. A small body keeps its pages, which a small spool's buffered
    writes may still hold dirty."""
    drop_from = offset if length > FILE_CHUNK else None
    done = 0
    while done < length:
        try:
            data = await threads.run_sync(_read, fd, min(FILE_CHUNK, length - done),
                                          offset + done, drop_from)
        except OSError as exc:
            raise LocalCopyLost(f"its local copy cannot be read: {exc.strerror or exc}",
                                exc.errno) from None
        if not data:
            raise LocalCopyLost(f"its local copy ended at {offset + done} bytes where "
                                f"{offset + length} were to be uploaded")
        done += len(data)
        yield data
        if progress is not None:
            progress(done)


_DROP_WINDOW = 8 * FILE_CHUNK  # more than the page cache's largest folio


def _read(fd: int, length: int, offset: int, drop_from: int | None) -> bytes:
    """``pread``; then, unless ``drop_from`` is None, what the body read up to
    here dropped from the page cache, back to ``drop_from`` (the body's start:
    before it are another body's bytes) at most."""
    data = os.pread(fd, length, offset)
    if drop_from is not None:
        end = offset + len(data)
        since = max(drop_from, end - _DROP_WINDOW)
        os.posix_fadvise(fd, since, end - since, os.POSIX_FADV_DONTNEED)
    return data
