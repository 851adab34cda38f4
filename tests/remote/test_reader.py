"""The read path over a real store: read-ahead, prefetch and what a closed handle
leaves behind, counted in the emulator's requests (no FUSE needed here)."""

from __future__ import annotations

import hashlib
from contextlib import asynccontextmanager

import trio
import trio.testing

from vagonfs.cache.blocks import BLOCK_SIZE, BlockCache
from vagonfs.cache.reader import Reader, ReadState

from support import populate, until

from .conftest import read_all, route_counts, store_of

MiB = 1024 * 1024
# seconds watched for a GET that must not start: no condition can say "never"
QUIET = 0.5


@asynccontextmanager
async def reading(emulator, tmp_path, name: str, *, read_first: bool = True):
    """The file ``name`` of the shared Vagon files, its bytes (read once
    directly when ``read_first``), and a Reader over an empty cache; the
    emulator's counts start from here."""
    async with store_of(emulator, "vagon") as (store, _):
        entry = await store.lookup(await store.lookup(await store.root(), "shared"), name)
        expected = await read_all(store, entry) if read_first else b""
        emulator.reset_stats()
        async with trio.open_nursery() as nursery:
            yield entry, expected, Reader(store, BlockCache(tmp_path, 1 << 30), nursery)


def test_sequential_reads_a_little_out_of_order_stream_in_few_gets(emulator_factory,
                                                                   tmp_path):
    emulator = emulator_factory()
    populate(emulator, prefix="seq", count=1, size=40 * MiB + 5)

    async def main():
        async with reading(emulator, tmp_path, "seq000000") as (entry, expected, reader):
            state, got = ReadState(), hashlib.sha256()
            step = 128 * 1024
            pairs = range(0, entry.size, 2 * step)
            for offset in pairs:  # the kernel's reorders: each pair comes swapped
                second = bytes(await reader.read(entry, offset + step, step, state))
                first = bytes(await reader.read(entry, offset, step, state))
                got.update(first + second)
            reader.release(state)
        return hashlib.sha256(expected).hexdigest(), got.hexdigest()

    expected, got = trio.run(main)
    assert got == expected
    gets = route_counts(emulator)["s3.get_object"]
    # 41 blocks: one, then windows of 1, 2, 4, 8, 16 ... asked as GETs of at
    # most four blocks (1 + 1 + 1 + 1 + 2 + 4 + 3), never a GET a read
    assert 3 <= gets <= 14, gets


def test_prefetch_fetches_a_file_once_and_reads_then_cost_nothing(emulator_factory,
                                                                   tmp_path):
    emulator = emulator_factory()
    populate(emulator, prefix="small", count=1, size=3 * MiB + 100)

    async def main():
        async with reading(emulator, tmp_path, "small000000") as (entry, expected, reader):
            reader.prefetch(entry)
            reader.prefetch(entry)  # already coming: nothing more
            await trio.testing.wait_all_tasks_blocked()
            state, data = ReadState(), b""
            while len(data) < entry.size:
                data += bytes(await reader.read(entry, len(data), 128 * 1024, state))
            reader.prefetch(entry)  # cached: nothing more
            await trio.testing.wait_all_tasks_blocked()
        return data == expected

    assert trio.run(main)
    assert route_counts(emulator)["s3.get_object"] == 1


def test_a_closed_handle_stops_its_read_ahead_and_leaves_nothing(emulator_factory, tmp_path):
    emulator = emulator_factory()
    populate(emulator, prefix="long", count=1, size=64 * MiB)
    emulator.set_faults({"rules": [{"route": "s3.get_object", "latency_ms": 200}]})

    async def main():
        async with reading(emulator, tmp_path, "long000000", read_first=False) as (
                entry, _, reader):
            state = ReadState()
            for offset in range(0, 4 * BLOCK_SIZE, 256 * 1024):
                await reader.read(entry, offset, 256 * 1024, state)
            reader.release(state)
            # nothing is left once each cut run's worker thread is out of its socket
            with trio.fail_after(2):
                await until(lambda: reader.fetches.idle)
            gets = route_counts(emulator)["s3.get_object"]
            await trio.sleep(QUIET)  # what is asserted is that nothing starts meanwhile
            return gets, emulator.stats()

    gets, later = trio.run(main)
    # no GET starts after the close; what had started is cut off (the emulator
    # counts what it hands its server, so a cut GET may count whole: a bound)
    assert later["requests"]["s3.get_object"] == gets
    assert later["bytes_out"] < 24 * MiB, later
