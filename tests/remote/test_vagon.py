"""The Vagon client against the emulator: pages, uploads, links, faults, the tree."""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import math
import os
import time
import zipfile

import pytest
import trio

from vagonfs.errors import (AlreadyExists, CrossDevice, InvalidName, NotFound, PermissionDenied,
                            ReadOnly, RemoteIOError)
from vagonfs.remote.vagon import download_urls
from vagonfs.remote.vagon.store import VagonKey
from vagonfs.remote.vagon.upload import MiB
from vagonfs.runtime import buffers

from support import populate

from .conftest import find, listed, read_all, route_counts, store_of, walk


async def _upload(store, folder, name: str, data: bytes, tmp_path, progress=None):
    path = tmp_path / f"upload-{name}"
    path.write_bytes(data)
    with open(path, "rb") as source:
        return await store.upload(folder, name, source, len(data),
                                  content_type="application/octet-stream", progress=progress)


async def _upload_elsewhere(emulator, name: str, data: bytes, tmp_path):
    """Uploaded by another client (a colleague's mount): the store under test
    has no link of its own to the new content, as it would after its own upload."""
    async with store_of(emulator, "vagon") as (other, _):
        return await _upload(other, await find(other, "shared"), name, data, tmp_path)


# -- listing ---------------------------------------------------------------------------

@pytest.mark.parametrize("form,cap,pages", [("flat", "100", [100, 100, 50]),
                                            ("wrapped", "100", [100, 100, 50]),
                                            ("flat", "40", [40] * 6 + [10])])
def test_listing_pages_in_order_with_one_request_per_page(emulator_factory, form, cap, pages):
    emulator = emulator_factory("--vagon-items", form, "--per-page-cap", cap)
    populate(emulator, count=250, prefix="f", size=10)
    emulator.reset_stats()

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            return [page async for page in store.list(await find(store, "shared"))]

    served = trio.run(main)
    assert [len(page) for page in served] == pages
    entries = [entry for page in served for entry in page]
    assert [e.name for e in entries] == [f"f{i:06d}" for i in range(250)]
    assert all(isinstance(e.key, VagonKey) and isinstance(e.key.id, int) for e in entries)
    assert all(e.size == 10 and e.ready and not e.is_dir and e.version for e in entries)
    assert route_counts(emulator) == {"vagon.files": len(pages)}


@pytest.mark.parametrize("count", [0, 1, 100, 101, 10_000])
def test_listing_costs_one_request_per_page_at_the_edges(emulator_factory, count):
    emulator = emulator_factory("--per-page-cap", "100")
    if count:
        populate(emulator, count=count, prefix="f", size=10)
    emulator.reset_stats()

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            return [e async for page in store.list(await find(store, "shared")) for e in page]

    assert len(trio.run(main)) == count
    assert route_counts(emulator) == {"vagon.files": max(1, math.ceil(count / 100))}


def test_lookup_finds_the_exact_name_with_one_request(emulator_factory):
    emulator = emulator_factory()
    # f000000 ... f000029: "f000001" is a substring of none other
    populate(emulator, count=30, prefix="f", size=10)
    emulator.reset_stats()

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            shared = await find(store, "shared")
            entry = await store.lookup(shared, "f000001")
            with pytest.raises(NotFound):
                await store.lookup(shared, "f00000")  # a substring of many, the name of none
            return entry, await listed(store, shared)

    entry, listing = trio.run(main)
    assert entry == listing[1]
    assert route_counts(emulator)["vagon.files"] == 3


def test_wrong_secret_is_permission_denied(emulator_factory):
    emulator = emulator_factory()

    async def main():
        async with store_of(emulator, "vagon", api_secret="not-the-secret") as (store, _):
            await listed(store, await find(store, "shared"))

    with pytest.raises(PermissionDenied) as caught:
        trio.run(main)
    assert caught.value.errno == errno.EACCES and caught.value.status == 401


