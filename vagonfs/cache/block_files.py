"""The block cache on disk: one sparse file per object, its blocks then its index.

Each object (a file version) has one file, ``<object>.blocks``. Block ``i``
is written at ``i`` MiB; the object's *index* follows its last block, from
``data_end`` (the object's size rounded up to whole blocks), as records
appended one after another. One file per block wrote several times slower
than ``pwrite`` into one file, and separate 1 MiB files got no read-ahead from
the kernel when read back. The index lives in the same file because making a
file is what a small object costs most (an inode's allocation, a large share
of what a small file copied down costs: a second file per object for its
index made ``rsync`` of many small files down slower).

A block is read back only as its index says (``vagonfs.cache.block_index``:
the records after ``data_end``, and why a crash never serves a wrong block).
An evicted block's range is punched out of its file (the disk space goes, the
file keeps its size).

Blocks are read and written in worker threads; index records and punches
are small and also done on the trio thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import mmap
import os
import shutil
from pathlib import Path

import xxhash

from vagonfs.cache import block_index
from vagonfs.runtime.buffers import ALIGN, aligned_buffer, open_direct


BLOCK_SIZE = 1024 * 1024
BlockId = tuple[str, int]  # (object id, block index)
Buffer = bytes | bytearray | memoryview

_SUFFIX = ".blocks"
CACHEDIR_TAG = "CACHEDIR.TAG"
_CACHEDIR_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"  # bford.info/cachedir
_PUNCH_HOLE = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE (linux/falloc.h)

# os has no fallocate(2) with a mode; the C library's is called directly
_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]


def tag_as_cache(root: Path) -> None:
    """Mark the blocks folder with a ``CACHEDIR.TAG``, so backup tools that
    honour it (``tar --exclude-caches``, borg, restic, ...) leave out bytes
    the store still has. Only this folder: the spools and the journal beside
    it hold writes not yet uploaded. A disk that cannot take the tag goes
    without it."""
    path = root / CACHEDIR_TAG
    if not path.exists():
        with contextlib.suppress(OSError):
            path.write_text(_CACHEDIR_SIGNATURE + "\n# vagonfs's cache of downloaded blocks: "
                            "fetched again when needed. See https://bford.info/cachedir/\n")


def stored_blocks(root: Path) -> list[tuple[int, BlockId, int, int]]:
    """Every whole block on disk as (when written, block, size, checksum).
    Indexes with dead records are rewritten without them; what cannot be
    trusted is removed: a file whose index was lost (no block is known to be
    whole), a temporary file left by a crash, a cache in a former layout (a
    folder per object, a file per block; an index file beside a data file)."""
    found = []
    for entry in os.scandir(root):
        obj, ext = os.path.splitext(entry.name)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif entry.name == CACHEDIR_TAG:
            continue
        elif ext == _SUFFIX:
            blocks, records, data_end = block_index.read_index(entry.path)
            if not blocks:
                unlink_object(root, obj)
            elif len(blocks) < records:
                block_index.rewrite_index(entry.path, blocks, data_end)
            found += [(stamp, (obj, index), size, checksum)
                      for index, (size, checksum, stamp) in blocks.items()]
        else:
            os.unlink(entry.path)
    return found


def object_path(root: Path, obj: str) -> str:
    return os.path.join(root, obj + _SUFFIX)


def data_end(size: int) -> int:
    """Where the index of an object of ``size`` bytes starts."""
    return max(1, -(-size // BLOCK_SIZE)) * BLOCK_SIZE


def unlink_object(root: Path, obj: str) -> None:
    try:
        os.unlink(object_path(root, obj))
    except FileNotFoundError:
        pass


def punch(fd: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, _PUNCH_HOLE, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def forget_block(root: Path, block: BlockId) -> None:
    """The block's record says it is gone, then its bytes go. A crash in
    between, or a disk too full for the record, leaves a record whose block
    fails its checksum: dropped if ever read, never served."""
    obj, index = block
    try:
        fd = os.open(object_path(root, obj), os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        end = block_index.last_record_end(fd)
        if end is not None:
            try:
                block_index.append(fd, block_index.record(index, 0, 0, end), end)
            except OSError:
                pass
        punch(fd, index * BLOCK_SIZE, BLOCK_SIZE)
    finally:
        os.close(fd)


def write_blocks(root: Path, blocks: list[tuple[BlockId, Buffer, int]]
                 ) -> list[int | OSError]:
    """In a worker thread: each (block, bytes, ``data_end`` of its object) at
    its offset, then the records of those written, an object's file opened
    once for its blocks in a row. For each block its checksum, or the error
    that kept it out (with any of its bytes written punched out again)."""
    results: list[int | OSError] = []
    for obj, group in itertools.groupby(blocks, key=lambda item: item[0][0]):
        items = list(group)
        results += _write_object_blocks(root, obj, [(index, data) for (_, index), data, _ in items],
                                        items[0][2])
    return results


def _write_object_blocks(root: Path, obj: str, blocks: list[tuple[int, Buffer]],
                         end: int) -> list[int | OSError]:
    path = object_path(root, obj)
    whole = any(len(data) == BLOCK_SIZE for _, data in blocks)
    try:
        fd, direct = _open_data(path, whole)
    except OSError as exc:
        return [exc] * len(blocks)
    results: list[int | OSError] = []
    records = []
    try:
        for index, data in blocks:
            checksum = xxhash.xxh3_64_intdigest(data)
            view = _aligned_view(data) if direct else memoryview(data)
            try:
                done = 0
                while done < len(view):
                    done += os.pwrite(fd, view[done:], index * BLOCK_SIZE + done)
            except OSError as exc:
                _punch_quietly(fd, index)
                results.append(exc)
                continue
            results.append(checksum)
            records.append(block_index.record(index, len(data), checksum, end))
        if records:
            try:
                _append_records(path, fd, direct, b"".join(records), end)
            except OSError as exc:  # none of them is known to be whole
                for at, (index, _) in enumerate(blocks):
                    if not isinstance(results[at], OSError):
                        _punch_quietly(fd, index)
                        results[at] = exc
    finally:
        os.close(fd)
    return results


def _append_records(path: str, fd: int, direct: bool, records: bytes, end: int) -> None:
    if not direct:
        block_index.append(fd, records, end)
        return
    buffered = os.open(path, os.O_WRONLY)
    try:
        block_index.append(buffered, records, end)
    finally:
        os.close(buffered)


def _punch_quietly(fd: int, index: int) -> None:
    try:
        punch(fd, index * BLOCK_SIZE, BLOCK_SIZE)
    except OSError:
        pass


def _open_data(path: str, whole: bool) -> tuple[int, bool]:
    """The object's file opened for writing blocks, and whether with ``O_DIRECT``.

    Whole blocks go with ``O_DIRECT`` where the filesystem takes it: from our
    buffer to the disk without a second copy in the page cache. The kernel
    already keeps the file's pages for the mount itself, so a page-cached copy
    of the cache file would hold the same bytes twice in memory; and filling
    fresh page-cache pages is what a buffered write costs most (more than ten
    times the CPU of a direct write). Direct writes need
    an aligned address and length: buffers received for the cache are
    page-aligned (``aligned_buffer``); any other is copied into one. A tail
    block written with whole ones is padded to the alignment; the index keeps
    its real length. A trip with no whole block (a small file, as a copied
    folder's are) is written through the page cache: a direct write is a
    synchronous trip to the disk, and buffered writes made ``rsync`` of many
    small files down faster.
    """
    fd = open_direct(path, os.O_WRONLY | os.O_CREAT) if whole else None
    if fd is not None:
        return fd, True
    return os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), False


def _aligned_view(data: Buffer) -> memoryview:
    """``data`` as a view that ``O_DIRECT`` accepts: its own buffer padded to
    ``ALIGN`` when it is an ``aligned_buffer``, else a copy in one."""
    view = memoryview(data)
    if isinstance(view.obj, mmap.mmap) and view.c_contiguous and _address(view) % ALIGN == 0:
        return memoryview(view.obj)[:-(-len(view) // ALIGN) * ALIGN]
    copy = aligned_buffer(len(view))
    copy[:] = view
    return memoryview(copy.obj)[:-(-len(view) // ALIGN) * ALIGN]


def _address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def read_blocks(root: Path, blocks: list[tuple[BlockId, int, int]], arrived) -> None:
    """In a worker thread: each (block, length, checksum) read and checked in
    order, ``arrived(block, bytes or None, why not)`` told of each."""
    fd = None
    try:
        fd = os.open(object_path(root, blocks[0][0][0]), os.O_RDONLY)
    except FileNotFoundError:
        problem = ""  # evicted meanwhile
    except OSError as exc:
        problem = f"unreadable ({exc.strerror or exc})"
    try:
        for block, length, checksum in blocks:
            data, problem = (None, problem) if fd is None else _read_block(fd, block, length,
                                                                          checksum)
            arrived(block, data, problem)
    finally:
        if fd is not None:
            os.close(fd)


def read_block(root: Path, block: BlockId, length: int, checksum: int) -> bytes | None:
    """In a worker thread: one block's bytes if whole and unchanged, else None
    (evicted or damaged meanwhile: whoever reads it next through the cache
    finds out which, and drops it)."""
    try:
        fd = os.open(object_path(root, block[0]), os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_block(fd, block, length, checksum)[0]
    finally:
        os.close(fd)


def _read_block(fd: int, block: BlockId, length: int,
                checksum: int) -> tuple[bytes | None, str]:
    """The block's bytes if whole and unchanged, else why not."""
    try:
        data = os.pread(fd, length, block[1] * BLOCK_SIZE)  # no buffer to zero first
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    if len(data) != length:
        return None, f"has {len(data)} bytes where {length} were stored"
    if xxhash.xxh3_64_intdigest(data) != checksum:
        return None, "does not match its checksum"
    return data, ""
