"""Spool files: the local copy of a file being written, until the store has it.

Writes at any offset, truncates and appends land here, on disk and never in
RAM; the upload later reads the finished file from here. Spools are named by
random ids under the cache dir, never by remote names. All disk I/O runs in
worker threads so the trio thread keeps serving other requests.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import trio


class Spool:
    def __init__(self, path: Path, size: int = 0):
        self.path = path
        self.size = size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    @classmethod
    def new(cls, directory: Path) -> Spool:
        return cls(directory / uuid.uuid4().hex)

    @classmethod
    def reopen(cls, path: Path) -> Spool:
        """A spool left by an earlier run (its journal entry names it)."""
        return cls(path, path.stat().st_size)

    @property
    def id(self) -> str:
        return self.path.name

    async def write(self, offset: int, data: bytes) -> int:
        written = await trio.to_thread.run_sync(os.pwrite, self._fd, data, offset)
        self.size = max(self.size, offset + written)
        return written

    async def read(self, offset: int, length: int) -> bytes:
        return await trio.to_thread.run_sync(os.pread, self._fd, length, offset)

    async def truncate(self, size: int) -> None:
        await trio.to_thread.run_sync(os.ftruncate, self._fd, size)
        self.size = size

    async def copy(self, directory: Path) -> Spool:
        """A new spool with the same content (a writer while this one uploads)."""
        other = Spool.new(directory)
        await trio.to_thread.run_sync(shutil.copyfile, self.path, other.path)
        other.size = self.size
        return other

    def reader(self):
        """A file object for the upload to read from (it reads with ``os.pread``)."""
        return open(self.path, "rb")

    def discard(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