def same(entry):
    """What an upload's entry and a later listing agree on (mtime is the
    server's clock in one and this machine's in the other)."""
    return entry.name, entry.key, entry.version, entry.size, entry.is_dir


# -- uploads ---------------------------------------------------------------------------

def test_upload_100mb_through_failing_parts_reads_back_identical(emulator_factory, tmp_path):
    emulator = emulator_factory()
    data = os.urandom(100 * MiB)
    emulator.set_faults({"rules": [{"route": "s3.part_put", "status": 503, "times": 3}]})
    progress: list[int] = []

    async def main():
        async with store_of(emulator, "vagon") as (store, stats):
            shared = await find(store, "shared")
            entry = await _upload(store, shared, "big.bin", data, tmp_path, progress.append)
            # the upload knows the key and version the listing will show
            looked_up = await store.lookup(shared, "big.bin")
            assert (entry.key, entry.version, entry.size) == \
                (looked_up.key, looked_up.version, looked_up.size)
            assert [(e.key, e.version) for e in await listed(store, shared)] == \
                [(entry.key, entry.version)]
            digest = hashlib.sha256()
            async with store.read(entry) as chunks:
                async for chunk in chunks:
                    digest.update(chunk)
            return entry, digest.hexdigest(), stats.snapshot()

    entry, digest, stats = trio.run(main)
    assert digest == hashlib.sha256(data).hexdigest()
    assert entry.size == len(data) and entry.ready
    assert progress == sorted(progress) and progress[-1] == len(data)
    parts = -(-len(data) // (8 * MiB))
    counts = route_counts(emulator)
    assert counts["s3.part_put"] == parts + 3
    assert counts["vagon.create"] == 1 and counts["vagon.complete"] == 1
    assert stats["retries"] >= 3 and stats["errors"] == 0


def test_a_small_upload_is_retried_as_any_call_but_a_create_that_may_have_happened(
        emulator_factory, tmp_path):
    """A small file's create, part and complete are sent from worker threads
    (the worker transport): a refused part and a cut complete are sent again (both
    are idempotent), a create the server may have acted on is not, and the
    bytes sent are counted."""
    emulator = emulator_factory()
    data = os.urandom(5000)

    async def main():
        async with store_of(emulator, "vagon") as (store, stats):
            shared = await find(store, "shared")
            emulator.reset_stats()
            emulator.set_faults({"rules": [
                {"route": "s3.part_put", "status": 503, "times": 1},
                {"route": "vagon.complete", "cut_after": 10, "times": 1}]})
            entry = await _upload(store, shared, "small.bin", data, tmp_path)
            assert await read_all(store, entry) == data
            sent = stats.snapshot()
            emulator.set_faults({"rules": [{"route": "vagon.create", "cut_after": 5,
                                            "times": 1}]})
            with pytest.raises(RemoteIOError):
                await _upload(store, shared, "cut.bin", data, tmp_path)
            return sent

    sent = trio.run(main)
    assert sent["retries"] == 2 and sent["errors"] == 0
    assert sent["bytes_out"] >= 2 * len(data)  # the part, sent twice
    counts = route_counts(emulator)
    assert counts["s3.part_put"] == 2 and counts["vagon.complete"] == 2
    assert counts["vagon.create"] == 2  # small.bin's, and cut.bin's once


def test_overwrite_keeps_the_key_and_changes_the_version(emulator_factory, tmp_path):
    emulator = emulator_factory()

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            shared = await find(store, "shared")
            first = await _upload(store, shared, "a.txt", b"one", tmp_path)
            await trio.sleep(1.1)  # updated_at has whole seconds
            second = await _upload(store, shared, "a.txt", b"second", tmp_path)
            empty = await _upload(store, shared, "empty", b"", tmp_path)
            return (first, second, empty, await read_all(store, second),
                    await read_all(store, empty), await listed(store, shared))

    first, second, empty, content, nothing, listing = trio.run(main)
    assert first.key == second.key and first.version != second.version
    assert content == b"second" and nothing == b"" and empty.size == 0
    assert [same(e) for e in listing] == [same(second), same(empty)]


def test_a_file_just_uploaded_reads_back_through_the_link_its_complete_named(
        emulator_factory, tmp_path):
    emulator = emulator_factory()
    data = os.urandom(3000)

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            shared = await find(store, "shared")
            entry = await _upload(store, shared, "fresh.bin", data, tmp_path)
            emulator.reset_stats()
            return await read_all(store, entry)

    assert trio.run(main) == data
    assert route_counts(emulator) == {"s3.get_object": 1}  # no download link asked


def test_folders_and_names(emulator_factory, tmp_path):
    emulator = emulator_factory()

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            shared = await find(store, "shared")
            folder = await store.mkdir(shared, "Reports 2026")
            assert folder == await store.lookup(shared, "Reports 2026")
            with pytest.raises(AlreadyExists):
                await store.mkdir(shared, "Reports 2026")
            inner = await _upload(store, folder, "q1.csv", b"a,b\n", tmp_path)
            assert [same(e) for e in await listed(store, folder)] == [same(inner)]
            with pytest.raises(CrossDevice):
                await store.rename(inner, shared, "moved.csv")
            emulator.reset_stats()
            for bad in ("a:b", "what?", "x|y", 'q"t', "back\\slash", "x" * 256, "tab\t"):
                with pytest.raises(InvalidName):
                    await store.mkdir(shared, bad)
                with pytest.raises(InvalidName):
                    await store.upload(shared, bad, io.BytesIO(), 0)
                with pytest.raises(NotFound):
                    await store.lookup(shared, bad)
            assert route_counts(emulator) == {}  # refused before any request
            await store.delete(folder)  # with its content, as the API does
            assert await listed(store, shared) == []
            used = await store.capacity()
            return used

    capacity = trio.run(main)
    assert capacity.total > 0 and capacity.used == 0


def test_a_file_still_uploading_is_listed_not_ready(emulator_factory):
    emulator = emulator_factory()

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            shared = await find(store, "shared")
            await store.api.create_upload("pending.bin", 0, size=10, content_type="x/y",
                                          chunk_mb=8)
            return await store.lookup(shared, "pending.bin")

    entry = trio.run(main)
    assert not entry.ready


def test_storage_full_is_no_space(emulator_factory, tmp_path):
    emulator = emulator_factory("--vagon-quota", "1000")

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            await _upload(store, await find(store, "shared"), "big", b"x" * 2000, tmp_path)

    with pytest.raises(Exception) as caught:
        trio.run(main)
    # whatever was raised (caught as Exception) must carry ENOSPC
    assert getattr(caught.value, "errno", None) == errno.ENOSPC


# -- downloads and faults --------------------------------------------------------------

def test_expired_link_is_refreshed_once_and_reused_otherwise(emulator_factory, tmp_path):
    emulator = emulator_factory()
    data = os.urandom(300_000)

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            entry = await _upload_elsewhere(emulator, "f.bin", data, tmp_path)
            emulator.reset_stats()
            assert await read_all(store, entry) == data
            assert await read_all(store, entry, 1000, 2000) == data[1000:2000]
            assert route_counts(emulator)["vagon.download_link"] == 1
            emulator.expire_links()
            parts = {}

            async def read_part(start: int) -> None:
                parts[start] = await read_all(store, entry, start, start + 50_000)

            async with trio.open_nursery() as nursery:  # parallel runs, as read-ahead does
                for start in range(0, 200_000, 50_000):
                    nursery.start_soon(read_part, start)
            assert b"".join(parts[k] for k in sorted(parts)) == data[:200_000]

    trio.run(main)
    stats = emulator.stats()
    assert stats["requests"]["vagon.download_link"] == 2  # one refresh shared by all four
    assert stats["errors"].get("s3.get_object") == 4


def test_links_of_many_files_read_at_once_are_asked_within_their_bound(emulator_factory,
                                                                       tmp_path):
    emulator = emulator_factory()
    count = download_urls.ASKED_AT_ONCE + 8
    files = {f"f{i:02d}": os.urandom(1000 + i) for i in range(count)}
    asking = {"now": 0, "most": 0}

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            entries = [await _upload_elsewhere(emulator, name, data, tmp_path)
                       for name, data in files.items()]
            real = store.api.download_link

            async def counted(file_id):
                asking["now"] += 1
                asking["most"] = max(asking["most"], asking["now"])
                try:
                    return await real(file_id)
                finally:
                    asking["now"] -= 1

            store.api.download_link = counted
            emulator.reset_stats()
            read = {}

            async def read_one(entry):
                read[entry.name] = await read_all(store, entry)

            async with trio.open_nursery() as nursery:  # a folder's files fetched ahead
                for entry in entries:
                    nursery.start_soon(read_one, entry)
            return read

    assert trio.run(main) == files
    assert asking["most"] == download_urls.ASKED_AT_ONCE
    assert route_counts(emulator)["vagon.download_link"] == count


def test_a_link_asked_in_a_worker_thread_is_retried_and_its_errors_mapped(emulator_factory,
                                                                         tmp_path):
    """Links go through the worker-thread connections (the worker transport,
    ``HttpClient.request``'s ``via``): a refusal, a reply cut short and a file gone are judged
    as on any other call."""
    emulator = emulator_factory()
    data = os.urandom(5000)

    async def main():
        async with store_of(emulator, "vagon") as (store, stats):
            entry = await _upload_elsewhere(emulator, "f.bin", data, tmp_path)
            cut = await _upload_elsewhere(emulator, "cut.bin", data, tmp_path)
            gone = await _upload_elsewhere(emulator, "gone.bin", data, tmp_path)
            await store.delete(gone)
            emulator.reset_stats()
            emulator.set_faults({"rules": [
                {"route": "vagon.download_link", "status": 503, "times": 1}]})
            assert await read_all(store, entry) == data
            emulator.set_faults({"rules": [
                {"route": "vagon.download_link", "cut_after": 10, "times": 1}]})
            assert await read_all(store, cut) == data
            retries = stats.snapshot()["retries"]
            with pytest.raises(NotFound):
                await read_all(store, gone)
            return retries

    assert trio.run(main) == 2
    stats = emulator.stats()
    assert stats["requests"] == {"vagon.download_link": 5, "s3.get_object": 2}
    assert stats["errors"] == {"vagon.download_link": 3}  # 503, cut, and the file gone


def test_a_cut_download_resumes_where_it_stopped(emulator_factory, tmp_path):
    emulator = emulator_factory()
    data = os.urandom(1_000_000)

    async def main():
        async with store_of(emulator, "vagon") as (store, stats):
            entry = await _upload(store, await find(store, "shared"), "f.bin", data, tmp_path)
            emulator.reset_stats()
            emulator.set_faults({"rules": [
                {"route": "s3.get_object", "cut_after": 65536, "times": 2}]})
            whole = await read_all(store, entry)
            part = await read_all(store, entry, 1000, 900_000)
            return whole, part, stats.snapshot()

    whole, part, stats = trio.run(main)
    assert whole == data and part == data[1000:900_000]
    assert route_counts(emulator)["s3.get_object"] == 4
    assert stats["retries"] == 2


def test_a_reader_may_give_each_buffer_back_at_once(emulator_factory, tmp_path):
    """The stream never touches a buffer once handed over: a reader giving
    every one back for reuse as it arrives still reads the file's bytes,
    across a cut connection too."""
    emulator = emulator_factory()
    data = os.urandom(5 * MiB + 1234)

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            entry = await _upload(store, await find(store, "shared"), "f.bin", data, tmp_path)
            emulator.set_faults({"rules": [
                {"route": "s3.get_object", "cut_after": 3 * MiB + 100, "times": 1}]})
            got = bytearray()
            async with store.read(entry) as chunks:
                async for chunk in chunks:
                    got += chunk
                    buffers.reuse(chunk)
            return bytes(got)

    assert hashlib.sha256(trio.run(main)).digest() == hashlib.sha256(data).digest()
    assert route_counts(emulator)["s3.get_object"] == 2


def test_429_waits_as_long_as_retry_after_says(emulator_factory):
    emulator = emulator_factory()
    emulator.set_faults({"rules": [
        {"route": "vagon.files", "status": 429, "retry_after": 1, "times": 1},
        {"route": "vagon.create", "status": 429, "retry_after": 1, "times": 1}]})

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            shared = await find(store, "shared")
            started = time.monotonic()
            await listed(store, shared)
            listed_after = time.monotonic() - started
            await store.mkdir(shared, "d")  # a create is retried too: 429 means not done
            return listed_after, time.monotonic() - started

    listed_after, total = trio.run(main)
    assert 1.0 <= listed_after < 3 and total >= 2.0
    counts = route_counts(emulator)
    assert counts["vagon.files"] == 2 and counts["vagon.create"] == 2


def test_a_create_that_may_have_happened_is_not_repeated(emulator_factory):
    emulator = emulator_factory()
    emulator.set_faults({"rules": [{"route": "vagon.create", "status": 500, "times": 1}]})

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            await store.mkdir(await find(store, "shared"), "d")

    with pytest.raises(RemoteIOError):
        trio.run(main)
    assert route_counts(emulator)["vagon.create"] == 1


def test_exhausted_retries_end_in_one_error_with_the_servers_message(emulator_factory):
    emulator = emulator_factory()
    emulator.set_faults({"rules": [{"route": "vagon.files", "status": 502}]})

    snapshots = []

    async def main():
        async with store_of(emulator, "vagon") as (store, stats):
            try:
                await listed(store, await find(store, "shared"))
            finally:
                snapshots.append(stats.snapshot())

    with pytest.raises(RemoteIOError) as caught:
        trio.run(main)
    assert caught.value.status == 502 and "organization-management" in str(caught.value)
    assert route_counts(emulator)["vagon.files"] == 6
    assert snapshots[0]["retries"] == 5 and snapshots[0]["errors"] == 1


def test_secrets_and_signatures_stay_out_of_debug_logs(emulator_factory, tmp_path, caplog):
    secret, key = "secret-b81d09e4c2aa", "key-3f9a1c7e55"
    emulator = emulator_factory("--api-key", key, "--api-secret", secret)
    emulator.set_faults({"rules": [{"route": "*", "status": 503, "times": 2},
                                   {"route": "s3.get_object", "status": 403, "times": 2}]})
    caplog.set_level(logging.DEBUG)

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            entry = await _upload(store, await find(store, "shared"), "f", b"x" * 100, tmp_path)
            with pytest.raises(PermissionDenied) as caught:
                await read_all(store, entry)
            return str(caught.value)

    message = trio.run(main)
    assert "X-Amz" not in message and "?" not in message
    assert "503" in caplog.text
    assert secret not in caplog.text
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("vagonfs"))
    assert "X-Amz-Signature" not in ours and "/_s3/" in ours


