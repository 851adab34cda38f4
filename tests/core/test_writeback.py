"""The write-back queue through the filesystem core: each state of a pending
upload, what ``fsync`` waits for, and what renames and deletes inside the
write-back window cost on the store."""

from __future__ import annotations

import errno
import os

import trio
import trio.testing

from vagonfs.cache.spool import Spool
from vagonfs.cache.upload_states import Pending, State
from vagonfs.core.fs import Filesystem
from vagonfs.core.inodes import ROOT_INODE, Node
from vagonfs.errors import NoSpace, RemoteIOError

from .conftest import close, create, error_from, held, run_with_fs, uploaded, write_file
from .memory_store import Gate, MemoryStore

LONG = 3600.0  # a write-back delay no test waits out: only fsync or drain uploads


def state_of(pending: Pending) -> State:
    """``pending.state`` as it is now (a call, so mypy does not narrow it)."""
    return pending.state


def assert_out_of_the_queue(fs: Filesystem, node: Node, spool: Spool) -> None:
    """Nothing of ``node`` is left to send: no pending upload, not dirty, and
    the spool that held its content removed."""
    assert fs.uploads.get(node) is None and node.dirty is None
    assert not os.path.exists(spool.path)


async def held_upload(store: MemoryStore, fs: Filesystem, name: str, data: bytes
                      ) -> tuple[Node, Gate]:
    """``name`` written and closed, and the queue's own upload of it (after the
    delay) stopped at a gate before the store confirms: its node, and the gate."""
    gate = store.gate("upload", key=name)
    node = await write_file(fs, name, data)
    await gate.reached.wait()
    return node, gate


def test_a_written_file_goes_open_queued_uploading_then_leaves_the_queue(tmp_path):
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        fh, node = await create(fs, "a.txt", b"hello")
        pending = fs.uploads.get(node)
        assert pending is not None
        assert pending.state is State.OPEN and node.dirty is pending
        assert os.path.exists(pending.spool.path)

        gate = store.gate("upload", key="a.txt")
        await close(fs, fh)
        # each state read afresh: mypy would keep the one asserted before the await
        assert state_of(pending) is State.QUEUED
        await gate.reached.wait()
        assert state_of(pending) is State.UPLOADING
        assert store.data("a.txt") is None  # sent, not confirmed

        gate.open()
        await uploaded(pending)
        assert store.data("a.txt") == b"hello"
        assert_out_of_the_queue(fs, node, pending.spool)
        assert node.entry == store.entry("a.txt")
        assert store.calls["upload"] == 1

    run_with_fs(store, tmp_path, body)


def test_fsync_returns_once_the_store_confirmed_and_the_file_stays_synced(tmp_path):
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        fh, node = await create(fs, "db", b"v1")
        gate = store.gate("upload", key="db")
        async with held(gate, lambda: fs.fsync(fh)) as returned:
            assert not returned  # the store has not confirmed yet
        assert store.data("db") == b"v1"
        pending = fs.uploads.get(node)
        assert pending is not None
        assert pending.state is State.SYNCED  # still open: its spool is the base

        await fs.fsync(fh)  # nothing new written: nothing sent
        assert store.calls["upload"] == 1
        fs.release(fh)
        assert_out_of_the_queue(fs, node, pending.spool)

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_fsync_during_a_queued_upload_waits_for_it_and_sends_nothing_more(tmp_path):
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        node, gate = await held_upload(store, fs, "f", b"closed")
        fh, _ = await fs.open(node.ino, os.O_RDONLY)
        async with held(gate, lambda: fs.fsync(fh)) as returned:
            assert not returned
        assert store.data("f") == b"closed" and store.calls["upload"] == 1
        fs.release(fh)

    run_with_fs(store, tmp_path, body)


