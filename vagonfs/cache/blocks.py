"""Blocks of remote files kept in memory and on local disk.

Each object (a file version: ``<object>`` is a hash of the store key and the
version, so a file that changes remotely gets a new object and stale bytes are
never served, and no remote name ever becomes a local path) has one sparse
data file, ``blocks/<object>.data``, where block ``i`` is written with
``pwrite`` at ``i`` MiB, and an append-only index beside it,
``blocks/<object>.index``. Measured here, one file per block wrote at
150-450 MB/s where ``pwrite`` into one file does 0.7-1.9 GB/s, and separate
1 MiB files got no read-ahead from the kernel when read back.

An index record says "block ``i`` holds this many bytes with this checksum"
(or that it is gone); it is appended only after the block's bytes are
written, and carries its own checksum, so a record torn or lost by a crash
means "not cached", never a wrong block. (Appending a record costs ~13 us
here where an SQLite insert costs ~66 us, and needs no lock shared by the
writer threads.) The block's checksum (xxh3-64: 15 GB/s here, where zlib's
CRC-32 does 1.2 GB/s and would cost more than the disk read itself) is the
block's as it came from the store: a block read back is served only if its
length is what the file's size says and its checksum matches, so a block torn
by a power cut or a full disk, or changed by anyone, is dropped and fetched
again.

A least-recently-used index over the whole cache evicts whole blocks when the
total passes the bound: the block's range is punched out of its data file
(the disk space goes, the file keeps its size), and the data file and its
index go once no block of the object is left. The index is rebuilt from the
record files at start, least recently written first, so a remount finds its
warm cache again; a cache in the former layout (a folder per object, a file
per block) is removed then.

A block is first kept in memory, where readers take it at once; the disk
write comes after, in a worker thread, off the reader's path. The most recent
blocks stay in memory (``_HOT_BYTES``), so the kernel's reads of a block that
was just fetched or read do not each go to disk; blocks are served as slices
of those buffers, never copied.

A full cache disk is a degraded mode, not a failure: the first ``ENOSPC``
(or ``EDQUOT``) is logged once, the bound drops to what the disk was found
to hold (less a margin for spools), least recently used blocks go, and blocks
that do not fit are served from memory and not kept. Any other write error
is logged once per kind and the block is not kept; nothing here ends a read.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import functools
import hashlib
import logging
import os
import shutil
import struct
import time
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path

import cachetools
import trio
import xxhash

log = logging.getLogger("vagonfs.cache")

BLOCK_SIZE = 1024 * 1024
_HOT_BYTES = 64 * BLOCK_SIZE
# blocks handed to readers whose disk write has not finished: a disk slower
# than the network makes the fetches wait here, so memory stays bounded
_PENDING_WRITES = 32
# room left on a full disk for the write-back spools once blocks were evicted
_FULL_DISK_MARGIN = 8 * BLOCK_SIZE
_DATA, _INDEX = ".data", ".index"
# block index, length (0: the block is gone), block checksum, when written
# (ns, the order of eviction after a restart), then the xxh3 of those fields
_RECORD = struct.Struct("<IIQQ")
_RECORD_SIZE = _RECORD.size + 8
_PUNCH_HOLE = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE (linux/falloc.h)

BlockId = tuple[str, int]  # (object id, block index)
Buffer = bytes | bytearray

# os has no fallocate(2) with a mode; the C library's is called directly
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]


@functools.lru_cache(maxsize=4096)  # asked on every read: a hash per read costs ~5%
def object_id(key: Hashable, version: str) -> str:
    return hashlib.sha256(f"{key!r}\0{version}".encode()).hexdigest()[:32]


class BlockCache:
    """Protects: the index, the hot set and the pending writes; trio thread only
    (worker threads get a path and a buffer, never these)."""

    def __init__(self, root: Path, max_bytes: int):
        self.root = root / "blocks"
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max(max_bytes, 4 * BLOCK_SIZE)
        self.disk_full = False  # the disk filled up during this mount (for status)
        self._limit = self.max_bytes  # lowered to what the disk holds once it is full
        self._index: OrderedDict[BlockId, tuple[int, int]] = OrderedDict()  # (size, checksum)
        self._used = 0
        self._blocks_of: collections.Counter[str] = collections.Counter()  # in the index
        self._writing: collections.Counter[str] = collections.Counter()  # disk writes going on
        self._hot: cachetools.LRUCache = cachetools.LRUCache(_HOT_BYTES, getsizeof=len)
        self._pending: dict[BlockId, Buffer] = {}
        self._write_slots = trio.Semaphore(_PENDING_WRITES)
        self._writers = trio.CapacityLimiter(4)
        # reads of one file's blocks in parallel: the disk gets several requests
        # at once (1.1-1.4 GB/s here with 8 threads, 0.3-1.1 GB/s with one)
        self._readers = trio.CapacityLimiter(8)
        self._loading: dict[BlockId, trio.Event] = {}
        self._failed_errnos: set[int | None] = set()  # write errors logged: once each
        self._no_punch_logged = False
        self._load_index()

    @property
    def used_bytes(self) -> int:
        return self._used

    def _load_index(self) -> None:
        found = []
        names = {entry.name: entry for entry in os.scandir(self.root)}
        for name, entry in names.items():
            obj, ext = os.path.splitext(name)
            if entry.is_dir(follow_symlinks=False):  # the former layout: a file per block
                shutil.rmtree(entry.path, ignore_errors=True)
            elif ext == _INDEX and obj + _DATA in names:
                blocks, records = _read_index(Path(entry.path))
                if not blocks:
                    _unlink_object(self.root, obj)
                elif len(blocks) < records:  # rewritten without its dead records
                    _rewrite_index(Path(entry.path), blocks)
                found += [(stamp, (obj, index), size, checksum)
                          for index, (size, checksum, stamp) in blocks.items()]
            elif not (ext == _DATA and obj + _INDEX in names):
                # a file of an object whose index was lost (no block is known
                # to be whole), or a temporary file left by a crash
                os.unlink(entry.path)
        for _, block, size, checksum in sorted(found):
            self._add(block, size, checksum)
        self._evict(0)

    def _add(self, block: BlockId, size: int, checksum: int) -> None:
        old = self._index.pop(block, None)
        if old is None:
            self._blocks_of[block[0]] += 1
        self._used += size - (old[0] if old else 0)
        self._index[block] = (size, checksum)

    def _remove(self, block: BlockId) -> None:
        """Out of the index and off the disk: its range punched out of the data
        file, or the object's files gone with its last block."""
        size, _ = self._index.pop(block)
        self._used -= size
        obj = block[0]
        self._blocks_of[obj] -= 1
        if self._blocks_of[obj] == 0:
            del self._blocks_of[obj]
            if not self._writing[obj]:
                _unlink_object(self.root, obj)
                return
        try:
            _forget_block(self.root, block)
        except OSError as exc:
            self._punch_failed(exc)

    def _punch_failed(self, exc: OSError) -> None:
        if not self._no_punch_logged:
            self._no_punch_logged = True
            log.warning("cannot free evicted blocks in %s (%s): their disk space comes back "
                        "only when all of a file's blocks are gone",
                        self.root, exc.strerror or exc)

    def _evict(self, room: int) -> None:
        """Drop least recently used blocks until ``room`` more bytes fit."""
        while self._index and self._used + room > self._limit:
            block = next(iter(self._index))
            self._hot.pop(block, None)
            self._remove(block)

    def has(self, block: BlockId) -> bool:
        """In memory or on disk (unchecked: ``load`` checks)."""
        return block in self._hot or block in self._pending or block in self._index

    def get(self, block: BlockId) -> Buffer | None:
        """A block that is in memory, marked most recently used."""
        data = self._hot.get(block)
        if data is None:
            data = self._pending.get(block)
        if data is not None and block in self._index:
            self._index.move_to_end(block)
        return data

    def keep(self, block: BlockId, data: Buffer) -> None:
        """A block just fetched: in memory now, for readers; on disk after ``write``."""
        self._hot[block] = data
        self._pending[block] = data

    async def reserve_write(self) -> None:
        """Wait for room among pending disk writes; ``write`` gives it back."""
        await self._write_slots.acquire()

    async def write(self, block: BlockId) -> None:
        """Store a kept block on disk (after ``reserve_write``). Never raises for
        the disk's sake: a block that cannot be written is just not kept."""
        obj = block[0]
        try:
            data = self._pending.get(block)
            if data is None or len(data) > self._limit:
                return
            self._evict(len(data))
            self._writing[obj] += 1
            try:
                checksum = await trio.to_thread.run_sync(_write_block, self.root, block, data,
                                                         limiter=self._writers)
            except OSError as exc:
                self._write_failed(exc)
                return
            finally:
                self._writing[obj] -= 1
                if not self._writing[obj]:
                    del self._writing[obj]
            if self._pending.get(block) is data:  # not dropped meanwhile
                self._add(block, len(data), checksum)
                self._evict(0)
            elif obj not in self._blocks_of and obj not in self._writing:
                _unlink_object(self.root, obj)
            else:
                try:
                    _forget_block(self.root, block)
                except OSError as exc:
                    self._punch_failed(exc)
        finally:
            if data is not None and self._pending.get(block) is data:
                del self._pending[block]
            self._write_slots.release()

    def _write_failed(self, exc: OSError) -> None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            self._limit = max(0, self._used - _FULL_DISK_MARGIN)
            self._evict(0)
            if not self.disk_full:
                self.disk_full = True
                log.warning("the cache disk is full (%s): the block cache shrinks to %d MiB "
                            "for this mount and reads go on from the network",
                            self.root, self._limit >> 20)
        elif exc.errno not in self._failed_errnos:
            self._failed_errnos.add(exc.errno)
            log.warning("cannot write the block cache in %s (%s): reads go on from the "
                        "network", self.root, exc.strerror or exc)

    def on_disk_only(self, block: BlockId) -> bool:
        return block in self._index and block not in self._hot and block not in self._loading

    async def load(self, block: BlockId, length: int) -> Buffer | None:
        """A block from disk, checked, now in memory; None when it is not
        there or did not pass (then it is dropped, to be fetched again).
        Loads of one block at the same time read it once."""
        loading = self._loading.get(block)
        if loading is not None:
            await loading.wait()
            return self.get(block)
        entry = self._index.get(block)
        if entry is None:
            return None
        self._index.move_to_end(block)
        size, checksum = entry
        if size != length:
            data, problem = None, f"holds {size} bytes where the file's size says {length}"
        else:
            self._loading[block] = trio.Event()
            try:
                data, problem = await trio.to_thread.run_sync(
                    _read_block, self.root, block, length, checksum, limiter=self._readers)
            finally:
                self._loading.pop(block).set()
        if data is not None:
            self._hot[block] = data
            return data
        if self._index.get(block) == entry:
            self._remove(block)
            if problem:
                log.warning("cache block %s/%d %s: dropped, fetching it again",
                            block[0], block[1], problem)
        return None

    def drop_object(self, obj: str) -> None:
        """Forget every block of an object (its remote file changed or went away)."""
        for block in [b for b in self._index if b[0] == obj]:
            self._used -= self._index.pop(block)[0]
        self._blocks_of.pop(obj, None)
        for block in [b for b in self._hot if b[0] == obj]:
            del self._hot[block]
        for block in [b for b in self._pending if b[0] == obj]:
            del self._pending[block]
        if not self._writing[obj]:  # else the last write to end removes them
            _unlink_object(self.root, obj)


