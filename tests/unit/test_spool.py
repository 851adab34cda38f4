"""Spools take writes at any offset; whole-page writes go to disk with O_DIRECT
and the rest buffered, and what is read back is always what was written last."""

from __future__ import annotations

import os
import random

import trio

from vagonfs.cache.spool import Spool
from vagonfs.remote import buffers

MiB = 1024 * 1024


def test_direct_and_buffered_writes_on_one_file_read_back_as_written(tmp_path):
    rng = random.Random(7)
    expected = bytearray()

    async def write(spool: Spool, offset: int, data: bytes) -> None:
        assert await spool.write(offset, data) == len(data)
        end = offset + len(data)
        expected.extend(b"\0" * max(0, end - len(expected)))
        expected[offset:end] = data

    async def main():
        spool = Spool.new(tmp_path)
        try:
            for index in range(4):  # what cp sends: whole MiBs, direct
                await write(spool, index * MiB, rng.randbytes(MiB))
            await write(spool, 4 * MiB, rng.randbytes(1000))  # a tail: buffered
            await write(spool, 100, rng.randbytes(200_000))  # unaligned over direct bytes
            await write(spool, 2 * MiB, rng.randbytes(256 * 1024))  # direct over buffered
            await write(spool, MiB - 4096, rng.randbytes(8192))  # small, inline
            assert spool._direct_fd >= 0  # the whole MiBs did go direct (ext4, not tmpfs)
            assert spool.size == len(expected)
            assert await spool.read(0, spool.size + 10) == bytes(expected)
            with spool.reader() as reader:
                assert reader.read() == bytes(expected)
        finally:
            spool.discard()

    trio.run(main)
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
        spool = Spool.new(tmp_path)
        try:
            assert await spool.write(0, data) == len(data)
            assert await spool.read(0, len(data)) == data
        finally:
            spool.discard()

    trio.run(main)
    assert buffers._direct_refused