def test_a_write_during_its_upload_goes_to_a_copy_sent_after_that_upload(tmp_path):
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        fh, node = await create(fs, "f", b"one")
        first = fs.uploads.get(node)
        assert first is not None
        gate = store.gate("upload", key="f")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fs.fsync, fh)
            await gate.reached.wait()
            await fs.write(fh, 0, b"two")  # the upload still reads the spool
            second = fs.uploads.get(node)
            assert second is not None
            assert second is not first and second.spool is not first.spool
            assert second.state is State.OPEN
            gate.open()
        assert store.data("f") == b"one"  # what the fsync was for
        await fs.fsync(fh)
        assert store.data("f") == b"two" and store.calls["upload"] == 2
        await close(fs, fh)
        assert fs.uploads.all() == []
        assert not os.path.exists(first.spool.path)

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_a_write_after_fsync_reopens_and_each_sync_uploads_once(tmp_path):
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        fh, node = await create(fs, "log", b"one\n")
        await fs.fsync(fh)
        await fs.write(fh, 4, b"two\n")
        pending = fs.uploads.get(node)
        assert pending is not None and pending.state is State.OPEN
        await fs.write(fh, 8, b"three\n")
        await fs.fsync(fh)
        assert store.data("log") == b"one\ntwo\nthree\n"
        assert store.calls["upload"] == 2
        await close(fs, fh)  # synced and closed: nothing is left to send
        assert fs.uploads.all() == [] and fs.uploads.get(node) is None
        assert store.calls["upload"] == 2

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_a_file_rewritten_in_place_uploads_once(tmp_path):
    store = MemoryStore()
    store.put("doc.txt", b"0123456789")

    async def body(fs: Filesystem) -> None:
        node = await fs.lookup(ROOT_INODE, "doc.txt")
        fh, _ = await fs.open(node.ino, os.O_RDWR)
        assert store.calls["read"] == 1  # the old content, as the base of the writes
        await fs.write(fh, 0, b"ab")
        await fs.write(fh, 8, b"yz")
        await close(fs, fh)
        fh, _ = await fs.open(node.ino, os.O_WRONLY)  # again, while it waits
        pending = fs.uploads.get(node)
        assert pending is not None and pending.state is State.OPEN
        await fs.write(fh, 4, b"!")
        await close(fs, fh)
        assert store.calls["upload"] == 0
        assert await fs.uploads.drain(timeout=10)
        assert store.data("doc.txt") == b"ab23!567yz"
        assert store.calls["upload"] == 1 and store.calls["read"] == 1

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_a_rewrite_that_keeps_the_version_string_is_not_read_from_the_old_cache(tmp_path):
    """The tenant API's version is size@second: our own rewrite at the same
    size within a second lands under the version the cache holds blocks of."""
    store = MemoryStore(sized_versions=True)
    store.put("doc.txt", b"old content!")

    async def body(fs: Filesystem) -> None:
        node = await fs.lookup(ROOT_INODE, "doc.txt")
        fh, _ = await fs.open(node.ino, os.O_RDONLY)
        assert bytes(await fs.read(fh, 0, 100)) == b"old content!"  # now cached
        fs.release(fh)
        fh, _ = await fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
        await fs.write(fh, 0, b"new content!")
        await fs.fsync(fh)
        await close(fs, fh)
        assert node.entry is not None
        assert node.entry.version == "12@0"  # the same as before the rewrite
        fh, _ = await fs.open(node.ino, os.O_RDONLY)
        assert bytes(await fs.read(fh, 0, 100)) == b"new content!"
        fs.release(fh)

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_an_upload_refused_for_good_stays_failed_and_tells_fsync_and_close(tmp_path):
    store = MemoryStore()
    refused = NoSpace("quota exceeded", status=507)
    store.fail("upload", refused)

    async def body(fs: Filesystem) -> None:
        fh, node = await create(fs, "big", b"data")
        error = await error_from(fs.fsync(fh))
        assert error is refused and error.errno == errno.ENOSPC
        pending = fs.uploads.get(node)
        assert pending is not None
        assert pending.state is State.FAILED
        assert os.path.exists(pending.spool.path)  # the data is kept
        assert await error_from(fs.flush(fh)) is refused  # and the close says so too
        # so does the next fsync, without asking the store again
        assert await error_from(fs.fsync(fh)) is refused and store.calls["upload"] == 1
        await fs.write(fh, 4, b"!")  # new content: the next fsync sends it
        await fs.fsync(fh)
        assert store.data("big") == b"data!"
        assert store.calls["upload"] == 2
        fs.release(fh)
        assert fs.uploads.all() == []

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_a_closed_file_refused_for_good_waits_failed_until_written_again(tmp_path):
    store = MemoryStore()
    store.fail("upload", NoSpace("quota exceeded", status=507))

    async def body(fs: Filesystem) -> None:
        node = await write_file(fs, "big", b"data")
        pending = fs.uploads.get(node)
        assert pending is not None
        await uploaded(pending)
        assert pending.state is State.FAILED
        assert pending.error is not None and pending.error.errno == errno.ENOSPC
        assert [p.state for p in fs.uploads.all()] == [State.FAILED]
        assert store.calls["upload"] == 1

        fh, _ = await fs.open(node.ino, os.O_WRONLY)  # a writer makes it open again
        reopened = fs.uploads.get(node)
        assert reopened is not None
        assert reopened.state is State.OPEN and reopened.spool is pending.spool
        await fs.write(fh, 4, b"+more")
        await close(fs, fh)
        await uploaded(reopened)
        assert store.data("big") == b"data+more"
        assert store.calls["upload"] == 2 and fs.uploads.all() == []

    run_with_fs(store, tmp_path, body)