# -- the tree --------------------------------------------------------------------------

def test_tree_views_of_the_demo_set(demo_emulator):
    async def main():
        async with store_of(demo_emulator, "vagon") as (store, _):
            root = await store.root()
            top = await listed(store, root)
            machines = await listed(store, await find(store, "machines"))
            alpha_task = await listed(store, await find(
                store, "machines/Computer #100/tasks/Project-Alpha"))
            alpha_files = await listed(store, await find(
                store, "machines/Computer #100/files/Project-Alpha"))
            tasks_101 = await listed(store, await find(store, "machines/Computer #101/tasks"))
            recordings = [e async for _, e in walk(store, await find(store, "recordings"))]
            video = await find(store, "shared/Media/large-dataset.bin")
            head = await read_all(store, video, 0, 4096)
            for folder in (root, await find(store, "machines"),
                           await find(store, "machines/Computer #100"),
                           await find(store, "recordings"),
                           await find(store, "recordings/Computer #100")):
                with pytest.raises(ReadOnly):
                    await store.mkdir(folder, "new")
                with pytest.raises(ReadOnly):
                    await store.upload(folder, "new", io.BytesIO(), 0)
            for entry in (recordings[1], machines[0], top[0]):
                with pytest.raises(ReadOnly):
                    await store.delete(entry)
            return top, machines, alpha_task, alpha_files, tasks_101, recordings, head

    top, machines, alpha_task, alpha_files, tasks_101, recordings, head = trio.run(main)
    assert [(e.name, e.writable) for e in top] == [
        ("shared", True), ("machines", False), ("recordings", False)]
    assert [e.name for e in machines] == ["Computer #100", "Computer #101"]
    assert not any(e.writable for e in machines)
    assert alpha_task == alpha_files and alpha_task  # the task shows its folder's content
    assert [e.name for e in tasks_101] == ["Outputs", "Render-01"]
    assert recordings and not any(e.writable for e in recordings)
    assert any(e.name.endswith(".mp4") for e in recordings)
    assert len(head) == 4096


