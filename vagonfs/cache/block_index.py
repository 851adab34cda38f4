"""The index at the end of each block cache file: which of its blocks are whole.

A cached block is served only if its object's index says it is whole, so the
index is what turns a crash at any point into "not cached", never a wrong
block. Its record format and the rules that make that hold are here, apart
from the blocks' bytes (``vagonfs.cache.block_files``), which only call it.

An index record says "block ``i`` holds this many bytes with this checksum"
(or that it is gone); it is appended only after the block's bytes are
written, and carries its own checksum and ``data_end``, so the last record
of a file says where its index starts. A record torn or lost by a crash means
"not cached", never a wrong block; a file whose last record is torn is
dropped whole. The block's checksum (xxh3-64, an order of magnitude faster
than zlib's CRC-32, which would cost more than the disk read itself) is the
block's as it came from the store: a block read back is served only if its
length is what the file's size says and its checksum matches, so a block torn
by a power cut or a full disk, or changed by anyone, is dropped and fetched
again.

Appends to an index take one lock (``_appending``), so writer threads never
interleave records.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import time

import xxhash

# block index, length (0: the block is gone), block checksum, when written
# (ns, the order of eviction after a restart), where the index starts, then
# the xxh3 of those fields
_RECORD = struct.Struct("<IIQQQ")
_RECORD_SIZE = _RECORD.size + 8
_appending = threading.Lock()


def record(index: int, size: int, checksum: int, end: int, stamp: int | None = None) -> bytes:
    fields = _RECORD.pack(index, size, checksum, time.time_ns() if stamp is None else stamp, end)
    return fields + xxhash.xxh3_64_digest(fields)


def append(fd: int, records: bytes, end: int) -> None:
    """Records after the file's last one (the first at ``end``). ``fd`` is
    opened without ``O_DIRECT``: records are not aligned."""
    with _appending:
        at = max(os.fstat(fd).st_size, end)
        if os.pwrite(fd, records, at) != len(records):
            os.ftruncate(fd, at)  # a part of a record would put every later one out of step
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def last_record_end(fd: int) -> int | None:
    """``data_end`` as the file's last record says, if it is whole."""
    size = os.fstat(fd).st_size
    if size < _RECORD_SIZE:
        return None
    parsed = _parse(os.pread(fd, _RECORD_SIZE, size - _RECORD_SIZE))
    return None if parsed is None else parsed[4]


def _parse(raw: bytes) -> tuple[int, int, int, int, int] | None:
    fields = raw[:_RECORD.size]
    if len(raw) != _RECORD_SIZE or raw[_RECORD.size:] != xxhash.xxh3_64_digest(fields):
        return None
    return _RECORD.unpack(fields)


def read_index(path: str) -> tuple[dict[int, tuple[int, int, int]], int, int]:
    """The blocks an object's index says are whole, by index: (size, checksum,
    when written); how many records it holds; and where it starts. A torn or
    damaged record is skipped: its block counts as not cached. A file whose
    last record is torn has no index found."""
    blocks: dict[int, tuple[int, int, int]] = {}
    with open(path, "rb") as fh:
        end = last_record_end(fh.fileno())
        if end is None:
            return blocks, 0, 0
        fh.seek(end)
        raw = fh.read()
    for at in range(0, len(raw) - _RECORD_SIZE + 1, _RECORD_SIZE):
        parsed = _parse(raw[at:at + _RECORD_SIZE])
        if parsed is None:
            continue
        index, size, checksum, stamp, _ = parsed
        if size:
            blocks[index] = (size, checksum, stamp)
        else:
            blocks.pop(index, None)
    return blocks, -(-len(raw) // _RECORD_SIZE), end


def rewrite_index(path: str, blocks: dict[int, tuple[int, int, int]], end: int) -> None:
    """The index with one record per whole block, written over the old one
    (best effort: the old one serves as well, only longer). A crash half-way
    leaves old records after the new ones: each still says what its block
    was, and a block since punched out fails its checksum."""
    records = b"".join(record(index, size, checksum, end, stamp)
                       for index, (size, checksum, stamp) in blocks.items())
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return
    try:
        with _appending:
            if os.pwrite(fd, records, end) == len(records):
                os.ftruncate(fd, end + len(records))
    except OSError:
        pass
    finally:
        os.close(fd)
