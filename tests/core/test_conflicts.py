"""Conflicts kept, never lost (``vagonfs.core.conflicts``), in the core: a file
changed on the store by someone else ("elsewhere": ``MemoryStore.put``) while
this mount changed it keeps both versions; our own successive uploads never
count as conflicts; and the base each upload is checked against survives the
journal. The store's call counts show what the check costs."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from vagonfs.core.conflict_names import conflict_name
from vagonfs.core.fs import Filesystem
from vagonfs.core.inodes import ROOT_INODE

from .conftest import (close, create, error_from, filesystem, names, run, run_with_fs,
                       write_file)
from .memory_store import MemoryStore

LONG = 3600.0  # a write-back delay no test waits out: only fsync or drain uploads
STORES = [pytest.param(False, id="replacing-store"), pytest.param(True, id="exclusive-create")]


def copy_of(store: MemoryStore, name: str) -> str:
    """The one conflict copy of ``name`` in the store's root."""
    stem = name.rpartition(".")[0] or name
    copies = [n for n in store.names() if n.startswith(f"{stem} (conflict ")]
    assert len(copies) == 1, store.names()
    return copies[0]


async def edit(fs: Filesystem, name: str, data: bytes) -> int:
    """Open ``name`` for writing with O_TRUNC (an editor's save) and write: the handle."""
    node = await fs.lookup(ROOT_INODE, name)
    fh, _ = await fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
    await fs.write(fh, 0, data)
    return fh


@asynccontextmanager
async def fsync_held(store: MemoryStore, fs: Filesystem, fh: int, name: str
                     ) -> AsyncIterator[trio.Nursery]:
    """Inside: an ``fsync`` of ``fh`` under way, its upload of ``name`` stopped
    before the store confirms (a nursery for more calls); on the way out the
    upload lands and the fsync returns."""
    gate = store.gate("upload", key=name)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fs.fsync, fh)
        await gate.reached.wait()
        yield nursery
        gate.open()


@pytest.mark.parametrize("exclusive", STORES)
def test_a_file_changed_elsewhere_while_edited_here_keeps_both(tmp_path, exclusive):
    store = MemoryStore(exclusive_create=exclusive)
    store.put("plan.txt", b"base")

    async def body(fs: Filesystem) -> None:
        fh = await edit(fs, "plan.txt", b"ours")
        store.put("plan.txt", b"theirs")  # a colleague saved meanwhile
        before = store.calls["lookup"]
        await fs.fsync(fh)
        # the check, and where no exclusive create refuses a taken name, one for the copy's
        assert store.calls["lookup"] - before == (1 if exclusive else 2)
        copy = copy_of(store, "plan.txt")
        assert store.data("plan.txt") == b"theirs" and store.data(copy) == b"ours"
        [kept] = fs.writes.conflicts.kept
        assert (kept.path, kept.kept_as) == ("plan.txt", copy)
        # the handle now writes the copy, never over theirs
        await fs.write(fh, 4, b"+more")
        await close(fs, fh)
        assert await fs.uploads.drain(timeout=10)
        assert store.data(copy) == b"ours+more" and store.data("plan.txt") == b"theirs"
        assert len(fs.writes.conflicts.kept) == 1
        assert sorted(await names(fs)) == sorted(["plan.txt", copy])

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


@pytest.mark.parametrize("exclusive", STORES)
def test_a_file_new_here_whose_name_appeared_on_the_store_is_a_conflict(tmp_path, exclusive):
    store = MemoryStore(exclusive_create=exclusive)

    async def body(fs: Filesystem) -> None:
        fh, _ = await create(fs, "notes.md", b"mine")
        store.put("notes.md", b"theirs")
        await fs.fsync(fh)
        await close(fs, fh)
        assert store.data("notes.md") == b"theirs"
        assert store.data(copy_of(store, "notes.md")) == b"mine"
        # an exclusive create is the check itself, and a look once it refused
        # (a file, or an upload never completed?); a store without one looks
        # first, and again for the copy's name
        assert store.calls["lookup"] == (1 if exclusive else 2)

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