# -- on disk (data files in worker threads; index records and punches are small) ----

def _object_path(root: Path, obj: str, ext: str) -> str:
    return os.path.join(root, obj + ext)


def _unlink_object(root: Path, obj: str) -> None:
    for ext in (_INDEX, _DATA):  # the index first: data without it is never read
        try:
            os.unlink(_object_path(root, obj, ext))
        except FileNotFoundError:
            pass


def _record(index: int, size: int, checksum: int, stamp: int | None = None) -> bytes:
    fields = _RECORD.pack(index, size, checksum, time.time_ns() if stamp is None else stamp)
    return fields + xxhash.xxh3_64_digest(fields)


def _append_record(root: Path, obj: str, record: bytes, create: bool = True) -> None:
    flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if create else 0)
    fd = os.open(_object_path(root, obj, _INDEX), flags, 0o600)
    try:
        if os.write(fd, record) != len(record):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    finally:
        os.close(fd)


def _punch(fd: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, _PUNCH_HOLE, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _forget_block(root: Path, block: BlockId) -> None:
    """The block's record says it is gone, then its bytes go. A crash in
    between, or a disk too full for the record, leaves a record whose block
    fails its checksum: dropped if ever read, never served."""
    obj, index = block
    try:
        _append_record(root, obj, _record(index, 0, 0), create=False)
    except OSError:
        pass
    try:
        fd = os.open(_object_path(root, obj, _DATA), os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        _punch(fd, index * BLOCK_SIZE, BLOCK_SIZE)
    finally:
        os.close(fd)


def _write_block(root: Path, block: BlockId, data: Buffer) -> int:
    """In a worker thread: the block's bytes at its offset, then its record;
    its checksum. Bytes a failed write left are punched out again."""
    obj, index = block
    checksum = xxhash.xxh3_64_intdigest(data)
    offset = index * BLOCK_SIZE
    fd = os.open(_object_path(root, obj, _DATA), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        view, done = memoryview(data), 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)
        _append_record(root, obj, _record(index, len(data), checksum))
    except BaseException:
        try:
            _punch(fd, offset, BLOCK_SIZE)
        except OSError:
            pass
        raise
    finally:
        os.close(fd)
    return checksum


def _read_block(root: Path, block: BlockId, length: int,
                checksum: int) -> tuple[bytes | None, str]:
    """In a worker thread: the block's bytes if whole and unchanged, else why not."""
    try:
        fd = os.open(_object_path(root, block[0], _DATA), os.O_RDONLY)
    except FileNotFoundError:
        return None, ""  # evicted meanwhile
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    try:
        data = os.pread(fd, length, block[1] * BLOCK_SIZE)  # no buffer to zero first
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    finally:
        os.close(fd)
    if len(data) != length:
        return None, f"has {len(data)} bytes where {length} were stored"
    if xxhash.xxh3_64_intdigest(data) != checksum:
        return None, "does not match its checksum"
    return data, ""


def _read_index(path: Path) -> tuple[dict[int, tuple[int, int, int]], int]:
    """The blocks an index file says are whole, by index: (size, checksum, when
    written); and how many records it holds. A torn or damaged record is skipped:
    its block counts as not cached."""
    raw = path.read_bytes()
    blocks: dict[int, tuple[int, int, int]] = {}
    for at in range(0, len(raw) - _RECORD_SIZE + 1, _RECORD_SIZE):
        fields = raw[at:at + _RECORD.size]
        if raw[at + _RECORD.size:at + _RECORD_SIZE] != xxhash.xxh3_64_digest(fields):
            continue
        index, size, checksum, stamp = _RECORD.unpack(fields)
        if size:
            blocks[index] = (size, checksum, stamp)
        else:
            blocks.pop(index, None)
    return blocks, -(-len(raw) // _RECORD_SIZE)


def _rewrite_index(path: Path, blocks: dict[int, tuple[int, int, int]]) -> None:
    """The index with one record per whole block, replacing the old one whole
    (best effort: the old one serves as well, only longer)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(b"".join(_record(index, size, checksum, stamp)
                                 for index, (size, checksum, stamp) in blocks.items()))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