def test_an_upload_whose_local_copy_is_gone_is_lost_once_and_leaves_the_journal(tmp_path):
    """The spool removed under the queue (a cache dir cleaned by hand, a disk
    gone): one attempt, then ``lost``, its journal record closed, no retry."""
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        fh, node = await create(fs, "w40", b"data")
        await fs.flush(fh)  # journaled
        pending = fs.uploads.get(node)
        assert pending is not None
        os.unlink(pending.spool.path)
        assert await fs.uploads.upload_all() == [pending]
        assert pending.state is State.LOST and pending.attempts == 1
        assert pending.error is not None and pending.error.errno == errno.EIO
        assert "cannot be read" in str(pending.error)
        assert (await error_from(fs.flush(fh))).errno == errno.EIO  # the close says so
        assert await fs.uploads.upload_all() == [pending]  # and nothing is tried again
        assert pending.attempts == 1 and store.calls["upload"] == 0
        journal = (tmp_path / "journal" / "journal.log").read_text()
        assert journal.endswith('{"done":"%s"}' % pending.spool.id)  # no mount replays it
        fs.release(fh)

        fh, _ = await fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)  # written again: a new copy
        await fs.write(fh, 0, b"again")
        await fs.fsync(fh)
        assert store.data("w40") == b"again"
        fs.release(fh)

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_upload_all_skips_the_delay_and_waits_through_a_retry(tmp_path):
    """``vagonfs sync``: a transient failure is not the answer; the retry's is."""
    store, clock = failing_once()

    async def body(fs: Filesystem) -> None:
        await write_file(fs, "a", b"1")
        assert store.calls["upload"] == 0  # the write-back delay is an hour
        assert await fs.uploads.upload_all() == []
        assert store.data("a") == b"1"
        assert store.calls["upload"] == 2 and fs.uploads.all() == []

    run_with_fs(store, tmp_path, body, write_back_delay=LONG, clock=clock, guard=CLOCK_RATE * 20.0)


def test_upload_all_answers_a_refusal_at_once_and_a_hang_at_its_timeout(tmp_path):
    store = MemoryStore()
    store.fail("upload", NoSpace("quota exceeded", status=507))

    async def body(fs: Filesystem) -> None:
        refused = await write_file(fs, "refused", b"1")
        [failed] = await fs.uploads.upload_all()  # no timeout: the refusal is the answer
        assert failed.key is refused and failed.state is State.FAILED
        gate = store.gate("upload", key="held")
        held_node = await write_file(fs, "held", b"2")
        left = await fs.uploads.upload_all(timeout=0.5)
        assert [p.key for p in left] == [refused, held_node]
        assert [p.state for p in left] == [State.FAILED, State.UPLOADING]
        assert gate.reached.is_set()
        gate.open()

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


# how much faster than the wall the clock of a test with retries runs: the
# retry waits seconds of backoff. At 100 its 4 s were 40 ms, and on a busy
# machine three small uploads due before it took longer than that
CLOCK_RATE = 20


def failing_once() -> tuple[MemoryStore, trio.testing.MockClock]:
    """A store whose next upload fails (HTTP 502), and a fast clock (``CLOCK_RATE``)."""
    store = MemoryStore()
    store.fail("upload", RemoteIOError("bad gateway", status=502))
    return store, trio.testing.MockClock(rate=CLOCK_RATE)


async def fsync_failed(fs: Filesystem, name: str, data: bytes) -> tuple[int, Node]:
    """``name`` created with ``data`` and synced; the ``fsync`` got EIO."""
    fh, node = await create(fs, name, data)
    assert (await error_from(fs.fsync(fh))).errno == errno.EIO
    return fh, node


def test_a_transient_failure_tells_fsync_and_is_retried_after_its_backoff(tmp_path):
    store, clock = failing_once()

    async def body(fs: Filesystem) -> None:
        fh, node = await fsync_failed(fs, "f", b"payload")
        pending = fs.uploads.get(node)
        assert pending is not None
        assert pending.state is State.QUEUED and pending.attempts == 1
        assert store.data("f") is None
        fs.release(fh)
        await uploaded(pending)  # the retry, due after its backoff
        assert store.data("f") == b"payload"
        assert store.calls["upload"] == 2 and fs.uploads.all() == []

    run_with_fs(store, tmp_path, body, write_back_delay=LONG, clock=clock, guard=CLOCK_RATE * 20.0)