@pytest.mark.parametrize("exclusive", STORES)
def test_a_new_file_costs_no_check_on_a_store_with_an_exclusive_create(tmp_path, exclusive):
    store = MemoryStore(exclusive_create=exclusive)

    async def body(fs: Filesystem) -> None:
        await write_file(fs, "a.txt", b"a")
        assert await fs.uploads.drain(timeout=10)
        assert store.calls["upload"] == 1
        assert store.calls["lookup"] == (0 if exclusive else 1)
        assert fs.writes.conflicts.kept == []

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_a_file_deleted_elsewhere_while_edited_here_is_recreated(tmp_path, caplog):
    store = MemoryStore(exclusive_create=True)
    store.put("gone.txt", b"base")

    async def body(fs: Filesystem) -> None:
        fh = await edit(fs, "gone.txt", b"ours")
        store.remove("gone.txt")
        await fs.fsync(fh)
        await close(fs, fh)
        assert store.names() == ["gone.txt"] and store.data("gone.txt") == b"ours"
        assert fs.writes.conflicts.kept == []

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)
    assert "gone.txt was deleted on the store while it was changed here; recreated" \
        in caplog.text


def test_a_file_whose_folder_was_deleted_elsewhere_is_not_said_recreated(tmp_path, caplog):
    store = MemoryStore(exclusive_create=True)
    store.put("gone/doc.txt", b"base")

    async def body(fs: Filesystem) -> None:
        folder = await fs.lookup(ROOT_INODE, "gone")
        node = await fs.lookup(folder.ino, "doc.txt")
        fh, _ = await fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
        await fs.write(fh, 0, b"ours")
        store.remove("gone/doc.txt")
        store.remove("gone")
        assert (await error_from(fs.fsync(fh))).errno == errno.ENOENT
        fs.release(fh)

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)
    assert "recreated" not in caplog.text


@pytest.mark.parametrize("exclusive", STORES)
def test_edit_save_edit_save_here_is_never_a_conflict(tmp_path, exclusive):
    """In place (O_TRUNC), editor-style (a new file renamed over the old one),
    and a write while the previous upload is still under way (copy on write):
    each base moves to the version our own upload left."""
    store = MemoryStore(exclusive_create=exclusive)
    store.put("doc.txt", b"v0")

    async def body(fs: Filesystem) -> None:
        for version in (b"v1", b"v2"):
            fh = await edit(fs, "doc.txt", version)
            await fs.fsync(fh)
            await close(fs, fh)
        for version in (b"v3", b"v4"):
            await write_file(fs, ".doc.txt.swp", version)
            await fs.rename(ROOT_INODE, ".doc.txt.swp", ROOT_INODE, "doc.txt")
            assert await fs.uploads.drain(timeout=10)
        fh = await edit(fs, "doc.txt", b"v5")
        async with fsync_held(store, fs, fh, "doc.txt"):
            await fs.write(fh, 0, b"v6")  # to a copy, made from what lands now
        await fs.fsync(fh)
        await close(fs, fh)
        assert store.names() == ["doc.txt"] and store.data("doc.txt") == b"v6"
        assert fs.writes.conflicts.kept == []

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_a_rename_over_a_file_whose_upload_is_under_way_waits_for_it(tmp_path):
    """An editor's second save while the first one uploads: the new file
    replaces what the first upload leaves, so it is no conflict."""
    store = MemoryStore(exclusive_create=True)

    async def body(fs: Filesystem) -> None:
        fh, _ = await create(fs, "doc.txt", b"first")
        async with fsync_held(store, fs, fh, "doc.txt") as nursery:
            await write_file(fs, ".tmp", b"second")
            nursery.start_soon(fs.rename, ROOT_INODE, ".tmp", ROOT_INODE, "doc.txt")
            await trio.testing.wait_all_tasks_blocked()
            assert store.data("doc.txt") is None  # the rename waits for the upload
        await close(fs, fh)
        assert await fs.uploads.drain(timeout=10)
        assert store.names() == ["doc.txt"] and store.data("doc.txt") == b"second"
        assert fs.writes.conflicts.kept == []

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_a_save_over_a_file_kept_beside_while_the_save_waited_is_a_conflict_too(tmp_path):
    """An editor's second save waits for the first one's upload, which finds
    the colleague's version and goes beside it: the second save was made from
    ours too, so it goes beside as well, never over theirs."""
    store = MemoryStore(exclusive_create=True)
    store.put("doc.txt", b"base")

    async def body(fs: Filesystem) -> None:
        fh = await edit(fs, "doc.txt", b"first")
        store.put("doc.txt", b"theirs")
        gate = store.gate("upload")  # the first save's, under its conflict name
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fs.fsync, fh)
            await gate.reached.wait()
            await write_file(fs, ".tmp", b"second")
            nursery.start_soon(fs.rename, ROOT_INODE, ".tmp", ROOT_INODE, "doc.txt")
            await trio.testing.wait_all_tasks_blocked()
            gate.open()
        await close(fs, fh)
        assert await fs.uploads.drain(timeout=10)
        assert store.data("doc.txt") == b"theirs"
        assert sorted(store.data(c.kept_as) or b"" for c in fs.writes.conflicts.kept) == \
            [b"first", b"second"]

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_a_move_over_a_file_kept_beside_while_the_move_waited_is_refused(tmp_path):
    store = MemoryStore(exclusive_create=True)
    store.put("doc.txt", b"base")
    store.put("other.txt", b"other")

    async def body(fs: Filesystem) -> None:
        await fs.lookup(ROOT_INODE, "other.txt")
        fh = await edit(fs, "doc.txt", b"ours")
        store.put("doc.txt", b"theirs")
        gate = store.gate("upload")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fs.fsync, fh)
            await gate.reached.wait()

            async def open_once_the_move_waits() -> None:
                await trio.testing.wait_all_tasks_blocked()
                gate.open()

            nursery.start_soon(open_once_the_move_waits)
            move = fs.rename(ROOT_INODE, "other.txt", ROOT_INODE, "doc.txt")
            assert (await error_from(move)).errno == errno.EEXIST
        await close(fs, fh)
        [kept] = fs.writes.conflicts.kept
        assert (store.data("doc.txt"), store.data("other.txt"), store.data(kept.kept_as)) == \
            (b"theirs", b"other", b"ours")
        assert store.calls["rename"] == 0

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_a_taken_conflict_name_gets_the_next_one(tmp_path):
    store = MemoryStore(exclusive_create=True)
    store.put("a.txt", b"base")

    async def body(fs: Filesystem) -> None:
        fh = await edit(fs, "a.txt", b"ours")
        store.put("a.txt", b"theirs")
        for attempt in (1, 2):  # both names a copy made now can get are taken
            store.put(conflict_name("a.txt", time.time(), attempt), b"earlier copy")
            store.put(conflict_name("a.txt", time.time() + 1, attempt), b"earlier copy")
        await fs.fsync(fh)
        await close(fs, fh)
        [kept] = fs.writes.conflicts.kept
        assert kept.kept_as.endswith(" 3).txt") and store.data(kept.kept_as) == b"ours"

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def replay(store: MemoryStore, cache: Path, first, between, then) -> None:
    """A mount that runs ``first(fs)`` and dies before its uploads (its tasks
    cancelled, its journal left), ``between()`` elsewhere, then a mount on the
    same cache dir that replays the journal, uploads all and runs ``then(fs)``."""
    async def body() -> None:
        async with filesystem(store, cache, write_back_delay=LONG) as fs:
            await first(fs)
        between()
        async with filesystem(store, cache, write_back_delay=LONG) as fs:
            assert await fs.uploads.drain(timeout=10)
            await then(fs)

    run(body)