def test_machine_files_and_tasks_take_writes_in_their_machine(emulator_factory, tmp_path):
    emulator = emulator_factory("--seed-demo")

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            files = await find(store, "machines/Computer #101/files")
            task = await find(store, "machines/Computer #101/tasks/Outputs")
            note = await _upload(store, files, "note.txt", b"hello", tmp_path)
            result = await _upload(store, task, "result.txt", b"done", tmp_path)
            made = await store.mkdir(task, "more")
            seen_in_files = await find(store, "machines/Computer #101/files/Outputs/result.txt")
            other = await listed(store, await find(store, "machines/Computer #100/files"))
            with pytest.raises(PermissionDenied) as root_folder:  # client_code 450
                await store.delete(await find(store, "machines/Computer #101/files/Outputs"))
            assert root_folder.value.code == 450
            with pytest.raises(RemoteIOError) as off:  # client_code 4204: not running
                await store.api.list_content(101, "C:\\Users")
            assert off.value.code == 4204 and "not running" in str(off.value)
            assert await store.api.list_content(100, "C:\\Users")
            return note, result, made, seen_in_files, other, await read_all(store, result)

    note, result, made, seen_in_files, other, content = trio.run(main)
    assert note.key.scope == "files" and note.key.machine_id == 101
    assert same(seen_in_files) == same(result) and content == b"done" and made.is_dir
    assert "note.txt" not in [e.name for e in other]


def test_archive_download_of_a_folder(emulator_factory, tmp_path):
    emulator = emulator_factory("--seed-demo")

    async def main():
        async with store_of(emulator, "vagon") as (store, _):
            projects = await find(store, "shared/Projects")
            job = await store.api.archive_start([projects.key.id])
            status = await store.api.archive_fetch(job["download_id"], tmp_path / "a.zip",
                                                   poll_interval=0.05)
            emulator.set_faults({"archive_delay_ms": 5000})
            slow = await store.api.archive_start([projects.key.id])
            await store.api.archive_abort(slow["download_id"])
            aborted = await store.api.archive_status(slow["download_id"])
            return status, aborted

    status, aborted = trio.run(main)
    assert status["status"] == "completed" and aborted["status"] == "aborted"
    names = zipfile.ZipFile(tmp_path / "a.zip").namelist()
    assert any(name.endswith("Alpha/design.txt") for name in names)