def test_uploads_start_in_the_order_they_are_due_not_the_order_they_were_queued(tmp_path):
    store, clock = failing_once()

    async def body(fs: Filesystem) -> None:
        fh, first = await fsync_failed(fs, "first", b"1")  # its retry: 4 s on
        fs.release(fh)
        retry = fs.uploads.get(first)
        assert retry is not None
        later = []
        for i in range(3):  # each due 0.5 s after its close
            fh, node = await create(fs, f"later{i}", b"2")
            pending = fs.uploads.get(node)
            assert pending is not None
            later.append(pending)
            await close(fs, fh)
        for pending in later:
            await uploaded(pending)
        assert trio.current_time() < retry.due and store.data("first") is None
        await uploaded(retry)
        assert store.data("first") == b"1" and store.calls["upload"] == 5
        assert fs.uploads.all() == []

    run_with_fs(store, tmp_path, body, write_back_delay=0.5, clock=clock, guard=CLOCK_RATE * 20.0)


def test_rename_in_the_write_back_window_uploads_the_new_name_only(tmp_path):
    store = MemoryStore()
    store.put("a.txt", b"old")

    async def body(fs: Filesystem) -> None:
        await fs.lookup(ROOT_INODE, "a.txt")
        # rsync: a temporary name, then a rename to the final one
        node = await write_file(fs, ".new.tmp", b"rsynced")
        await fs.rename(ROOT_INODE, ".new.tmp", ROOT_INODE, "b.txt")
        # an editor: write new, rename over the old
        await write_file(fs, ".a.txt.swp", b"edited")
        await fs.rename(ROOT_INODE, ".a.txt.swp", ROOT_INODE, "a.txt")
        assert store.calls["upload"] == 0
        assert await fs.uploads.drain(timeout=10)
        assert store.names() == ["a.txt", "b.txt"]
        assert store.data("a.txt") == b"edited" and store.data("b.txt") == b"rsynced"
        assert node.entry == store.entry("b.txt")
        assert store.calls["upload"] == 2
        assert store.calls["rename"] == 0 and store.calls["delete"] == 0

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_unlink_in_the_write_back_window_uploads_nothing(tmp_path):
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        node = await write_file(fs, "scratch", b"temporary")
        pending = fs.uploads.get(node)
        assert pending is not None
        spool = pending.spool
        await fs.unlink(ROOT_INODE, "scratch")
        assert fs.uploads.all() == []
        assert_out_of_the_queue(fs, node, spool)
        assert await fs.uploads.drain(timeout=10)
        assert store.names() == []
        assert store.calls["upload"] == 0 and store.calls["delete"] == 0

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)


def test_rename_during_an_upload_waits_for_it_then_moves_what_landed(tmp_path):
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        node, gate = await held_upload(store, fs, "draft", b"text")
        pending = fs.uploads.get(node)
        assert pending is not None
        async with held(gate, lambda: fs.rename(ROOT_INODE, "draft", ROOT_INODE, "final")
                        ) as returned:
            assert not returned and store.calls["rename"] == 0
        assert pending.state is not State.FAILED and pending.settled.is_set()
        assert store.names() == ["final"] and store.data("final") == b"text"
        assert store.calls["upload"] == 1 and store.calls["rename"] == 1
        assert node.name == "final" and node.entry == store.entry("final")
        assert fs.uploads.all() == []

    run_with_fs(store, tmp_path, body)


def test_unlink_during_an_upload_deletes_what_landed(tmp_path):
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        _, gate = await held_upload(store, fs, "tmp", b"x")
        async with held(gate, lambda: fs.unlink(ROOT_INODE, "tmp")):
            assert store.calls["delete"] == 0
        assert store.names() == []
        assert store.calls["upload"] == 1 and store.calls["delete"] == 1
        assert fs.uploads.all() == []

    run_with_fs(store, tmp_path, body)


def test_without_server_side_moves_a_rename_in_the_window_still_costs_one_upload(tmp_path):
    store = MemoryStore(can_rename=False)  # as Vagon: no move in the API

    async def body(fs: Filesystem) -> None:
        await write_file(fs, ".part", b"rsynced")
        await fs.rename(ROOT_INODE, ".part", ROOT_INODE, "done")  # not on the store yet
        assert await fs.uploads.drain(timeout=10)
        assert store.names() == ["done"] and store.calls["upload"] == 1
        # on the store: mv copies instead
        moved = await error_from(fs.rename(ROOT_INODE, "done", ROOT_INODE, "moved"))
        assert moved.errno == errno.EXDEV
        assert store.names() == ["done"] and store.calls["rename"] == 0

    run_with_fs(store, tmp_path, body, write_back_delay=LONG)
