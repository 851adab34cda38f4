"""Spools take writes at any offset; whole-page writes go to disk with O_DIRECT
(answered before they land, when the mount's write-behind queue runs) and the
rest buffered, and what is read back is always what was written last; a write
that failed on the way is kept and its error raised until it lands.
Spool files are made ahead and small ones kept for the next spool, never while
somebody still reads them, and never one the journal names."""

from __future__ import annotations

import errno
import os
import random
import resource
import signal

import pytest
import trio

from vagonfs.cache import spool as spool_module
from vagonfs.cache.spool import Spool, SpoolFiles
from vagonfs.errors import LocalDiskError
from vagonfs.runtime import buffers
from support import until

MiB = 1024 * 1024


@pytest.mark.parametrize("behind", [True, False], ids=["writes-behind", "no-queue"])
def test_direct_and_buffered_writes_on_one_file_read_back_as_written(tmp_path, behind):
    rng = random.Random(7)
    expected = bytearray()

    async def write(spool: Spool, offset: int, data: bytes) -> None:
        assert await spool.write(offset, data) == len(data)
        end = offset + len(data)
        expected.extend(b"\0" * max(0, end - len(expected)))
        expected[offset:end] = data

    async def main():
        async with trio.open_nursery() as nursery:
            files = SpoolFiles(tmp_path)
            if behind:
                await nursery.start(files.behind.run)
            await check(files.new())
            nursery.cancel_scope.cancel()

    async def check(spool: Spool) -> None:
        try:
            for index in range(4):  # what cp sends: whole MiBs, direct
                await write(spool, index * MiB, rng.randbytes(MiB))
            await write(spool, 4 * MiB, rng.randbytes(1000))  # a tail: buffered
            await write(spool, 100, rng.randbytes(200_000))  # unaligned over direct bytes
            await write(spool, 2 * MiB, rng.randbytes(256 * 1024))  # direct over buffered
            await write(spool, MiB - 4096, rng.randbytes(8192))  # small, inline
            for index in range(4, 8):  # whole MiBs over one another, in order
                await write(spool, 4 * MiB + 4096 * index, rng.randbytes(MiB))
            assert spool._direct_fd >= 0  # the whole MiBs did go direct (ext4, not tmpfs)
            assert spool.size == len(expected)
            assert await spool.read(0, spool.size + 10) == bytes(expected)
            with await spool.reader() as reader:
                assert reader.read() == bytes(expected)
        finally:
            spool.discard()

    trio.run(main)
    assert not os.listdir(tmp_path)


def test_a_write_that_fails_on_the_way_is_kept_and_its_error_raised_until_it_lands(tmp_path):
    """The file size limit (RLIMIT_FSIZE) refuses the disk writes past 2 MiB
    the way a failing disk would, after ``write`` has answered."""
    data = os.urandom(4 * MiB)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not the signal

    async def main():
        async with trio.open_nursery() as nursery:
            files = SpoolFiles(tmp_path)
            await nursery.start(files.behind.run)
            spool = files.new()
            resource.setrlimit(resource.RLIMIT_FSIZE, (2 * MiB, limit[1]))
            try:
                for index in range(4):  # all answered: the last two fail on the way
                    assert await spool.write(index * MiB, data[index * MiB:][:MiB]) == MiB
                with pytest.raises(LocalDiskError) as caught:
                    await spool.settle()  # what close and fsync wait on
                assert caught.value.errno == errno.EIO
                with pytest.raises(LocalDiskError):  # nothing reads the spool short of them
                    await spool.read(0, 4 * MiB)
                with pytest.raises(LocalDiskError):
                    await spool.reader()
            finally:
                resource.setrlimit(resource.RLIMIT_FSIZE, limit)
            await spool.settle()  # the disk takes them again: the kept writes land
            assert await spool.read(0, 4 * MiB + 1) == data
            spool.discard()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        signal.signal(signal.SIGXFSZ, handler)
    assert not os.listdir(tmp_path)


def test_a_filesystem_without_o_direct_gets_buffered_writes(tmp_path, monkeypatch):
    real_open = os.open

    def no_direct(path, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(22, "Invalid argument")  # as tmpfs answers
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_direct)
    monkeypatch.setattr(buffers, "_direct_refused", False)
    data = os.urandom(2 * MiB)

    async def main():
        spool = SpoolFiles(tmp_path).new()
        try:
            assert await spool.write(0, data) == len(data)
            assert await spool.read(0, len(data)) == data
        finally:
            spool.discard()

    trio.run(main)
    assert buffers._direct_refused


def inode(path) -> int:
    return os.stat(path).st_ino


def test_new_spools_are_files_made_ahead_and_small_ones_come_back_empty(tmp_path):
    async def main():
        files = SpoolFiles(tmp_path)
        files.adopt(set())  # as a mount starts: the folder sorted out, then stocked
        async with trio.open_nursery() as nursery:
            nursery.start_soon(files.keep_stocked)
            with trio.fail_after(10):  # made, and handed back by the worker thread
                await until(lambda: len(files._ready) >= spool_module.STOCK)
            made = {inode(p) for p in tmp_path.iterdir()}
            spool = files.new()
            assert inode(spool.path) in made  # no file was made for it
            assert not spool.path.name.startswith("free-")
            await spool.write(0, b"small file")
            kept = inode(spool.path)
            spool.discard()
            assert not spool.path.exists()
            again = [files.new() for _ in range(spool_module.STOCK // 2 + 1)]
            assert kept in {inode(s.path) for s in again}  # the same file, emptied
            assert all(s.size == 0 and s.path.stat().st_size == 0 for s in again)
            with trio.fail_after(10):  # below half: the stock is made up again
                await until(lambda: len(os.listdir(tmp_path)) >= spool_module.STOCK + len(again))
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_spool_still_read_or_big_is_removed_not_kept(tmp_path):
    async def main():
        files = SpoolFiles(tmp_path)
        read = files.new()
        await read.write(0, b"being uploaded")
        with await read.reader() as source:
            read.discard()  # e.g. deleted while its upload reads it
            assert source.read() == b"being uploaded"  # the open file keeps its bytes
        big = files.new()
        await big.write(0, os.urandom(spool_module.KEEP_MAX + 4096))
        big.discard()
        assert not os.listdir(tmp_path)

    trio.run(main)


def test_at_start_files_the_journal_does_not_name_are_emptied_and_kept(tmp_path):
    (tmp_path / "journaled").write_bytes(b"an upload to finish")
    (tmp_path / "orphan").write_bytes(b"a crashed run's spool, never journaled")
    (tmp_path / "free-made-ahead").write_bytes(b"")
    files = SpoolFiles(tmp_path)
    files.adopt({"journaled"})
    assert (tmp_path / "journaled").read_bytes() == b"an upload to finish"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "free-made-ahead", "free-orphan", "journaled"]
    assert (tmp_path / "free-orphan").stat().st_size == 0
    ready = {inode(tmp_path / "free-orphan"), inode(tmp_path / "free-made-ahead")}
    assert {inode(files.new().path), inode(files.new().path)} == ready
