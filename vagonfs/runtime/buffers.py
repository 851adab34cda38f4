"""Page-aligned buffers that bodies are received into, and their reuse.

A block of a file is received into one of these and kept by the block cache
as it is: served to readers as slices, and written to disk with ``O_DIRECT``
without another copy (which wants page-aligned memory). Buffers of a whole
block are used again once nothing sees their bytes any more: a fresh
buffer's first touch costs a page fault and a zeroed page per 4 KiB, and
freeing it an ``munmap`` on the trio thread; ``perf`` of a cold read found a
sixth of the daemon's CPU there, and reusing them took about a quarter off
its CPU per GiB.

Files such buffers are written to (the block cache, spools) are opened with
``open_direct``, which remembers a filesystem that refuses ``O_DIRECT``.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import sys

log = logging.getLogger("vagonfs.cache")

ALIGN = 4096  # what O_DIRECT asks of addresses and lengths on every common disk
RECEIVE_SIZE = 1024 * 1024  # the block cache's block: the buffers kept for reuse
_KEEP_FREE = 16
_free: list[mmap.mmap] = []  # appended to on the trio thread, taken in workers
_direct_refused = False  # the cache's filesystem (tmpfs, say) refused O_DIRECT once


def aligned_buffer(size: int) -> memoryview:
    """``size`` writable bytes at a page boundary, with zeros after them up to
    a multiple of ``ALIGN``: a body received into one can be written to the
    block cache with ``O_DIRECT`` as it is. The kernel hands out zeroed pages
    as they are first touched, so there is no zeroing pass of our own either
    (a ``bytearray`` has one); private, as shared anonymous memory is tmpfs
    and costs more per page."""
    memory = mmap.mmap(-1, max(ALIGN, -(-size // ALIGN) * ALIGN), flags=mmap.MAP_PRIVATE)
    return memoryview(memory)[:size]


def receive_buffer(size: int) -> memoryview:
    """An ``aligned_buffer`` for a body's next ``size`` bytes: one used before
    when ``size`` is ``RECEIVE_SIZE`` and one is free. A used one is not
    zeroed: its bytes are all overwritten or none are shown."""
    if size == RECEIVE_SIZE:
        try:
            return memoryview(_free.pop())
        except IndexError:
            pass
    return aligned_buffer(size)


def reuse(view: memoryview | bytes | bytearray) -> None:
    """Its owner is done with ``view`` (a ``receive_buffer``) and no longer
    uses that object: the buffer is kept for the next body, unless something
    still sees its bytes (a slice a reader holds, a write in flight), in which
    case the last of those frees it as before. So a buffer is never written
    while any view of it is alive."""
    if not isinstance(view, memoryview) or len(_free) >= _KEEP_FREE:
        return
    memory = view.obj
    if not isinstance(memory, mmap.mmap) or len(memory) != RECEIVE_SIZE:
        return
    try:
        view.release()
    except BufferError:  # exported right now
        return
    # references: ``memory`` and getrefcount's own; one more for each live
    # view of the buffer (views sliced from one share a single reference)
    if sys.getrefcount(memory) == 2:
        _free.append(memory)


def open_direct(path: str | os.PathLike, flags: int) -> int | None:
    """``path`` opened with ``flags`` and ``O_DIRECT``; None where its
    filesystem refuses ``O_DIRECT``, which is then not asked again (the
    cache's files all live on one filesystem)."""
    global _direct_refused
    if _direct_refused:
        return None
    try:
        return os.open(path, flags | os.O_DIRECT, 0o600)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    _direct_refused = True
    log.debug("the cache's filesystem refuses O_DIRECT (%s): writes go through the page "
              "cache", path)
    return None
