"""statfs: what df, file managers and find's fts ask, answered without a round trip once known."""

from __future__ import annotations

import trio
import trio.testing

from .conftest import filesystem, run
from .memory_store import MemoryStore


def test_capacity_once_known_is_answered_at_once_and_asked_again_behind(tmp_path):
    store = MemoryStore()
    clock = trio.testing.MockClock()

    async def body() -> None:
        async with filesystem(store, tmp_path) as fs:
            await fs.statfs()
            assert store.calls["capacity"] == 1
            await fs.statfs()
            assert store.calls["capacity"] == 1  # fresh: not asked
            clock.jump(31)
            gate = store.gate("capacity")
            await fs.statfs()  # answered from what was heard, while it asks again
            await gate.reached.wait()
            assert store.calls["capacity"] == 2
            await fs.statfs()
            assert store.calls["capacity"] == 2  # one question at a time
            gate.open()

    run(body, clock=clock, guard=3600)  # the clock moves only when told
