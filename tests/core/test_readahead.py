"""Read-ahead decisions of the reader, told by the ranges the store is asked for.

Blocks are ``MiB``; a range ``(first, last)`` below is in blocks, inclusive.
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from vagonfs.cache.blocks import BlockCache
from vagonfs.cache.reader import MAX_INFLIGHT_BYTES, Reader, ReadState
from vagonfs.errors import RemoteIOError

from support import until

from .conftest import MiB, error_from, held, run
from .memory_store import MemoryStore


@asynccontextmanager
async def reader_of(store: MemoryStore, cache) -> AsyncIterator[Reader]:
    async with trio.open_nursery() as nursery:
        yield Reader(store, BlockCache(cache, 1 << 30), nursery)
        nursery.cancel_scope.cancel()


def run_with_reader(store: MemoryStore, cache, test: Callable[[Reader], Awaitable[None]]) -> None:
    """``run`` of ``test(reader)`` on a reader of ``store``."""
    async def body() -> None:
        async with reader_of(store, cache) as reader:
            await test(reader)

    run(body)


def stored(size: int, **options) -> tuple[MemoryStore, bytes]:
    """A ``MemoryStore(**options)`` holding ``size`` random bytes as ``f``; those bytes."""
    store = MemoryStore(**options)
    data = os.urandom(size)
    store.put("f", data)
    return store, data


def ranges_asked(store: MemoryStore, key: str) -> list[tuple[int, int]]:
    """The byte ranges asked of ``key``, sorted: GETs launched by one read
    start in whatever order trio schedules their tasks."""
    asked = []
    for k, offset, end in store.reads:
        if k == key:
            assert end is not None, "the reader asks for a range with its end"
            asked.append((offset, end))
    return sorted(asked)


def blocks_asked(store: MemoryStore, key: str) -> list[tuple[int, int]]:
    """The runs of whole blocks asked of ``key``, sorted."""
    size = len(store.data(key) or b"")
    return [(offset // MiB, (end - 1) // MiB) for offset, end in ranges_asked(store, key)
            if offset % MiB == 0 and (end % MiB == 0 or end == size)]


def pieces_asked(store: MemoryStore, key: str) -> list[tuple[int, int]]:
    """The byte ranges asked of ``key`` that are not runs of whole blocks."""
    runs = {(first * MiB, last) for first, last in blocks_asked(store, key)}
    return [(offset, end) for offset, end in ranges_asked(store, key)
            if (offset, (end - 1) // MiB) not in runs]


def idle(reader: Reader) -> bool:
    """Nothing of any file left on its way or counted in flight."""
    return reader.fetches.idle


async def until_idle(reader: Reader) -> None:
    await until(lambda: idle(reader))


async def read_blocks(reader: Reader, store: MemoryStore, key: str, state: ReadState,
                      indexes) -> bytes:
    entry = store.entry(key)
    return b"".join([bytes(await reader.read(entry, i * MiB, MiB, state)) for i in indexes])


async def read_whole(reader: Reader, store: MemoryStore) -> ReadState:
    """``f`` read through one handle block by block in order, checked, and the
    reader left to go idle: the handle's state."""
    state, data = ReadState(), store.data("f")
    assert data is not None
    assert await read_blocks(reader, store, "f", state, range(-(-len(data) // MiB))) == data
    await until_idle(reader)
    return state


def test_a_first_read_fetches_its_own_bytes_only(tmp_path):
    store, data = stored(8 * MiB)

    async def body(reader: Reader) -> None:
        head = await reader.read(store.entry("f"), 100, 4096, ReadState())
        assert bytes(head) == data[100:4196]
        await trio.testing.wait_all_tasks_blocked()
        assert ranges_asked(store, "f") == [(100, 4196)]

    run_with_reader(store, tmp_path, body)


def test_random_reads_fetch_their_bytes_and_a_reader_going_on_in_order_gets_blocks(tmp_path):
    store, data = stored(8 * MiB)
    entry = store.entry("f")

    async def body(reader: Reader) -> None:
        state = ReadState()
        for at in (5 * MiB + 4096, 3 * MiB, 7 * MiB - 4096):  # each far from the one before
            assert bytes(await reader.read(entry, at, 4096, state)) == data[at:at + 4096]
        assert pieces_asked(store, "f") == [(3 * MiB, 3 * MiB + 4096),
                                            (5 * MiB + 4096, 5 * MiB + 8192),
                                            (7 * MiB - 4096, 7 * MiB)]
        # from the last one on, in order: the next block, whole
        for at in range(7 * MiB, 8 * MiB, KERNEL_READ):
            assert bytes(await reader.read(entry, at, KERNEL_READ, state)) == \
                data[at:at + KERNEL_READ]
        await until_idle(reader)
        assert blocks_asked(store, "f") == [(7, 7)]
        assert len(pieces_asked(store, "f")) == 3

    run_with_reader(store, tmp_path, body)


def test_a_read_of_cached_or_coming_blocks_or_of_half_its_block_fetches_blocks(tmp_path):
    store, data = stored(4 * MiB + 4096)
    entry = store.entry("f")

    async def body(reader: Reader) -> None:
        assert bytes(await reader.read(entry, MiB, MiB, ReadState())) == data[MiB:2 * MiB]
        at = MiB + 8192  # in the block the read before brought: from the cache
        assert bytes(await reader.read(entry, at, 4096, ReadState())) == data[at:at + 4096]
        at = 3 * MiB  # half of its block: the block, kept for the next reader
        assert bytes(await reader.read(entry, at, MiB // 2, ReadState())) == \
            data[at:at + MiB // 2]
        at = 4 * MiB  # the last block, 4 KiB long: all of it
        assert bytes(await reader.read(entry, at, 4096, ReadState())) == data[at:]
        assert blocks_asked(store, "f") == [(1, 1), (3, 3), (4, 4)]
        assert pieces_asked(store, "f") == []

    run_with_reader(store, tmp_path, body)


def test_a_piece_cut_mid_stream_answers_its_error_and_the_next_read_asks_again(tmp_path):
    store, data = stored(4 * MiB, chunk_size=1024)
    store.fail("read", RemoteIOError("connection reset"), at=2)
    entry = store.entry("f")

    async def body(reader: Reader) -> None:
        error = await error_from(reader.read(entry, MiB, 4096, ReadState()))
        assert "connection reset" in str(error)
        assert bytes(await reader.read(entry, MiB, 4096, ReadState())) == data[MiB:MiB + 4096]
        assert pieces_asked(store, "f") == [(MiB, MiB + 4096)] * 2

    run_with_reader(store, tmp_path, body)


class SlowLink(MemoryStore):
    """Each GET waits ``seconds`` (of the test's clock) before its first byte,
    as over a link where one connection carries little."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    @asynccontextmanager
    async def read(self, entry, offset=0, end=None):
        await trio.sleep(self.seconds)
        async with super().read(entry, offset, end) as chunks:
            yield chunks


@pytest.mark.parametrize("seconds,runs", [  # reading in order doubles the window
    # 1 MiB a second: windows of 8 and 16 blocks go as GETs of 4 side by side
    (1.0, [(0, 0), (1, 1), (2, 2), (3, 4), (5, 8), (9, 12), (13, 16), (17, 20), (21, 24),
           (25, 28), (29, 32), (33, 36), (37, 39)]),
    # 1 GiB a second, what loopback does: a window is one GET, up to 16 blocks
    (0.001, [(0, 0), (1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, 39)]),
])
def test_a_window_is_split_only_while_one_connection_carries_little(tmp_path, seconds, runs):
    store = SlowLink(seconds)
    store.put("f", os.urandom(40 * MiB))

    async def body() -> None:
        async with reader_of(store, tmp_path) as reader:
            await read_whole(reader, store)

    # the clock moves only when every task waits (its GETs' delays), never while a
    # worker thread writes the cache: a GET's time is its delay alone
    run(body, clock=trio.testing.MockClock(rate=0, autojump_threshold=0.05), guard=3600)
    assert blocks_asked(store, "f") == runs


@pytest.mark.parametrize("seconds,widest", [
    (1.0, 48),  # one connection slow: a wider window keeps more GETs on the link
    (0.001, 32),  # loopback: more would only hold more memory
])
def test_the_widest_window_depends_on_what_one_connection_carries(tmp_path, seconds, widest):
    store = SlowLink(seconds)
    store.put("f", os.urandom(8 * MiB) * 16)  # room for every doubling and more
    entry, data, state = store.entry("f"), store.data("f"), ReadState()
    assert data is not None
    asked_to: list[int] = []  # where the cursor's read-ahead had got to, read by read

    async def body() -> None:
        async with reader_of(store, tmp_path) as reader:
            for index in range(len(data) // MiB):
                got = await reader.read(entry, index * MiB, MiB, state)
                assert bytes(got) == data[index * MiB:(index + 1) * MiB]
                asked_to.append(state.ahead_to)
            await until_idle(reader)

    run(body, clock=trio.testing.MockClock(rate=0, autojump_threshold=0.05), guard=3600)
    marks = sorted(set(asked_to))
    assert max(b - a for a, b in zip(marks, marks[1:])) == widest


KERNEL_READ = 128 * 1024  # a mount made by a user gets the kernel's 128 KiB reads


async def read_in_pieces(reader: Reader, store: MemoryStore, key: str, order) -> None:
    """Reads of ``KERNEL_READ`` bytes in the given order of pieces, each checked."""
    entry, data, state = store.entry(key), store.data(key), ReadState()
    assert data is not None
    for piece in order:
        at = piece * KERNEL_READ
        assert bytes(await reader.read(entry, at, KERNEL_READ, state)) == \
            data[at:at + KERNEL_READ]


def test_a_read_reordered_within_a_block_keeps_the_cursor(tmp_path):
    in_order, reordered = MemoryStore(), MemoryStore()
    data = os.urandom(12 * MiB)
    for store in (in_order, reordered):
        store.put("f", data)
    pieces = list(range(len(data) // KERNEL_READ))
    swapped = pieces.copy()
    for first in (7, 20):  # the kernel's read-ahead answered out of order, once
        swapped[first], swapped[first + 1] = swapped[first + 1], swapped[first]

    async def body() -> None:
        for store, order in ((in_order, pieces), (reordered, swapped)):
            async with reader_of(store, tmp_path / str(id(store))) as reader:
                await read_in_pieces(reader, store, "f", order)
                await until_idle(reader)
        # from the fourth piece (half a block in order) windows of 1, 2, 4 blocks
        assert blocks_asked(in_order, "f") == [(0, 0), (1, 1), (2, 3), (4, 7), (8, 11)]
        assert blocks_asked(reordered, "f") == blocks_asked(in_order, "f")
        assert reordered.cancelled["read"] == 0

    run(body)


def test_two_whole_block_reads_swapped_keep_the_cursor(tmp_path):
    store, data = stored(12 * MiB)

    async def body(reader: Reader) -> None:
        order = [0, 1, 2, 4, 3, *range(5, 12)]  # a root mount's 1 MiB reads
        got = await read_blocks(reader, store, "f", ReadState(), order)
        assert got == b"".join(data[i * MiB:(i + 1) * MiB] for i in order)
        await until_idle(reader)
        asked = blocks_asked(store, "f")
        assert sum(last - first + 1 for first, last in asked) == 12  # each block once

    run_with_reader(store, tmp_path, body)


def test_a_seek_far_away_resets_the_cursor_and_cancels_its_runs(tmp_path):
    store, data = stored(40 * MiB)

    async def body(reader: Reader) -> None:
        state = ReadState()
        ahead = store.gate("read", key="f", offset=5 * MiB)  # the window of 4 from block 5
        await read_blocks(reader, store, "f", state, range(4))
        await ahead.reached.wait()
        await until(lambda: len(state.runs) == 1)  # the window of 4 alone is on its way

        far = await read_blocks(reader, store, "f", state, [30])
        assert far == data[30 * MiB:31 * MiB]
        await trio.testing.wait_all_tasks_blocked()
        assert store.cancelled["read"] == 1  # the window it no longer needs
        assert not state.runs and idle(reader)
        # a new stretch starts from one block again; the cancelled blocks were
        # never kept, so reading them asks for them anew
        await read_blocks(reader, store, "f", state, [31, 5])
        await trio.testing.wait_all_tasks_blocked()
        assert blocks_asked(store, "f") == [(0, 0), (1, 1), (2, 2), (3, 4), (5, 5),
                                            (5, 8), (30, 30), (31, 31), (32, 32)]

    run_with_reader(store, tmp_path, body)


def test_release_cancels_the_handles_runs_and_leaves_nothing(tmp_path):
    store, _ = stored(12 * MiB)

    async def body(reader: Reader) -> None:
        state = ReadState()
        ahead = store.gate("read", key="f", offset=3 * MiB)
        await read_blocks(reader, store, "f", state, range(3))
        await ahead.reached.wait()
        reader.release(state)
        await trio.testing.wait_all_tasks_blocked()
        assert store.cancelled["read"] == 1
        assert not state.runs and idle(reader)

    run_with_reader(store, tmp_path, body)


def test_read_ahead_of_all_handles_stays_within_the_in_flight_bound(tmp_path):
    store = MemoryStore()
    # files of half a block: the bound counts their bytes, not their blocks
    held_files = [f"held/{i}" for i in range(2 * MAX_INFLIGHT_BYTES // MiB + 2)]
    for key in held_files:
        store.put(key, os.urandom(MiB // 2))
    data = os.urandom(12 * MiB)
    store.put("big", data)

    async def body(reader: Reader) -> None:
        gates = {key: store.gate("read", key=key) for key in held_files}
        # whole small files fetched ahead, as a folder copy does
        started = [reader.prefetch(store.entry(key)) for key in held_files]
        await trio.testing.wait_all_tasks_blocked()
        fitting = len(held_files) - 2
        assert store.calls["read"] == fitting  # the last two had no room
        assert started == [True] * fitting + [False] * 2  # and were told so

        for key in held_files[:2]:  # two half blocks land: room for one block ahead
            gates[key].open()
        await trio.testing.wait_all_tasks_blocked()
        state = ReadState()
        assert await read_blocks(reader, store, "big", state, range(12)) == data
        await trio.testing.wait_all_tasks_blocked()
        # a reader's own blocks are fetched whatever the bound; its read-ahead
        # gets one block at a time while the others hold the rest
        assert blocks_asked(store, "big") == [(i, i) for i in range(12)]

        for gate in gates.values():
            gate.open()
        await until_idle(reader)
        reader.prefetch(store.entry(held_files[-1]))
        await trio.testing.wait_all_tasks_blocked()
        assert blocks_asked(store, held_files[-1]) == [(0, 0)]

    run_with_reader(store, tmp_path, body)


def test_a_store_without_ranged_reads_gets_one_run_for_the_whole_file(tmp_path):
    store, data = stored(5 * MiB + 100, ranged=False)

    async def body(reader: Reader) -> None:
        await read_whole(reader, store)
        assert store.reads == [("f", 0, len(data))]

    run_with_reader(store, tmp_path, body)


def test_chunks_that_are_not_whole_blocks_are_assembled_into_blocks(tmp_path):
    # a store whose replies come in odd pieces
    store, _ = stored(3 * MiB + 12345, chunk_size=300_000)

    async def body(reader: Reader) -> None:
        await read_whole(reader, store)
        assert blocks_asked(store, "f") == [(0, 0), (1, 1), (2, 2), (3, 3)]

    run_with_reader(store, tmp_path, body)


def stream_cut_at_the_third_block() -> MemoryStore:
    """Four blocks as ``f`` on a store without ranged reads, whose first stream
    of them is cut (a connection reset) before the third block."""
    store, _ = stored(4 * MiB, ranged=False)
    store.fail("read", RemoteIOError("connection reset"), at=2)
    return store


async def read_up_to_the_cut(reader: Reader, store: MemoryStore) -> ReadState:
    """The two blocks before the cut, read through one handle: its state."""
    state, data = ReadState(), store.data("f")
    assert data is not None
    assert await read_blocks(reader, store, "f", state, range(2)) == data[:2 * MiB]
    return state


async def read_past_the_cut(reader: Reader, store: MemoryStore, state: ReadState) -> None:
    """The blocks from the cut on, read: asked for again, what did not come only."""
    data = store.data("f")
    assert data is not None
    assert await read_blocks(reader, store, "f", state, [2, 3]) == data[2 * MiB:]
    await until_idle(reader)
    assert store.reads == [("f", 0, 4 * MiB), ("f", 2 * MiB, 4 * MiB)]


def test_a_run_cut_mid_stream_fails_its_waiting_reader_and_keeps_what_came(tmp_path):
    store = stream_cut_at_the_third_block()
    third = store.gate("read", key="f", at=2)  # the stream waits there, then is cut

    async def body(reader: Reader) -> None:
        state = await read_up_to_the_cut(reader, store)
        await third.reached.wait()
        errors: list[int] = []

        async def read_third() -> None:
            errors.append((await error_from(read_blocks(reader, store, "f", state, [2]))).errno)

        async with held(third, read_third) as returned:
            assert not returned  # it waits on the stream for its block
        assert errors == [errno.EIO]
        await read_past_the_cut(reader, store, state)

    run_with_reader(store, tmp_path, body)


def test_a_run_cut_before_anyone_waits_fails_quietly_and_the_reader_asks_again(tmp_path):
    store = stream_cut_at_the_third_block()

    async def body(reader: Reader) -> None:
        state = await read_up_to_the_cut(reader, store)
        await until_idle(reader)  # the run ended, cut, with nobody waiting
        await read_past_the_cut(reader, store, state)

    run_with_reader(store, tmp_path, body)


@pytest.mark.parametrize("seconds,runs", [
    # over a slow link the window after the reader's last is asked as a GET
    # ends, not when the reader reads on; one such, however long it waits
    (1.0, [(0, 0), (1, 1), (2, 2), (3, 4), (5, 8), (9, 12), (13, 16)]),
    (0.001, [(0, 0), (1, 1), (2, 2), (3, 4), (5, 8)]),
])
def test_a_window_is_asked_early_over_a_slow_link_one_at_a_time(tmp_path, seconds, runs):
    store = SlowLink(seconds)
    store.put("f", os.urandom(64 * MiB))
    entry, state = store.entry("f"), ReadState()

    async def body() -> None:
        async with reader_of(store, tmp_path) as reader:
            for index in range(4):  # then the reader stops, its handle open
                await reader.read(entry, index * MiB, MiB, state)
            await until_idle(reader)

    run(body, clock=trio.testing.MockClock(rate=0, autojump_threshold=0.05), guard=3600)
    assert blocks_asked(store, "f") == runs
