"""The pyfuse3 adapter: converts FUSE requests to core calls and back.

pyfuse3 ends the whole mount on any exception other than ``FUSEError``, so
every handler runs inside :meth:`FuseOperations._request`, the one place where a
``FsError`` becomes its errno and anything unexpected becomes EIO (or the
cache disk's ENOSPC) with one log line, as background work does
(``vagonfs.runtime.supervise``). It also counts the kernel's requests by
operation (``vagonfs status --json``: what a tool's walk of the mount really
asks). Nothing here decides filesystem behaviour; that is ``vagonfs.core.fs``,
down to how long the kernel may keep each answer.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import Counter
from contextlib import aclosing, contextmanager

import pyfuse3

from vagonfs.cache.blocks import BLOCK_SIZE
from vagonfs.core.fs import Attributes, Filesystem
from vagonfs.core.inodes import Node
from vagonfs.errors import FsError
from vagonfs.runtime import supervise

log = logging.getLogger("vagonfs.fuse")


def _name(raw: bytes) -> str:
    return os.fsdecode(raw)


class FuseOperations(pyfuse3.Operations):
    supports_dot_lookup = False

    def __init__(self, fs: Filesystem, xattrs: bool, requests: Counter[str]):
        super().__init__()
        self.fs = fs
        # off (the default): the first getxattr or listxattr is answered ENOSYS,
        # after which the kernel answers every later one itself (EOPNOTSUPP)
        # for the life of the mount: ls -l then sends none of its two per file
        # (SELinux label, ACL), which FUSE cannot cache as absent
        self.xattrs = xattrs
        self.requests = requests  # the kernel's requests so far, by operation
        # the bytes FUSE reads were answered with, for ``vagonfs status``: what
        # store-ahead spares shows here
        self.read_bytes = 0
        fs.on_name_moved(self._drop_kernel_entry)

    @staticmethod
    def _drop_kernel_entry(folder: int, name: str) -> None:
        """The kernel trusts a name's inode for ``entry_timeout``: a name that
        leads to another file now (a conflict copy's) is dropped at once, so
        the next ``open`` or ``rm`` of it reaches the file the store holds."""
        pyfuse3.invalidate_entry_async(folder, os.fsencode(name), ignore_enoent=True)

    @contextmanager
    def _request(self, operation: str):
        """Count one request of the kernel's, and turn whatever it raises into
        the errno its caller gets."""
        self.requests[operation] += 1
        try:
            yield
        except pyfuse3.FUSEError:
            raise
        except FsError as exc:
            if exc.errno in (errno.EIO, errno.ENOSPC, errno.EFBIG, errno.EACCES) \
                    and not exc.logged:
                log.warning("%s: %s", operation, exc)
            else:
                log.debug("%s: %s", operation, exc)
            raise pyfuse3.FUSEError(exc.errno) from None
        except Exception as exc:
            raise pyfuse3.FUSEError(supervise.failure(operation, exc, logger=log).errno) \
                from None

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a: Attributes = self.fs.attributes(node)
        out = pyfuse3.EntryAttributes()
        out.st_ino = a.ino
        out.generation = 0
        out.entry_timeout = out.attr_timeout = a.kept_for
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
        with self._request("lookup"):
            return self._attrs(await self.fs.lookup(parent_inode, _name(name)))

    async def forget(self, inode_list):
        with self._request("forget"):
            for ino, count in inode_list:
                self.fs.forget(ino, count)

    async def getattr(self, inode, ctx=None):
        with self._request("getattr"):
            return self._attrs(self.fs.node(inode))

    async def setattr(self, inode, attr, fields, fh, ctx):
        with self._request("setattr"):
            node = await self.fs.setattr(
                inode,
                size=attr.st_size if fields.update_size else None,
                mtime=attr.st_mtime_ns / 1e9 if fields.update_mtime else None,
                mode=attr.st_mode if fields.update_mode else None)
            # uid/gid changes are accepted and ignored: ownership is the mount's
            return self._attrs(node)

    async def opendir(self, inode, ctx):
        with self._request("opendir"):
            return await self.fs.opendir(inode)

    async def readdir(self, fh, start_id, token):
        with self._request("readdir"):
            async with aclosing(self.fs.readdir(fh, start_id)) as entries:
                async for next_id, node in entries:
                    if not pyfuse3.readdir_reply(token, os.fsencode(node.name),
                                                 self._attrs(node), next_id):
                        return
                    self.fs.remember(node)

    async def releasedir(self, fh):
        with self._request("releasedir"):
            self.fs.releasedir(fh)

    async def mkdir(self, parent_inode, name, mode, ctx):
        with self._request("mkdir"):
            return self._attrs(await self.fs.mkdir(parent_inode, _name(name)))

    async def rmdir(self, parent_inode, name, ctx):
        with self._request("rmdir"):
            await self.fs.rmdir(parent_inode, _name(name))

    async def unlink(self, parent_inode, name, ctx):
        with self._request("unlink"):
            await self.fs.unlink(parent_inode, _name(name))

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        with self._request("rename"):
            if flags & pyfuse3.RENAME_EXCHANGE:
                raise pyfuse3.FUSEError(errno.EINVAL)
            await self.fs.rename(parent_inode_old, _name(name_old), parent_inode_new,
                                 _name(name_new),
                                 noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE))

    async def create(self, parent_inode, name, mode, flags, ctx):
        with self._request("create"):
            fh, node = await self.fs.create(parent_inode, _name(name))
            return pyfuse3.FileInfo(fh=fh), self._attrs(node)

    async def open(self, inode, flags, ctx):
        with self._request("open"):
            fh, keep_cache = await self.fs.open(inode, flags)
            return pyfuse3.FileInfo(fh=fh, keep_cache=keep_cache)

    async def read(self, fh, off, size):
        with self._request("read"):
            data = await self.fs.read(fh, off, size)
        self.read_bytes += len(data)
        return data

    async def write(self, fh, off, buf):
        with self._request("write"):
            return await self.fs.write(fh, off, buf)

    async def flush(self, fh):
        with self._request("flush"):
            await self.fs.flush(fh)

    async def fsync(self, fh, datasync):
        with self._request("fsync"):
            await self.fs.fsync(fh)

    async def release(self, fh):
        with self._request("release"):
            self.fs.release(fh)

    async def statfs(self, ctx):
        with self._request("statfs"):
            stats = await self.fs.statfs()
        out = pyfuse3.StatvfsData()
        out.f_bsize = out.f_frsize = 4096
        out.f_blocks = stats.total // 4096
        out.f_bfree = out.f_bavail = stats.free // 4096
        out.f_files = stats.files
        out.f_ffree = out.f_favail = stats.free_files
        out.f_namemax = stats.name_max
        return out

    async def getxattr(self, inode, name, ctx):
        with self._request("getxattr"):
            if not self.xattrs:
                raise pyfuse3.FUSEError(errno.ENOSYS)
            value = self.fs.xattrs(inode).get(name)
            if value is None:
                raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
            return value

    async def listxattr(self, inode, ctx):
        with self._request("listxattr"):
            if not self.xattrs:
                raise pyfuse3.FUSEError(errno.ENOSYS)
            return list(self.fs.xattrs(inode))

    async def setxattr(self, inode, name, value, ctx):
        with self._request("setxattr"):
            raise pyfuse3.FUSEError(errno.ENOTSUP)

    async def removexattr(self, inode, name, ctx):
        with self._request("removexattr"):
            raise pyfuse3.FUSEError(errno.ENOTSUP)

    async def symlink(self, parent_inode, name, target, ctx):
        with self._request("symlink"):
            return self._attrs(await self.fs.symlink(parent_inode, _name(name), target))

    async def readlink(self, inode, ctx):
        with self._request("readlink"):
            return await self.fs.readlink(inode)

    async def link(self, inode, new_parent_inode, new_name, ctx):
        with self._request("link"):
            raise pyfuse3.FUSEError(errno.EPERM)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        with self._request("mknod"):
            raise pyfuse3.FUSEError(errno.EPERM)
