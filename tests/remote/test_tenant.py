"""The tenant client against the emulator: paths, uploads, limits, Range or not."""

from __future__ import annotations

import errno
import logging

import pytest
import trio

from vagonfs.errors import FileTooLarge, NoSpace, NotEmpty, NotFound, PermissionDenied
from vagonfs.remote.tenant import MAX_FILE_SIZE

from .conftest import find, listed, read_all, route_counts, store_of, walk


async def _upload(store, folder, name: str, data: bytes, tmp_path):
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    with open(path, "rb") as source:
        return await store.upload(folder, name, source, len(data))


def test_demo_tree_reads_and_paths_are_keys(demo_emulator):
    async def main():
        async with store_of(demo_emulator, "tenant") as (store, _):
            tree = {path: entry async for path, entry in walk(store, await store.root())}
            report = await read_all(store, tree["docs/reports/report.pdf"])
            return tree, report

    tree, report = trio.run(main)
    assert {"README.md", "docs/reports/report.pdf", "docs/reports/images"} <= set(tree)
    assert all(entry.key == path for path, entry in tree.items())
    assert len(report) == tree["docs/reports/report.pdf"].size


def test_upload_move_mkdir_delete(emulator_factory, tmp_path):
    emulator = emulator_factory()
    data = b'quoted "name" and \\ back\n' * 1000

    async def main():
        async with store_of(emulator, "tenant") as (store, stats):
            root = await store.root()
            folder = await store.mkdir(root, "a dir")
            assert await store.lookup(root, "a dir") == folder
            entry = await _upload(store, folder, 'odd "name" ü.txt', data, tmp_path)
            assert await listed(store, folder) == [entry]
            assert await read_all(store, entry) == data
            other = await store.mkdir(root, "other")
            moved = await store.rename(entry, other, "moved.txt")
            assert moved.key == "other/moved.txt" and await read_all(store, moved) == data
            with pytest.raises(NotFound):
                await store.lookup(folder, 'odd "name" ü.txt')
            with pytest.raises(NotEmpty) as caught:
                await store.delete(other)
            assert caught.value.errno == errno.ENOTEMPTY
            await store.delete(moved)
            await store.delete(other)
            await store.delete(folder)
            assert await listed(store, root) == []
            return stats.snapshot(), await store.capacity()

    stats, capacity = trio.run(main)
    assert stats["bytes_out"] > len(data) and capacity.total == 0


def test_files_over_50_mib_are_too_large(emulator_factory, tmp_path):
    emulator = emulator_factory()

    async def main():
        async with store_of(emulator, "tenant") as (store, _):
            root = await store.root()
            exact = await _upload(store, root, "exact.bin", b"\0" * MAX_FILE_SIZE, tmp_path)
            with pytest.raises(FileTooLarge) as caught:
                await _upload(store, root, "over.bin", b"\0" * (MAX_FILE_SIZE + 1), tmp_path)
            return exact, caught.value

    exact, error = trio.run(main)
    assert exact.size == MAX_FILE_SIZE
    assert error.errno == errno.EFBIG and error.status == 413
    assert route_counts(emulator)["tenant.upload"] == 2  # a final refusal is not retried


def test_quota_exceeded_is_no_space(emulator_factory, tmp_path):
    emulator = emulator_factory("--tenant-quota", "1000")

    async def main():
        async with store_of(emulator, "tenant") as (store, _):
            await _upload(store, await store.root(), "big.bin", b"x" * 2000, tmp_path)

    with pytest.raises(NoSpace) as caught:
        trio.run(main)
    assert caught.value.errno == errno.ENOSPC


@pytest.mark.parametrize("range_flag,ranged", [("--tenant-range", True),
                                               ("--no-tenant-range", False)])
def test_ranges_are_used_when_the_server_honours_them(emulator_factory, tmp_path, range_flag,
                                                      ranged):
    emulator = emulator_factory(range_flag)
    data = bytes(range(256)) * 4000

    async def main():
        async with store_of(emulator, "tenant") as (store, stats):
            entry = await _upload(store, await store.root(), "f.bin", data, tmp_path)
            assert store.ranged_reads  # until a server shows otherwise
            before = stats.bytes_in
            part = await read_all(store, entry, 1000, 3000)
            got = stats.bytes_in - before
            return part, got, store.ranged_reads, await read_all(store, entry, 5)

    part, received, ranged_after, tail = trio.run(main)
    assert part == data[1000:3000] and tail == data[5:]
    assert ranged_after is ranged
    # without Range the prefix comes too (and is skipped); the reply is left once past 3000
    assert (received == 2000) if ranged else (received >= 3000)


def test_a_cut_download_resumes_even_without_range_support(emulator_factory, tmp_path):
    emulator = emulator_factory("--no-tenant-range")
    data = bytes(range(256)) * 2000

    async def main():
        async with store_of(emulator, "tenant") as (store, _):
            entry = await _upload(store, await store.root(), "f.bin", data, tmp_path)
            emulator.set_faults({"rules": [
                {"route": "tenant.download", "cut_after": 100_000, "times": 1}]})
            return await read_all(store, entry)

    assert trio.run(main) == data
    assert route_counts(emulator)["tenant.download"] == 2


def test_wrong_token_is_permission_denied_and_never_logged(emulator_factory, caplog):
    emulator = emulator_factory("--api-key", "tok-5d1e9a")
    caplog.set_level(logging.DEBUG)

    async def main():
        async with store_of(emulator, "tenant") as (store, _):
            await listed(store, await store.root())
        async with store_of(emulator, "tenant", api_key="tok-wrong-77") as (store, _):
            await listed(store, await find(store, ""))

    with pytest.raises(PermissionDenied) as caught:
        trio.run(main)
    assert caught.value.errno == errno.EACCES
    assert "tok-5d1e9a" not in caplog.text and "tok-wrong-77" not in caplog.text
    assert "api/v1/files" in caplog.text
