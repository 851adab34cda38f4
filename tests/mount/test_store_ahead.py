"""Store-ahead (README, docs/SEMANTICS.md): blocks read ahead go to the kernel's
page cache, so a sequential read makes fewer FUSE reads; and no page of a
version the mount no longer shows is read.

Each file version here is a distinct byte pattern, so a read that mixed two
versions is told apart from a read of either one by its hash.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time

import pytest

from vagonfs.control.mounttable import is_mounted

from support import wait_until

from .conftest import sh, vagonfs

MiB = 1024 * 1024
SIZE = 24 * MiB
FRESH = ("--attr-timeout", "0", "--dir-cache-time", "0")  # a change elsewhere is seen at once
# the kernel's default read-ahead: FUSE reads of 128 KiB, for which store-ahead
# is on (at a root mount's default, 1 MiB, only blocks from the disk cache are
# stored: cache/store_ahead.py)
SMALL_READS = ("--read-ahead", "128K")


def version(tag: bytes, size: int = SIZE) -> bytes:
    """A file's content whose every MiB says which version and which MiB it is."""
    return b"".join((tag + b"%08d" % i).ljust(4096, b".") * (MiB // 4096)
                    for i in range(size // MiB))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_all(path) -> bytes:
    """The file as ``dd`` reads it, 1 MiB at a time."""
    return subprocess.run(["dd", f"if={path}", "bs=1M", "status=none"], check=True,
                          capture_output=True, timeout=120).stdout


def put(mount, name: str, data: bytes) -> None:
    """Written through ``mount`` and confirmed by the store."""
    (mount.path / name).write_bytes(data)
    mount.wait_uploaded()


def kernel(mount) -> dict[str, int]:
    return mount.status()["kernel"]


def fuse_reads(mount) -> int:
    return mount.status()["kernel_requests"].get("read", 0)


def two_mounts(mount_factory, emulator_factory, reader_options=FRESH + SMALL_READS):
    """A writer and a reader mount of one Vagon folder, each with its own
    cache. Vagon: a file rewritten at its size has a new version (on the
    tenant store, within the same second, it has not: docs/SEMANTICS.md)."""
    emulator = emulator_factory()
    return (mount_factory("vagon", emulator=emulator, subpath="shared"),
            mount_factory("vagon", emulator=emulator, subpath="shared",
                          options=reader_options))


def read_waiting_for_stores(mount, path) -> bytes:
    """The file read 1 MiB at a time, each read once the daemon has handed the
    kernel every block it had to store: how many reads reach the daemon then
    does not hang on how fast the machine is."""
    data = b""
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(MiB):
            data += chunk
            wait_until(lambda: not kernel(mount).get("page_cache_pending_bytes"),
                       message=lambda: str(kernel(mount)))
    return data


@pytest.mark.parametrize("options,stored", [((), True), (("--no-store-ahead",), False)],
                         ids=["store-ahead", "no-store-ahead"])
def test_a_sequential_read_makes_fewer_fuse_reads_with_store_ahead(
        mount_factory, emulator_factory, options, stored):
    writer, reader = two_mounts(mount_factory, emulator_factory, SMALL_READS + options)
    data = version(b"one")
    put(writer, "big.bin", data)
    assert sha(read_waiting_for_stores(reader, reader.path / "big.bin")) == sha(data)
    counts, reads = kernel(reader), fuse_reads(reader)
    if stored:
        assert counts["page_cache_stores"] >= SIZE // MiB // 2, counts
        # the kernel found most of the file in its page cache: most of it
        # never became FUSE reads
        assert reads < SIZE // (128 * 1024) // 2, (reads, counts)
        assert counts["fuse_read_bytes"] < SIZE // 2, counts
    else:
        assert "page_cache_stores" not in counts, counts
        assert reads >= SIZE // (128 * 1024), (reads, counts)
        assert counts["fuse_read_bytes"] >= SIZE, counts


def test_a_reader_in_1_mib_reads_stores_from_the_disk_cache_only(mount_factory,
                                                                 emulator_factory):
    """A root mount's read-ahead (1 MiB FUSE reads): blocks just received are
    not stored (that would cost more than the reads it spares), so a cold
    read is all FUSE reads, as without store-ahead; blocks in the disk cache
    are, by the thread that reads them (a remount empties memory, not the
    disk cache), so a warm read is mostly not."""
    writer, reader = two_mounts(mount_factory, emulator_factory, ("--read-ahead", "1M"))
    data = version(b"one")
    put(writer, "big.bin", data)
    assert sha(read_all(reader.path / "big.bin")) == sha(data)
    counts = kernel(reader)
    assert not [name for name in counts if name.startswith(("page_cache_store", "store_ahead"))
                and counts[name]], counts
    assert SIZE // MiB <= fuse_reads(reader) < SIZE // (128 * 1024), counts
    assert counts["fuse_read_bytes"] >= SIZE, counts
    wait_until(lambda: reader.status()["cache"]["used"] >= SIZE)
    reader.remount()
    assert sha(read_waiting_for_stores(reader, reader.path / "big.bin")) == sha(data)
    counts = kernel(reader)
    assert counts["page_cache_stores"] >= SIZE // MiB // 2, counts
    assert fuse_reads(reader) < SIZE // MiB // 2, counts
    assert counts["fuse_read_bytes"] < SIZE // 2, counts


def test_a_version_written_elsewhere_between_two_reads_is_read_whole(
        mount_factory, emulator_factory):
    writer, reader = two_mounts(mount_factory, emulator_factory)
    one, two = version(b"one"), version(b"two")
    put(writer, "f.bin", one)
    assert sha(read_all(reader.path / "f.bin")) == sha(one)
    assert kernel(reader)["page_cache_stores"] > 0
    put(writer, "f.bin", two)
    assert sha(read_all(reader.path / "f.bin")) == sha(two)
    assert sha(read_all(reader.path / "f.bin")) == sha(two)  # from the page cache now


def test_a_reader_open_across_a_change_elsewhere_reads_one_version(
        mount_factory, emulator_factory):
    """The reader's handle stays open while the writer replaces the file and a
    lookup on the reader's mount sees it: what the handle reads after is of
    the version it began with, or ESTALE (docs/SEMANTICS.md), never the new
    version's bytes; a new open reads the new version."""
    writer, reader = two_mounts(mount_factory, emulator_factory)
    one, two = version(b"one"), version(b"two")
    put(writer, "f.bin", one)
    path = reader.path / "f.bin"
    with open(path, "rb", buffering=0) as fh:
        first = fh.read(4 * MiB)  # in order: read-ahead stores what follows
        put(writer, "f.bin", two)
        os.stat(path)  # the reader's mount looks it up and sees the new version
        rest = b""
        try:
            while chunk := fh.read(MiB):
                rest += chunk
        except OSError as exc:
            assert exc.errno == 116, exc  # ESTALE
    assert first + rest == one[:len(first) + len(rest)]
    assert sha(read_all(path)) == sha(two)


def test_truncated_and_written_again_here_reads_what_was_written(
        mount_factory, emulator_factory):
    writer, reader = two_mounts(mount_factory, emulator_factory)
    one = version(b"one")
    put(writer, "f.bin", one)
    path = reader.path / "f.bin"
    assert sha(read_all(path)) == sha(one)
    assert kernel(reader)["page_cache_stores"] > 0
    two = version(b"two", 8 * MiB)
    sh(f"truncate -s 0 {path}")
    with open(path, "r+b") as fh:
        fh.write(two)
    assert sha(read_all(path)) == sha(two)
    reader.wait_uploaded()
    assert sha(read_all(path)) == sha(two)


def test_a_file_deleted_elsewhere_then_made_again_reads_the_new_one(
        mount_factory, emulator_factory):
    writer, reader = two_mounts(mount_factory, emulator_factory)
    one, two = version(b"one"), version(b"two", 12 * MiB)
    put(writer, "f.bin", one)
    path = reader.path / "f.bin"
    assert sha(read_all(path)) == sha(one)
    (writer.path / "f.bin").unlink()
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        open(path, "rb").close()
    put(writer, "f.bin", two)
    assert sha(read_all(path)) == sha(two)


def test_an_unmount_during_a_read_ends(mount_factory, emulator_factory):
    """Store-ahead stops while FUSE reads are still answered (a store can wait
    for a page the kernel is reading through the daemon), so ``vagonfs
    unmount`` in the middle of a read returns, and so does the reader."""
    writer, reader = two_mounts(mount_factory, emulator_factory)
    put(writer, "big.bin", version(b"one", 64 * MiB))
    dd = subprocess.Popen(["dd", f"if={reader.path / 'big.bin'}", "of=/dev/null", "bs=1M"],
                          stderr=subprocess.DEVNULL)
    try:
        result = vagonfs("unmount", str(reader.path), check=False)
        assert result.returncode == 0, result.stderr
        assert not is_mounted(reader.path)
    finally:
        dd.wait(timeout=60)
