"""Blocks of remote files kept on local disk, bounded by ``--cache-max-size``.

Every block is a file of its own, ``blocks/<object>/<index>``, where
``<object>`` is a hash of the store key and the version: a file that changes
remotely gets a new object id, so stale bytes are never served, and no remote
name ever becomes a local path. A least-recently-used index (cachetools)
evicts whole blocks when the total passes the bound. The index is rebuilt from
the directory at start, so a remount finds its warm cache again.

A handful of the most recent blocks also stay in memory, so that the kernel's
128 KiB reads of a block that was just fetched do not each go to disk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Hashable
from pathlib import Path

import cachetools
import trio

BLOCK_SIZE = 1024 * 1024
_HOT_BYTES = 32 * BLOCK_SIZE

BlockId = tuple[str, int]  # (object id, block index)


def object_id(key: Hashable, version: str) -> str:
    return hashlib.sha256(f"{key!r}\0{version}".encode()).hexdigest()[:32]


class _EvictingLRU(cachetools.LRUCache):
    """An LRU of block sizes that deletes a block's file when it is evicted."""

    def __init__(self, maxsize: int, on_evict):
        super().__init__(maxsize, getsizeof=lambda size: size)
        self._on_evict = on_evict

    def popitem(self):
        block, size = super().popitem()
        self._on_evict(block)
        return block, size


class BlockCache:
    """Protects: the block index and the hot set; used from the trio thread only."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = root / "blocks"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max(max_bytes, 4 * BLOCK_SIZE)
        self._index = _EvictingLRU(self.max_bytes, self._unlink)
        self._hot: cachetools.LRUCache = cachetools.LRUCache(_HOT_BYTES, getsizeof=len)
        self._load_index()

    @property
    def used_bytes(self) -> int:
        return int(self._index.currsize)

    def _path(self, block: BlockId) -> Path:
        return self.root / block[0] / str(block[1])

    def _load_index(self) -> None:
        found = []
        for obj in os.scandir(self.root):
            if not obj.is_dir():
                continue
            for blk in os.scandir(obj.path):
                if blk.name.isdigit():
                    st = blk.stat()
                    found.append((st.st_atime, (obj.name, int(blk.name)), st.st_size))
                else:  # a temporary file left by a crash
                    os.unlink(blk.path)
        for _, block, size in sorted(found):
            self._index[block] = size

    def _unlink(self, block: BlockId) -> None:
        self._hot.pop(block, None)
        try:
            os.unlink(self._path(block))
        except FileNotFoundError:
            pass

    def has(self, block: BlockId) -> bool:
        return block in self._index

    async def put(self, block: BlockId, data: bytes) -> None:
        path = self._path(block)

        def write() -> None:
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f"{block[1]}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)

        await trio.to_thread.run_sync(write)
        self._index[block] = len(data)
        self._hot[block] = data

    async def read(self, block: BlockId, start: int, length: int) -> bytes | None:
        """Bytes of a cached block, or None when it was evicted meanwhile."""
        if self._index.get(block) is None:  # get() also marks it most recently used
            return None
        data = self._hot.get(block)
        if data is not None:
            return data[start:start + length]
        path = self._path(block)

        def pread() -> bytes | None:
            try:
                with open(path, "rb") as fh:
                    return os.pread(fh.fileno(), length, start)
            except FileNotFoundError:
                return None

        return await trio.to_thread.run_sync(pread)

    def drop_object(self, obj: str) -> None:
        """Forget every block of an object (its remote file changed or went away)."""
        for block in [b for b in self._index if b[0] == obj]:
            del self._index[block]
            self._hot.pop(block, None)
        shutil.rmtree(self.root / obj, ignore_errors=True)