@pytest.mark.parametrize("exclusive", STORES)
def test_a_journal_replay_whose_base_changed_meanwhile_keeps_both(tmp_path, exclusive):
    store = MemoryStore(exclusive_create=exclusive)
    store.put("plan.txt", b"base")

    async def first(fs: Filesystem) -> None:
        await close(fs, await edit(fs, "plan.txt", b"ours"))  # journaled, not uploaded

    async def then(fs: Filesystem) -> None:
        assert store.data("plan.txt") == b"theirs"
        assert store.data(copy_of(store, "plan.txt")) == b"ours"
        assert len(fs.writes.conflicts.kept) == 1

    replay(store, tmp_path, first, lambda: store.put("plan.txt", b"theirs"), then)


def test_a_journal_replay_of_content_written_during_our_own_upload_is_no_conflict(tmp_path):
    """The newer content's record is rewritten with the base our upload left,
    so the replay finds that base on the store."""
    store = MemoryStore(exclusive_create=True)

    async def first(fs: Filesystem) -> None:
        fh, _ = await create(fs, "db", b"one")
        async with fsync_held(store, fs, fh, "db"):
            await fs.write(fh, 0, b"two")
            await fs.flush(fh)  # journaled with the base of the upload under way
        assert store.data("db") == b"one"
        fs.release(fh)

    async def then(fs: Filesystem) -> None:
        assert store.names() == ["db"] and store.data("db") == b"two"
        assert fs.writes.conflicts.kept == []

    replay(store, tmp_path, first, lambda: None, then)
