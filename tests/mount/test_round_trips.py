"""What a user waits for over a slow link, in round trips: the emulator adds
latency to every request and counts the longest chain of requests each sent
after the one before had ended (``round_trips`` in its stats), so what the
mount sends side by side counts once. Deterministic where a time over a
simulated link is not, and short: the latency is a few tens of ms."""

from __future__ import annotations

import contextlib
import os

from support import populate, wait_until

from .conftest import sh, vagon_folder, vagonfs

# long enough that a request sent beside another overlaps it even on a busy
# machine (a scheduling stall of tens of ms would make two overlapping
# requests look sequential), short enough for a case to take a second or two
LATENCY_MS = 80


@contextlib.contextmanager
def slow_link(emulator):
    """Every request of the block delayed; yields a reader of the round trips so far."""
    emulator.set_faults({"latency_ms": LATENCY_MS})
    emulator.reset_stats()
    try:
        yield lambda: emulator.stats()["round_trips"]
    finally:
        emulator.clear_faults()


def test_ls_l_of_1000_files_waits_for_page_one_then_the_rest_together(mount_factory,
                                                                      emulator_factory):
    emulator = emulator_factory("--per-page-cap", "100")
    vagon_folder(emulator, "big", count=1000, prefix="f", size=10)
    mount = mount_factory("vagon", emulator=emulator)
    with slow_link(emulator) as round_trips:
        assert sh(f"ls -l {mount.path}/shared/big000000").count("\n") == 1001
        # the folder's lookup, page 1 (it gives the count), the other 9 pages together
        assert round_trips() == 3


def folder_tree(emulator, name: str, folders: int, files: int) -> int:
    """``name000000`` in the shared files, with ``folders`` subfolders of
    ``files`` files each; its id."""
    top = vagon_folder(emulator, name)
    made = populate(emulator, parent_id=top, count=folders, prefix="d",
                    object_type="directory")["ids"]
    for folder in made:
        if files:
            populate(emulator, parent_id=folder, count=files, prefix="f", size=10)
    return top


def tree_mount(mount_factory, emulator_factory, name: str, folders: int, files: int,
               options: tuple[str, ...] = ()):
    """A Vagon mount of an emulator holding ``folder_tree(name, folders, files)``;
    the emulator and the mount."""
    emulator = emulator_factory("--per-page-cap", "100")
    folder_tree(emulator, name, folders, files)
    return emulator, mount_factory("vagon", emulator=emulator, options=options)


def test_find_over_100_folders_lists_them_ahead_together_and_each_once(mount_factory,
                                                                       emulator_factory):
    emulator, mount = tree_mount(mount_factory, emulator_factory, "tree", 100, 10)
    with slow_link(emulator) as round_trips:
        assert sh(f"find {mount.path}/shared/tree000000").count("\n") == 1 + 100 + 1000
        # the tree's lookup and listing, then its 100 subfolders 16 at a time
        # (list_ahead.IN_FLIGHT): 2 + 7 at best; each listing ahead starts as
        # one ends, so the waves' starts stagger and a few more show (10-11
        # measured); a walk that waits for each folder is 102. find's statfs
        # is answered from the capacity the mount asked before it was offered
        assert round_trips() <= 12
        assert emulator.stats()["requests"] == {"vagon.files": 102}  # each folder once


def test_without_listing_ahead_a_walk_waits_for_each_folder(mount_factory, emulator_factory):
    emulator, mount = tree_mount(mount_factory, emulator_factory, "tree", 20, 1,
                                 ("--list-ahead", "0"))
    with slow_link(emulator) as round_trips:
        assert sh(f"find {mount.path}/shared/tree000000").count("\n") == 1 + 20 + 20
        assert round_trips() == 2 + 20  # folder after folder
        assert emulator.stats()["requests"] == {"vagon.files": 22}


def test_ls_of_one_folder_lists_at_most_the_bound_ahead(mount_factory, emulator_factory):
    emulator, mount = tree_mount(mount_factory, emulator_factory, "wide", 50, 0,
                                 ("--list-ahead", "8"))
    emulator.reset_stats()
    assert sh(f"ls {mount.path}/shared/wide000000").split() == [f"d{i:06d}" for i in range(50)]
    # the folder's lookup and listing, then 8 of its subfolders, all started
    # together by the readdir, so they are all in once the count reaches 10
    wait_for_calls(emulator, 10)
    sh(f"ls {mount.path}/shared/wide000000")
    assert emulator.stats()["requests"] == {"vagon.files": 10}  # the second ls: cached


