"""The Shannon client: both wire forms give the same read-only tree and bytes."""

from __future__ import annotations

import io

import pytest
import trio

from vagonfs.errors import ReadOnly

from .conftest import read_all, store_of, walk


def _snapshot(emulator) -> dict[str, tuple[int, bytes]]:
    async def main():
        async with store_of(emulator, "shannon") as (store, _):
            assert store.capabilities.read_only and not store.ranged_reads
            files = {}
            async for path, entry in walk(store, await store.root()):
                assert not entry.writable
                if not entry.is_dir:
                    files[path] = (entry.size, await read_all(store, entry))
            return files

    return trio.run(main)


def test_documented_and_deployed_forms_give_the_same_files(emulator_factory):
    deployed = _snapshot(emulator_factory("--seed-demo", "--shannon-form", "deployed"))
    documented = _snapshot(emulator_factory("--seed-demo", "--shannon-form", "documented"))
    assert deployed == documented
    sessions = {path.split("/")[0] for path in deployed}
    assert len(sessions) == 2
    for path, (size, content) in deployed.items():
        assert len(content) == size, path
    chart = next(c for p, (_, c) in deployed.items() if p.endswith("output/chart.png"))
    assert chart.startswith(b"\x89PNG")
    script = next(c for p, (_, c) in deployed.items() if p.endswith("analysis.py"))
    assert script.decode().strip()


def test_ranges_are_cut_locally_and_writes_are_refused(demo_emulator):
    async def main():
        async with store_of(demo_emulator, "shannon") as (store, _):
            root = await store.root()
            session = [e async for page in store.list(root) for e in page][0]
            output = await store.lookup(session, "output")
            chart = await store.lookup(output, "chart.png")
            whole = await read_all(store, chart)
            part = await read_all(store, chart, 10, 100)
            for call in (store.mkdir(session, "x"), store.delete(chart),
                         store.upload(session, "x", io.BytesIO(), 0),
                         store.rename(chart, session, "y")):
                with pytest.raises(ReadOnly):
                    await call
            return whole, part

    whole, part = trio.run(main)
    assert part == whole[10:100]
