"""The pyfuse3 adapter: converts FUSE requests to core calls and back.

pyfuse3 ends the whole mount on any exception other than ``FUSEError``, so
every handler runs inside :func:`_errors`, the one place where a
``StoreError`` becomes its errno and anything unexpected becomes EIO (or the
cache disk's ENOSPC) with one log line, as background work does
(``vagonfs.core.supervise``). Nothing here decides filesystem behaviour; that is
``vagonfs.core.fs``.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
from contextlib import aclosing, contextmanager

import pyfuse3

from vagonfs.cache.blocks import BLOCK_SIZE
from vagonfs.core import links, supervise
from vagonfs.core.fs import Attributes, Filesystem
from vagonfs.core.inodes import Node
from vagonfs.errors import StoreError

log = logging.getLogger("vagonfs.fuse")

UNKNOWN_CAPACITY = 1 << 50
MIME_XATTR = b"user.mime_type"


@contextmanager
def _errors(operation: str):
    try:
        yield
    except pyfuse3.FUSEError:
        raise
    except StoreError as exc:
        if exc.errno in (errno.EIO, errno.ENOSPC, errno.EFBIG, errno.EACCES) and not exc.logged:
            log.warning("%s: %s", operation, exc)
        else:
            log.debug("%s: %s", operation, exc)
        raise pyfuse3.FUSEError(exc.errno) from None
    except Exception as exc:
        raise pyfuse3.FUSEError(supervise.failure(operation, exc, logger=log).errno) from None


def _name(raw: bytes) -> str:
    return os.fsdecode(raw)


class FuseOperations(pyfuse3.Operations):
    supports_dot_lookup = False

    def __init__(self, fs: Filesystem, attr_timeout: float, xattrs: bool = True):
        super().__init__()
        self.fs = fs
        self.attr_timeout = attr_timeout
        # ENOSYS makes the kernel stop asking for good: ls -l then skips its two
        # getxattr round trips per file (SELinux label, ACL), which FUSE cannot
        # cache as absent
        self.xattrs = xattrs
        # FUSE reads answered, for ``vagonfs status``: what store-ahead spares shows here
        self.counts: collections.Counter[str] = collections.Counter()

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a: Attributes = self.fs.attributes(node)
        out = pyfuse3.EntryAttributes()
        out.st_ino = a.ino
        out.generation = 0
        out.entry_timeout = self.attr_timeout
        out.attr_timeout = self.attr_timeout
        out.st_mode = a.mode
        out.st_nlink = 2 if a.is_dir else 1
        out.st_uid, out.st_gid = a.uid, a.gid
        out.st_size = a.size
        out.st_blksize = BLOCK_SIZE
        out.st_blocks = (a.size + 511) // 512
        mtime_ns = int(a.mtime * 1e9)
        out.st_atime_ns = out.st_mtime_ns = out.st_ctime_ns = mtime_ns
        return out

    async def lookup(self, parent_inode, name, ctx=None):
        with _errors("lookup"):
            return self._attrs(await self.fs.lookup(parent_inode, _name(name)))

    async def forget(self, inode_list):
        for ino, count in inode_list:
            self.fs.inodes.forget(ino, count)

    async def getattr(self, inode, ctx=None):
        with _errors("getattr"):
            return self._attrs(self.fs.node(inode))

    async def setattr(self, inode, attr, fields, fh, ctx):
        with _errors("setattr"):
            node = await self.fs.setattr(
                inode,
                size=attr.st_size if fields.update_size else None,
                mtime=attr.st_mtime_ns / 1e9 if fields.update_mtime else None,
                mode=attr.st_mode if fields.update_mode else None)
            # uid/gid changes are accepted and ignored: ownership is the mount's
            return self._attrs(node)

    async def opendir(self, inode, ctx):
        with _errors("opendir"):
            return await self.fs.opendir(inode)

    async def readdir(self, fh, start_id, token):
        with _errors("readdir"):
            async with aclosing(self.fs.readdir(fh, start_id)) as entries:
                async for next_id, node in entries:
                    if not pyfuse3.readdir_reply(token, os.fsencode(node.name),
                                                 self._attrs(node), next_id):
                        return
                    self.fs.inodes.remember(node)

    async def releasedir(self, fh):
        self.fs.releasedir(fh)

    async def mkdir(self, parent_inode, name, mode, ctx):
        with _errors("mkdir"):
            return self._attrs(await self.fs.mkdir(parent_inode, _name(name)))

    async def rmdir(self, parent_inode, name, ctx):
        with _errors("rmdir"):
            await self.fs.rmdir(parent_inode, _name(name))

    async def unlink(self, parent_inode, name, ctx):
        with _errors("unlink"):
            await self.fs.unlink(parent_inode, _name(name))

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        with _errors("rename"):
            if flags & pyfuse3.RENAME_EXCHANGE:
                raise pyfuse3.FUSEError(errno.EINVAL)
            await self.fs.rename(parent_inode_old, _name(name_old), parent_inode_new,
                                 _name(name_new),
                                 noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE))

    async def create(self, parent_inode, name, mode, flags, ctx):
        with _errors("create"):
            fh, node = await self.fs.create(parent_inode, _name(name))
            return pyfuse3.FileInfo(fh=fh), self._attrs(node)

    async def open(self, inode, flags, ctx):
        with _errors("open"):
            fh, keep_cache = await self.fs.open(inode, flags)
            return pyfuse3.FileInfo(fh=fh, keep_cache=keep_cache)

    async def read(self, fh, off, size):
        with _errors("read"):
            data = await self.fs.read(fh, off, size)
        self.counts["fuse_reads"] += 1
        self.counts["fuse_read_bytes"] += len(data)
        return data

    async def write(self, fh, off, buf):
        with _errors("write"):
            return await self.fs.write(fh, off, buf)

    async def flush(self, fh):
        with _errors("flush"):
            await self.fs.flush(fh)

    async def fsync(self, fh, datasync):
        with _errors("fsync"):
            await self.fs.fsync(fh)

    async def release(self, fh):
        with _errors("release"):
            self.fs.release(fh)

    async def statfs(self, ctx):
        with _errors("statfs"):
            capacity = await self.fs.statfs()
        out = pyfuse3.StatvfsData()
        out.f_bsize = out.f_frsize = 4096
        # a store that does not say its size gets a nominal 1 PiB, as rclone
        # does: a size of 0 makes file managers refuse to copy anything
        total = capacity.total or UNKNOWN_CAPACITY
        out.f_blocks = total // 4096
        out.f_bfree = out.f_bavail = max(0, total - capacity.used) // 4096
        out.f_files = len(self.fs.inodes) + 1_000_000
        out.f_ffree = out.f_favail = 1_000_000
        out.f_namemax = self.fs.store.capabilities.max_name_length
        return out

    async def getxattr(self, inode, name, ctx):
        if not self.xattrs:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        with _errors("getxattr"):
            node = self.fs.node(inode)
        if name == MIME_XATTR and node.entry is not None and node.entry.content_type:
            return node.entry.content_type.encode()
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    async def listxattr(self, inode, ctx):
        if not self.xattrs:
            raise pyfuse3.FUSEError(errno.ENOSYS)
        with _errors("listxattr"):
            node = self.fs.node(inode)
        return [MIME_XATTR] if node.entry is not None and node.entry.content_type else []

    async def setxattr(self, inode, name, value, ctx):
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    async def removexattr(self, inode, name, ctx):
        raise pyfuse3.FUSEError(errno.ENOTSUP)

    async def symlink(self, parent_inode, name, target, ctx):
        if not links.enabled(self.fs.store):
            raise pyfuse3.FUSEError(errno.EPERM)  # no store holds links: see docs/SEMANTICS.md
        with _errors("symlink"):
            return self._attrs(await self.fs.symlink(parent_inode, _name(name), target))

    async def readlink(self, inode, ctx):
        with _errors("readlink"):
            return await self.fs.readlink(inode)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)