def test_a_lookup_in_a_folder_never_listed_is_one_round_trip(mount_factory, emulator_factory):
    emulator, mount = tree_mount(mount_factory, emulator_factory, "deep", 3, 3)
    with slow_link(emulator) as round_trips:
        sh(f"stat {mount.path}/shared/deep000000/d000001/f000002")
        assert round_trips() == 3  # one lookup in each of three folders
        assert emulator.stats()["requests"] == {"vagon.files": 3}


def wait_for_calls(emulator, count: int, timeout: float = 30) -> None:
    wait_until(lambda: sum(emulator.stats()["requests"].values()) >= count, timeout,
               message=lambda: str(emulator.stats()))


def test_rsync_down_of_200_small_files_fetches_them_together(mount_factory, emulator_factory,
                                                             tmp_path):
    emulator = emulator_factory("--per-page-cap", "100")
    vagon_folder(emulator, "small", count=200, prefix="f", size=4096)
    mount = mount_factory("vagon", emulator=emulator)
    with slow_link(emulator) as round_trips:
        sh(f"rsync -a {mount.path}/shared/small000000/ {tmp_path}/copy/")
        # the folder's lookup and two pages, then the files 64 ahead of the
        # copy (the first file opened starts them), each its link then its
        # GET, links 64 at a time: 11 at best; as one file is opened the next
        # starts, so the chain grows past that (12-15 measured; 13-17 with
        # 32 links at a time; 32 with 24 ahead and 8 links at a time; 400
        # file by file)
        assert round_trips() <= 18
        assert emulator.stats()["requests"] == {
            "vagon.files": 3, "vagon.download_link": 200, "s3.get_object": 200}
    assert sh(f"cat {tmp_path}/copy/* | wc -c").strip() == str(200 * 4096)


def test_the_first_bytes_of_a_file_wait_for_nothing_that_could_go_earlier(mount_factory,
                                                                         emulator_factory):
    emulator, mount = tree_mount(mount_factory, emulator_factory, "first", 1, 3)
    with slow_link(emulator) as round_trips:
        sh(f"head -c 4096 {mount.path}/shared/first000000/d000000/f000001 >/dev/null")
        # a lookup in each of three folders never listed, the file's link, its
        # GET: each needs what the one before it answered
        assert round_trips() == 5
        assert emulator.stats()["requests"] == {
            "vagon.files": 3, "vagon.download_link": 1, "s3.get_object": 1}


def test_rsync_up_of_200_small_files_returns_without_the_store_and_uploads_them_together(
        mount_factory, emulator_factory, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for i in range(200):
        (source / f"f{i:04d}").write_bytes(os.urandom(4096))
    emulator = emulator_factory()
    # uploads wait for the sync below: with the tests' short delay, files
    # closed first would start uploading while a slow machine's rsync still
    # copies, and their requests would count as rsync's
    mount = mount_factory("vagon", emulator=emulator, options=("--write-back-delay", "1h"))
    with slow_link(emulator) as round_trips:
        sh(f"rsync -a {source}/ {mount.path}/shared/up/")
        # the destination's lookup and its mkdir (the kernel's lookup before
        # the mkdir finds the name absent here); the files wait for nothing
        assert round_trips() == 2
        assert emulator.stats()["requests"] == {"vagon.files": 1, "vagon.create": 1}
        # both on the connection the mount opened before it was offered: over
        # a real link a new one would add its handshake's round trip
        assert emulator.stats()["connections"] == 1
        vagonfs("sync", str(mount.path), "--timeout", "120", timeout=150)
        # each file's create, part and complete one after another, 32 files
        # at once (upload_schedule.MAX_PARALLEL_UPLOADS): 20 measured, 58 with 8
        assert round_trips() <= 24
        assert emulator.stats()["requests"] == {
            "vagon.files": 1, "vagon.create": 201, "s3.part_put": 200, "vagon.complete": 200}
    sh(f"diff -r {source} {mount.path}/shared/up")
