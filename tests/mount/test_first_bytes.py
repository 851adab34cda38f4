"""What a first read, random reads and a sequential read fetch, in bytes and
GETs the emulator counts (docs/SEMANTICS.md, "Reads"): a read out of order
fetches its own bytes, a reader in order whole blocks; and the bytes are
right whatever the mix."""

from __future__ import annotations

import hashlib
import os
import random

from .conftest import sh

MiB = 1024 * 1024
SIZE = 24 * MiB
PIECE_MOST = 128 * 1024  # what one read out of order may bring (issue 26)


def stored_file(mount_factory, emulator_factory):
    """A file written by one mount and confirmed by the store; the emulator,
    a second mount with its own (empty) cache, and the file's bytes."""
    emulator = emulator_factory()
    writer = mount_factory("vagon", emulator=emulator, subpath="shared")
    data = os.urandom(SIZE)
    (writer.path / "big").write_bytes(data)
    writer.wait_uploaded()
    reader = mount_factory("vagon", emulator=emulator, subpath="shared")
    os.stat(reader.path / "big")  # its lookup, before the counts start
    emulator.reset_stats()
    return emulator, reader, data


def fetched(emulator) -> tuple[int, int]:
    """GETs of file bytes and bytes the emulator sent (bodies, headers and
    the one download link's reply)."""
    stats = emulator.stats()
    return stats["requests"].get("s3.get_object", 0), stats["bytes_out"]


def random_reads(path, data: bytes, offsets) -> None:
    """4 KiB preads at ``offsets`` with the kernel's read-ahead off for the
    file (as a database does), each checked."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for offset in offsets:
            assert os.pread(fd, 4096, offset) == data[offset:offset + 4096], offset
    finally:
        os.close(fd)


def test_the_first_4_kib_of_a_file_fetch_no_whole_block(mount_factory, emulator_factory):
    emulator, mount, data = stored_file(mount_factory, emulator_factory)
    assert bytes.fromhex(sh(f"head -c 4096 {mount.path}/big | xxd -p | tr -d '\\n'")) == \
        data[:4096]
    gets, sent = fetched(emulator)
    assert gets == 1
    assert sent <= PIECE_MOST  # the kernel's first read (16 KiB here), not the 1 MiB block


def test_random_4_kib_reads_fetch_at_most_128_kib_each(mount_factory, emulator_factory):
    emulator, mount, data = stored_file(mount_factory, emulator_factory)
    offsets = [i * 4096 for i in random.Random(26).sample(range(SIZE // 4096), 20)]
    random_reads(mount.path / "big", data, offsets)
    gets, sent = fetched(emulator)
    assert gets <= len(offsets)
    assert sent <= len(offsets) * PIECE_MOST


def test_a_sequential_read_after_random_ones_gets_whole_blocks_and_keeps_them(
        mount_factory, emulator_factory):
    emulator, mount, data = stored_file(mount_factory, emulator_factory)
    offsets = [i * 4096 for i in random.Random(27).sample(range(SIZE // 4096), 10)]
    random_reads(mount.path / "big", data, offsets)
    pieces, _ = fetched(emulator)
    emulator.reset_stats()
    whole = sh(f"sha256sum {mount.path}/big").split()[0]
    assert whole == hashlib.sha256(data).hexdigest()
    gets, sent = fetched(emulator)
    # one piece for cat's first read, then the file in whole blocks: windows
    # of 1, 2, 4 ... blocks, some split into GETs of 4 side by side
    assert gets <= 1 + 12
    assert sent <= SIZE + 2 * MiB
    emulator.reset_stats()
    # the blocks are in the cache now: random reads of them fetch nothing
    random_reads(mount.path / "big", data, offsets)
    assert fetched(emulator) == (0, 0)
    assert pieces <= len(offsets)
