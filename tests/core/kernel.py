"""The model test's in-process subject (``tests/core/test_model.py``): a
started ``Filesystem`` driven one syscall at a time, as the kernel drives it.

``Kernel`` stands where the kernel stands: it walks a path with lookups (and
forgets them after, as with a listing that lasts nothing), answers what the
VFS answers before asking the filesystem (``EEXIST`` for mkdir of a name that
is there, ``EISDIR`` for unlink of a folder, ...), and turns an ``FsError``
into the ``OSError`` a syscall would raise. The filesystem runs in a trio
thread of its own, as the daemon's loop does; each call into it is bounded by
``GUARD``. Listings last 0 s (a colleague's change shows at the next step) and
the write-back delay is an hour, so uploads happen exactly at ``fsync`` and
``sync``, where the model expects them.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import trio

from vagonfs.core.fs import Filesystem
from vagonfs.core.inodes import ROOT_INODE, Node
from vagonfs.errors import FsError

from .conftest import GUARD, filesystem
from .memory_store import MemoryStore

T = TypeVar("T")
CHUNK = 64 * 1024  # one read of the kernel's


class Kernel:
    """The in-process subject: a started ``Filesystem`` over ``store``, driven
    one syscall at a time from the test's thread."""

    def __init__(self, store: MemoryStore, cache: Path):
        self.store = store
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._fs: Filesystem | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._serve, args=(cache,), daemon=True)
        self._thread.start()
        if not self._ready.wait(GUARD):
            raise TimeoutError("the filesystem did not start")
        if self._failed is not None:
            raise self._failed

    def _serve(self, cache: Path) -> None:
        async def main() -> None:
            async with filesystem(self.store, cache, dir_cache_time=0.0,
                                  write_back_delay=3600.0, list_ahead=0) as fs:
                self._fs, self._token, self._stop = fs, trio.lowlevel.current_trio_token(), \
                    trio.Event()
                self._ready.set()
                await self._stop.wait()

        try:
            trio.run(main)
        except BaseException as exc:  # the test's thread raises it
            self._failed = exc
            self._ready.set()

    def close(self) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(GUARD)
        assert not self._thread.is_alive(), "the filesystem did not stop"
        if self._failed is not None:
            raise self._failed

    def _call(self, body: Callable[[Filesystem], Awaitable[T]]) -> T:
        assert self._fs is not None and self._token is not None
        fs = self._fs

        async def guarded() -> T:
            with trio.fail_after(GUARD):
                try:
                    return await body(fs)
                except FsError as exc:
                    raise OSError(exc.errno, str(exc)) from None

        return trio.from_thread.run(guarded, trio_token=self._token)

    # -- what the VFS does before it asks the filesystem --------------------------

    @staticmethod
    async def _walk(fs: Filesystem, path: str, looked: list[int]) -> Node:
        node = fs.node(ROOT_INODE)
        for part in path.split("/"):
            if not node.is_dir:
                raise OSError(errno.ENOTDIR, path)
            node = await fs.lookup(node.ino, part)
            looked.append(node.ino)
        return node

    async def _at(self, fs: Filesystem, path: str,
                  then: Callable[[Node | None, Node, list[int]], Awaitable[T]]) -> T:
        """``then(node or None, parent, looked)`` for ``path``, with what the
        walk looked up forgotten after."""
        looked: list[int] = []
        folder, _, name = path.rpartition("/")
        try:
            parent = await self._walk(fs, folder, looked) if folder else fs.node(ROOT_INODE)
            if not parent.is_dir:
                raise OSError(errno.ENOTDIR, path)
            try:
                node: Node | None = await fs.lookup(parent.ino, name)
            except FsError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                node = None
            else:
                assert node is not None
                looked.append(node.ino)
            return await then(node, parent, looked)
        finally:
            for ino in looked:
                fs.inodes.forget(ino, 1)

    @staticmethod
    def _file(node: Node | None, path: str) -> Node:
        if node is None:
            raise OSError(errno.ENOENT, path)
        if node.is_dir:
            raise OSError(errno.EISDIR, path)
        return node

    async def _write_through(self, fs: Filesystem, fh: int, offset: int, data: bytes) -> None:
        if data:  # the kernel sends no write of nothing
            assert await fs.write(fh, offset, data) == len(data)
        await fs.flush(fh)

    # -- the syscalls --------------------------------------------------------------

    def create(self, name: str, payload: bytes) -> None:
        async def body(fs: Filesystem) -> None:
            async def then(node, parent, looked):
                if node is None:
                    fh, made = await fs.create(parent.ino, name.rpartition("/")[2])
                    looked.append(made.ino)
                else:
                    fh, _ = await fs.open(self._file(node, name).ino,
                                          os.O_WRONLY | os.O_TRUNC)
                try:
                    await self._write_through(fs, fh, 0, payload)
                finally:
                    fs.release(fh)
            await self._at(fs, name, then)
        self._call(body)

    def _write(self, name: str, payload: bytes, offset: int | None) -> None:
        """At ``offset``; None: ``O_APPEND | O_CREAT``, at the end of a file made if absent."""
        async def body(fs: Filesystem) -> None:
            async def then(node, parent, looked):
                if node is None and offset is None:
                    fh, made = await fs.create(parent.ino, name.rpartition("/")[2])
                    looked.append(made.ino)
                    try:
                        await self._write_through(fs, fh, 0, payload)
                    finally:
                        fs.release(fh)
                    return
                node = self._file(node, name)
                at = fs.attributes(node).size if offset is None else offset
                fh, _ = await fs.open(node.ino, os.O_WRONLY)
                try:
                    await self._write_through(fs, fh, at, payload)
                finally:
                    fs.release(fh)
            await self._at(fs, name, then)
        self._call(body)

    def write_at(self, name: str, offset: int, payload: bytes) -> None:
        self._write(name, payload, offset)

    def append(self, name: str, payload: bytes) -> None:
        self._write(name, payload, None)

    def truncate(self, name: str, size: int) -> None:
        async def body(fs: Filesystem) -> None:
            async def then(node, parent, looked):
                await fs.setattr(self._file(node, name).ino, size=size)
            await self._at(fs, name, then)
        self._call(body)

    def read(self, name: str) -> bytes:
        async def body(fs: Filesystem) -> bytes:
            async def then(node, parent, looked):
                fh, _ = await fs.open(self._file(node, name).ino, os.O_RDONLY)
                try:
                    data = b""
                    while chunk := bytes(await fs.read(fh, len(data), CHUNK)):
                        data += chunk
                    return data
                finally:
                    fs.release(fh)
            return await self._at(fs, name, then)
        return self._call(body)

    def fsync(self, name: str) -> None:
        async def body(fs: Filesystem) -> None:
            async def then(node, parent, looked):
                fh, _ = await fs.open(self._file(node, name).ino, os.O_RDONLY)
                try:
                    await fs.fsync(fh)
                finally:
                    fs.release(fh)
            await self._at(fs, name, then)
        self._call(body)

    def unlink(self, name: str) -> None:
        async def body(fs: Filesystem) -> None:
            async def then(node, parent, looked):
                self._file(node, name)
                await fs.unlink(parent.ino, name.rpartition("/")[2])
            await self._at(fs, name, then)
        self._call(body)

    def mkdir(self, name: str) -> None:
        async def body(fs: Filesystem) -> None:
            async def then(node, parent, looked):
                if node is not None:
                    raise OSError(errno.EEXIST, name)
                await fs.mkdir(parent.ino, name.rpartition("/")[2])
            await self._at(fs, name, then)
        self._call(body)

    def rmdir(self, name: str) -> None:
        async def body(fs: Filesystem) -> None:
            async def then(node, parent, looked):
                if node is None:
                    raise OSError(errno.ENOENT, name)
                if not node.is_dir:
                    raise OSError(errno.ENOTDIR, name)
                await fs.rmdir(parent.ino, name.rpartition("/")[2])
            await self._at(fs, name, then)
        self._call(body)

    def rename(self, src: str, dst: str) -> None:
        async def body(fs: Filesystem) -> None:
            async def from_src(node, parent, looked):
                source = self._file(node, src)

                async def to_dst(target, into, looked_too):
                    if target is not None and target.is_dir:
                        raise OSError(errno.EISDIR, dst)
                    if target is not None and target.ino == source.ino:
                        return  # the same file: rename(2) does nothing
                    await fs.rename(parent.ino, src.rpartition("/")[2], into.ino,
                                    dst.rpartition("/")[2])
                await self._at(fs, dst, to_dst)
            await self._at(fs, src, from_src)
        self._call(body)

    def sync(self) -> None:
        async def body(fs: Filesystem) -> None:
            assert not await fs.uploads.upload_all()  # every upload landed
        self._call(body)

    def tree(self) -> dict[str, bytes | None]:
        """Folders by a walk of listings; each file's bytes by a read of its path."""
        async def body(fs: Filesystem) -> tuple[list[str], list[str]]:
            folders: list[str] = []
            files: list[str] = []

            async def walk(folder: Node, prefix: str) -> None:
                fh = await fs.opendir(folder.ino)
                try:
                    nodes = [node async for _, node in fs.readdir(fh, 0)]
                finally:
                    fs.releasedir(fh)
                for node in nodes:
                    (folders if node.is_dir else files).append(prefix + node.name)
                    if node.is_dir:
                        await walk(node, prefix + node.name + "/")
            await walk(fs.node(ROOT_INODE), "")
            return folders, files

        folders, files = self._call(body)
        found: dict[str, bytes | None] = dict.fromkeys(folders)
        found.update({path: self.read(path) for path in files})
        return found


class StoreBehind:
    """The in-memory store, as another client (and the model's check) sees it."""

    def __init__(self, store: MemoryStore):
        self._store = store

    def put(self, path: str, data: bytes) -> None:
        self._store.put(path, data)

    def remove(self, path: str) -> None:
        self._store.remove(path)

    def mkdirs(self, path: str) -> None:
        self._store.mkdirs(path)

    def tree(self) -> dict[str, bytes | None]:
        return {path: None if self._store.entry(path).is_dir else self._store.data(path)
                for path in _all_paths(self._store)}


def _all_paths(store: MemoryStore, folder: str = "") -> list[str]:
    paths = []
    for name in store.names(folder):
        path = f"{folder}/{name}" if folder else name
        paths.append(path)
        if store.entry(path).is_dir:
            paths += _all_paths(store, path)
    return paths
