#!/usr/bin/env python3
"""A pyfuse3 filesystem that does no work: the ceiling a FUSE daemon in Python can reach.

One read-only file, ``zero.bin``, whose every read is answered with a slice of
one constant buffer (no copy, no I/O), so a sequential read of it measures only
the kernel, libfuse and pyfuse3's per-request cost at the request size the
kernel chose. ``scripts/bench.py`` compares vagonfs's reads with it at the same
request size (128 KiB: the default read-ahead; 1 MiB: ``read_ahead_kb`` raised).

The root's extended attribute ``user.stats`` answers, as JSON, how many reads
the file got and the largest request seen, so the bench can show which request
size the kernel really sent.

With ``--store-ahead`` it is the ceiling of vagonfs's store-ahead instead
(``vagonfs/cache/store_ahead.py``): a handle reading in order has windows of
1 MiB blocks asked ahead as vagonfs's reader asks them (doubling up to 32,
the next asked once less than half a window is ahead, the middle block of
each left for a FUSE read), and each block of a window but that one handed
to the kernel's page cache with ``notify_store`` from one of three threads,
as vagonfs's are; what the reader finds there never becomes a FUSE read.
Nothing is fetched or loaded: what is left is what the hand-over costs.

    .venv/bin/python scripts/zero_fs.py MOUNTPOINT [--size BYTES] [--store-ahead]

Runs in the foreground until unmounted (``fusermount3 -u MOUNTPOINT``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import queue
import stat
import threading

import pyfuse3
import trio

FILE_NAME = b"zero.bin"
FILE_INODE = pyfuse3.ROOT_INODE + 1
STATS_XATTR = b"user.stats"
# larger than any request the kernel sends (FUSE allows 1 MiB by default)
BUFFER = memoryview(bytes(range(256)) * (4 << 20 >> 8))
BLOCK = 1 << 20  # vagonfs's block
MAX_WINDOW = 32  # blocks: vagonfs's MAX_WINDOW_BLOCKS
SENDERS = 3  # threads storing at once: vagonfs's _SENDERS


class Cursor:
    """One handle's read-ahead, as vagonfs's ``ReadState`` keeps it."""

    def __init__(self) -> None:
        self.ahead_to = 0  # the first block not asked for
        self.window = 1


class ZeroFs(pyfuse3.Operations):
    def __init__(self, size: int, store_ahead: bool = False):
        super().__init__()
        self.size = size
        self.reads = 0
        self.largest_read = 0
        self.stored = 0
        self.store_ahead = store_ahead
        self.cursors: dict[int, Cursor] = {}
        self.to_store: queue.SimpleQueue[int] = queue.SimpleQueue()
        if store_ahead:
            for _ in range(SENDERS):
                threading.Thread(target=self._send, daemon=True).start()

    def _send(self) -> None:
        """A sending thread: each block asked, into the file's page cache."""
        while True:
            block = self.to_store.get()
            end = min(BLOCK, self.size - block * BLOCK)
            pyfuse3.notify_store(FILE_INODE, block * BLOCK, BUFFER[:end])  # type: ignore[arg-type]
            self.stored += 1

    def _ask_ahead(self, cursor: Cursor, last: int) -> None:
        """The next window once less than half of one is ahead of block ``last``."""
        start = max(cursor.ahead_to, last + 1)
        count = min(cursor.window, -(-self.size // BLOCK) - start)
        if count <= 0 or start - last - 1 >= cursor.window / 2:
            return
        tripwire = start + count // 2
        for block in range(start, start + count):
            if block != tripwire:
                self.to_store.put(block)
        cursor.ahead_to = start + count
        cursor.window = min(2 * cursor.window, MAX_WINDOW)

    def _attrs(self, inode: int) -> pyfuse3.EntryAttributes:
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino = inode
        attrs.entry_timeout = attrs.attr_timeout = 3600
        if inode == pyfuse3.ROOT_INODE:
            attrs.st_mode, attrs.st_nlink, attrs.st_size = stat.S_IFDIR | 0o555, 2, 0
        else:
            attrs.st_mode, attrs.st_nlink, attrs.st_size = stat.S_IFREG | 0o444, 1, self.size
        attrs.st_uid, attrs.st_gid = os.getuid(), os.getgid()
        attrs.st_blksize = 1 << 20
        attrs.st_blocks = (attrs.st_size + 511) // 512
        return attrs

    async def getattr(self, inode, ctx=None):
        if inode not in (pyfuse3.ROOT_INODE, FILE_INODE):
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(inode)

    async def lookup(self, parent_inode, name, ctx=None):
        if parent_inode != pyfuse3.ROOT_INODE or name != FILE_NAME:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(FILE_INODE)

    async def opendir(self, inode, ctx):
        if inode != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh, start_id, token):
        if start_id == 0:
            pyfuse3.readdir_reply(token, FILE_NAME, self._attrs(FILE_INODE), 1)

    async def open(self, inode, flags, ctx):
        if inode != FILE_INODE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise pyfuse3.FUSEError(errno.EROFS)
        fh = len(self.cursors) + 1
        self.cursors[fh] = Cursor()
        # the kernel keeps what was stored across opens only with keep_cache
        return pyfuse3.FileInfo(fh=fh, keep_cache=self.store_ahead)

    async def read(self, fh, off, size):
        self.reads += 1
        self.largest_read = max(self.largest_read, size)
        if self.store_ahead and size:
            self._ask_ahead(self.cursors[fh], (off + size - 1) // BLOCK)
        return BUFFER[:max(0, min(size, self.size - off))]

    async def release(self, fh):
        self.cursors.pop(fh, None)

    async def getxattr(self, inode, name, ctx):
        if inode != pyfuse3.ROOT_INODE or name != STATS_XATTR:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return json.dumps({"reads": self.reads, "largest_read": self.largest_read,
                           "stored": self.stored}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mountpoint")
    parser.add_argument("--size", type=int, default=1 << 30, help="size of zero.bin in bytes")
    parser.add_argument("--store-ahead", action="store_true",
                        help="hand windows ahead of a reader to the kernel's page cache")
    args = parser.parse_args()
    options = set(pyfuse3.default_options) | {"fsname=zerofs", "subtype=zerofs", "noatime"}
    pyfuse3.init(ZeroFs(args.size, args.store_ahead), args.mountpoint, options)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close()


if __name__ == "__main__":
    main()
