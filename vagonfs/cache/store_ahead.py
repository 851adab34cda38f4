"""Store-ahead: blocks read ahead handed to the kernel's page cache.

pyfuse3 answers each FUSE read on the trio thread with the GIL held, so
reads that reach the daemon are capped by that hand-over however fast the
bytes arrive. A page already in the kernel's page cache is read without a
FUSE request, when the file's open kept the cache. So a block read ahead of
a handle's position (received, or in the block cache) is also given to the
kernel for that file's inode, and the reader finds it there. A block that is
only on the disk cache is not loaded into memory for that: the thread that
sends it reads it (a ``Loader``), so a cached file's blocks go from the cache
file to the kernel in one worker thread each, without a trip through the
trio thread, and take no room in the daemon's memory.

What is stored, and when it is dropped, keeps the page cache to one version
of a file, as the block cache is:

- A handle stores only while its ``store_to`` names an inode: the core's
  rule (``vagonfs.core.open_files``), asked for each block, says whether
  the open kept the cache and the file is still that version, with nothing
  written here.
- The inodes each object (a file version) was stored into are remembered;
  when the reader forgets that version (a listing, a lookup or our own
  upload found another, or the file was deleted), their pages are dropped
  before anything more is stored for them.

Blocks held in memory (just received) are stored only for a handle whose
FUSE reads are small (:func:`gains`): the hand-over it spares is paid once per
FUSE read, so it weighs eight times more per byte at the kernel's default
128 KiB read-ahead than at the 1 MiB a root mount sets, where storing them
cost more than it spared. Blocks from the disk cache are stored at any read
size: their sender reads and stores each without the trio thread, and a warm
read at 1 MiB gained (docs/BENCHMARKS.md).

A page the kernel drops under memory pressure is simply read again through
FUSE. Sending is the FUSE adapter's (``vagonfs.daemon.kernel_pages``): this layer
knows it only as :class:`KernelPages`, and without one stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import cachetools
import trio

from vagonfs.cache.blocks import BLOCK_SIZE, Buffer


# from this size of a handle's FUSE reads on, it stores nothing more ahead
LARGE_READ = 512 * 1024


def gains(largest_read: int) -> bool:
    """Whether storing ahead for a handle whose largest FUSE read so far is
    ``largest_read`` bytes gains. The kernel's read size is the mount's
    read-ahead (or less, near a file's end or while its read-ahead ramps
    up), so the largest read tells the handle's request size once the
    reader is in order, before the cursor reads anything ahead."""
    return largest_read < LARGE_READ


# called in the sending thread: the block's bytes, or None when there is
# nothing to send any more (gone from the disk cache, damaged, or being read
# through FUSE by now)
Loader = Callable[[], Buffer | None]


class KernelPages(Protocol):
    def store(self, ino: int, offset: int, length: int, data: Buffer | Loader) -> bool:
        """Queue ``length`` bytes (``data``, or what it loads) for ``ino``'s
        page cache; False when it was refused."""

    def drop(self, ino: int) -> trio.Event:
        """Drop ``ino``'s page cache after what was queued; set once done."""


class StoreAhead:
    """Protects: which objects were stored into each inode; trio thread only.

    That memory is kept for the ``REMEMBERED`` inodes stored into most
    recently: stores still on their way are of those, and a page cache
    forgotten here is dropped by the kernel itself when the file is next
    opened (the open does not keep the cache of a file whose version changed)."""

    REMEMBERED = 4096

    def __init__(self, pages: KernelPages | None):
        self._pages = pages
        self._stored: cachetools.LRUCache[int, set[str]] = cachetools.LRUCache(self.REMEMBERED)

    def offer(self, obj: str, ino: int, index: int, length: int, data: Buffer | Loader) -> bool:
        """Block ``index`` of ``obj`` is ahead of a reader of ``ino``: in
        memory, or to be loaded by the sender. False when it was not taken."""
        if (self._pages is not None
                and self._pages.store(ino, index * BLOCK_SIZE, length, data)):
            self._stored.setdefault(ino, set()).add(obj)
            return True
        return False

    def forget(self, obj: str) -> None:
        """That version is no more: the pages stored of it go."""
        for ino in [i for i, objects in self._stored.items() if obj in objects]:
            self.drop(ino)

    def drop(self, ino: int) -> trio.Event | None:
        """Drop what was stored for ``ino``; None when nothing was."""
        if self._stored.pop(ino, None) is None:
            return None
        assert self._pages is not None  # nothing is stored without it
        return self._pages.drop(ino)
