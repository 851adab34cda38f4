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

    .venv/bin/python scripts/zero_fs.py MOUNTPOINT [--size BYTES]

Runs in the foreground until unmounted (``fusermount3 -u MOUNTPOINT``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import stat

import pyfuse3
import trio

FILE_NAME = b"zero.bin"
FILE_INODE = pyfuse3.ROOT_INODE + 1
STATS_XATTR = b"user.stats"
# larger than any request the kernel sends (FUSE allows 1 MiB by default)
BUFFER = memoryview(bytes(range(256)) * (4 << 20 >> 8))


class ZeroFs(pyfuse3.Operations):
    def __init__(self, size: int):
        super().__init__()
        self.size = size
        self.reads = 0
        self.largest_read = 0

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
        return pyfuse3.FileInfo(fh=inode)

    async def read(self, fh, off, size):
        self.reads += 1
        self.largest_read = max(self.largest_read, size)
        return BUFFER[:max(0, min(size, self.size - off))]

    async def getxattr(self, inode, name, ctx):
        if inode != pyfuse3.ROOT_INODE or name != STATS_XATTR:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return json.dumps({"reads": self.reads, "largest_read": self.largest_read}).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mountpoint")
    parser.add_argument("--size", type=int, default=1 << 30, help="size of zero.bin in bytes")
    args = parser.parse_args()
    options = set(pyfuse3.default_options) | {"fsname=zerofs", "subtype=zerofs", "noatime"}
    pyfuse3.init(ZeroFs(args.size), args.mountpoint, options)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close()


if __name__ == "__main__":
    main()
