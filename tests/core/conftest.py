"""The core tier: the filesystem, the reader and the write-back queue driven
under ``trio.run`` against the in-memory store, no kernel and no HTTP.

Each test body runs inside ``run``, whose ``trio.fail_after`` guard turns a
missed wake-up into a failure instead of a hang. Interleavings are made with
the store's gates, never with sleeps; outcomes are asserted exactly, with the
store's call counts.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from vagonfs.cache.blocks import BLOCK_SIZE
from vagonfs.cache.upload_states import Pending
from vagonfs.core.fs import Filesystem, FsOptions
from vagonfs.core.inodes import ROOT_INODE, Node
from vagonfs.errors import FsError

from .memory_store import Gate, MemoryStore

MiB = BLOCK_SIZE
GUARD = 20.0  # seconds a test body may take before it counts as hung
DELAY = 0.05  # the write-back delay: short, as every wait in these tests is on an event


def run(body: Callable[[], Awaitable[None]], *, guard: float = GUARD,
        clock: trio.abc.Clock | None = None) -> None:
    async def guarded() -> None:
        with trio.fail_after(guard):
            await body()

    trio.run(guarded, clock=clock)


@asynccontextmanager
async def filesystem(store, cache: Path, **options) -> AsyncIterator[Filesystem]:
    """A started ``Filesystem`` over ``store``, its tasks cancelled on the way out."""
    options.setdefault("write_back_delay", DELAY)
    async with trio.open_nursery() as nursery:
        fs = Filesystem(store, await store.root(), FsOptions(uid=0, gid=0, **options), cache,
                        nursery)
        await fs.start()
        try:
            yield fs
        finally:
            fs.close()
            nursery.cancel_scope.cancel()


def run_with_fs(store: MemoryStore, cache: Path, test: Callable[[Filesystem], Awaitable[None]],
                *, guard: float = GUARD, clock: trio.abc.Clock | None = None,
                **options) -> None:
    """``run`` of ``test(fs)`` on a ``filesystem`` over ``store``: the frame every
    test of the filesystem shares, written once."""
    async def body() -> None:
        async with filesystem(store, cache, **options) as fs:
            await test(fs)

    run(body, guard=guard, clock=clock)


@asynccontextmanager
async def held(gate: Gate, *calls: Callable[[], Awaitable[object]]) -> AsyncIterator[list[int]]:
    """Start ``calls`` in turn, the first stopped at ``gate`` before the rest
    start, and let every task block: inside, they all stand where the gate put
    them, and the list yielded holds the numbers of the calls that returned
    (none, if they wait on the gate's call as they should). On the way out the
    gate opens and every call finishes."""
    returned: list[int] = []

    async def call(number: int) -> None:
        await calls[number]()
        returned.append(number)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, 0)
        await gate.reached.wait()
        for number in range(1, len(calls)):
            nursery.start_soon(call, number)
        await trio.testing.wait_all_tasks_blocked()
        yield returned
        gate.open()


async def error_from(call: Awaitable[object], kind: type[FsError] = FsError) -> FsError:
    """What awaiting ``call`` raises, which must be a ``kind``: ``pytest.raises``
    for one awaited call, so a check of its errno fits on one line."""
    with pytest.raises(kind) as caught:
        await call
    return caught.value


async def create(fs: Filesystem, name: str, data: bytes, parent: int = ROOT_INODE
                 ) -> tuple[int, Node]:
    """``open(O_CREAT)`` and one write: the handle stays open."""
    fh, node = await fs.create(parent, name)
    if data:
        assert await fs.write(fh, 0, data) == len(data)
    return fh, node


async def close(fs: Filesystem, fh: int) -> None:
    """``close(2)``: flush, then release."""
    await fs.flush(fh)
    fs.release(fh)


async def write_file(fs: Filesystem, name: str, data: bytes, parent: int = ROOT_INODE) -> Node:
    fh, node = await create(fs, name, data, parent)
    await close(fs, fh)
    return node


async def read_file(fs: Filesystem, ino: int, size: int, chunk: int = MiB) -> bytes:
    """The whole file through one handle, in ``chunk``-sized reads in order."""
    fh, _ = await fs.open(ino, os.O_RDONLY)
    try:
        return b"".join([bytes(await fs.read(fh, offset, chunk))
                         for offset in range(0, size, chunk)])
    finally:
        fs.release(fh)


async def uploaded(pending: Pending) -> None:
    """Wait until this content's upload settled (landed, failed, or dropped)."""
    await pending.settled.wait()


async def names(fs: Filesystem, ino: int = ROOT_INODE) -> list[str]:
    """``ls``: the names one opendir/readdir shows."""
    fh = await fs.opendir(ino)
    try:
        return [node.name async for _, node in fs.readdir(fh, 0)]
    finally:
        fs.releasedir(fh)
