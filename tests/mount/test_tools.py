"""Ordinary tools against real mounts of the two writable stores.

Vagon is mounted at its ``shared/`` view (the organization's files), the
tenant store at its root. Every check compares bytes with sha256 or ``diff``,
after a remount where it matters, so what is checked is what the store holds.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import sqlite3

import pytest

from .conftest import sh

STORES = {"vagon": "shared", "tenant": ""}


@pytest.fixture(params=sorted(STORES))
def rw_mount(request, mount_factory):
    return mount_factory(request.param, subpath=STORES[request.param])


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_tree(root, seed: int = 1) -> None:
    """A small tree: nested folders, empty and binary files, spaces in names."""
    rng = random.Random(seed)
    for folder in ("a", "a/b", "a/b/c", "docs", "with space"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    sizes = [0, 1, 100, 4096, 70_000, 1_100_000]
    for i, folder in enumerate(("a", "a/b", "a/b/c", "docs", "with space", ".")):
        for j, size in enumerate(sizes[: 2 + i % 4]):
            (root / folder / f"file {i}-{j}.bin").write_bytes(rng.randbytes(size))
    (root / "docs" / "readme.txt").write_text("hello from vagonfs\n" * 50)


def test_copy_in_and_out_small_empty_and_50mb(rw_mount, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_bytes(b"some text\n" * 10)
    (src / "empty").write_bytes(b"")
    (src / "big.bin").write_bytes(os.urandom(50 * 1024 * 1024))
    sh(f"cp {src}/small.txt {src}/empty {src}/big.bin {rw_mount.path}/")
    listing = sh(f"ls -l {rw_mount.path}")
    assert "small.txt" in listing and "big.bin" in listing
    assert os.stat(rw_mount.path / "big.bin").st_size == 50 * 1024 * 1024
    rw_mount.remount()  # reads below come from the store, not from local spools
    out = tmp_path / "out"
    out.mkdir()
    sh(f"cp {rw_mount.path}/small.txt {rw_mount.path}/empty {rw_mount.path}/big.bin {out}/")
    for name in ("small.txt", "empty", "big.bin"):
        assert sha256(out / name) == sha256(src / name), name
    assert os.stat(rw_mount.path / "empty").st_size == 0


def test_ls_stat_find_and_cp_r(rw_mount, tmp_path):
    src = tmp_path / "tree"
    make_tree(src)
    sh(f"cp -r {src} {rw_mount.path}/tree")
    expected = sorted(sh("find . | sort", cwd=src).splitlines())
    assert sorted(sh("find . | sort", cwd=rw_mount.path / "tree").splitlines()) == expected
    size = sh(f"stat -c %s '{rw_mount.path}/tree/a/b/c/file 2-1.bin'").strip()
    assert int(size) == os.path.getsize(src / "a/b/c/file 2-1.bin")
    rw_mount.remount()
    sh(f"diff -r {src} {rw_mount.path}/tree")
    ls = sh(f"ls -l {rw_mount.path}/tree/docs")
    assert "readme.txt" in ls and str(os.path.getsize(src / "docs/readme.txt")) in ls


def test_tar_extract_into_the_mount(rw_mount, tmp_path):
    src = tmp_path / "tree"
    make_tree(src, seed=2)
    sh(f"tar cf {tmp_path}/t.tar -C {tmp_path} tree")
    sh(f"tar xf {tmp_path}/t.tar -C {rw_mount.path}")
    sh(f"diff -r {src} {rw_mount.path}/tree")
    rw_mount.remount()
    sh(f"diff -r {src} {rw_mount.path}/tree")


def test_rsync_up_down_and_a_second_run_transfers_nothing(rw_mount, tmp_path):
    src = tmp_path / "tree"
    make_tree(src, seed=3)
    sh(f"rsync -a {src}/ {rw_mount.path}/synced/")
    rw_mount.wait_uploaded()
    stats = sh(f"rsync -a --stats {src}/ {rw_mount.path}/synced/")
    assert "Number of regular files transferred: 0" in stats, stats
    rw_mount.remount()  # the times rsync set survive a remount
    stats = sh(f"rsync -a --stats {src}/ {rw_mount.path}/synced/")
    assert "Number of regular files transferred: 0" in stats, stats
    back = tmp_path / "back"
    sh(f"rsync -a {rw_mount.path}/synced/ {back}/")
    sh(f"diff -r {src} {back}")


def test_times_and_modes_follow_mv_and_an_edit_and_rm_forgets_them(rw_mount, tmp_path):
    """As on a local disk: ``mv`` keeps a file's time and mode (Vagon: mv's own
    copy and delete), an edit in place keeps its ``chmod +x``; and the local
    record of a file goes with it, so the database holds the live files only."""
    src = tmp_path / "tree"
    make_tree(src, seed=4)
    sh(f"rsync -a {src}/ {rw_mount.path}/synced/")
    rw_mount.wait_uploaded()
    sh(f"mv {rw_mount.path}/synced/a {rw_mount.path}/synced/moved")
    sh(f"mv {rw_mount.path}/synced/docs/readme.txt {rw_mount.path}/synced/docs/renamed.txt")
    script = rw_mount.path / "synced/tool.sh"
    script.write_text("echo one\n")
    script.chmod(0o755)
    rw_mount.wait_uploaded()
    sh(f"echo two >> {script}")  # an edit in place: a new version of the same file
    for n in range(3):  # and versions on versions
        (rw_mount.path / "synced/docs/renamed.txt").write_text(f"edit {n}\n")
        os.utime(rw_mount.path / "synced/docs/renamed.txt", (1_000_000_000 + n,) * 2)
        rw_mount.wait_uploaded()
    rw_mount.remount()

    sh(f"mv {src}/a {src}/moved")
    stats = sh(f"rsync -a --stats --exclude docs --exclude tool.sh {src}/ "
               f"{rw_mount.path}/synced/")
    assert "Number of regular files transferred: 0" in stats, stats
    assert oct(os.stat(script).st_mode & 0o777) == "0o755"
    assert script.read_text() == "echo one\ntwo\n"
    assert os.stat(rw_mount.path / "synced/docs/renamed.txt").st_mtime == 1_000_000_002

    sh(f"rm -r {rw_mount.path}/synced/moved")
    files = int(sh(f"find {rw_mount.path}/synced -type f | wc -l"))
    [database] = rw_mount.cache.rglob("attrs.sqlite3")
    with sqlite3.connect(database) as db:
        [(records,)] = db.execute("SELECT count(*) FROM attrs")
    db.close()
    assert records == files, sh(f"find {rw_mount.path}/synced -type f")


def test_editor_save_pattern_uploads_once_under_the_final_name(rw_mount):
    target = rw_mount.path / "notes.txt"
    target.write_text("first version\n")
    rw_mount.wait_uploaded()
    before = rw_mount.calls()
    # what editors do: write a new file beside the old, then rename it over
    temp = rw_mount.path / ".notes.txt.swp"
    with open(temp, "w") as fh:
        fh.write("second version\n")
    os.rename(temp, target)
    rw_mount.wait_uploaded()
    after = rw_mount.calls()
    uploads = {"vagon": "vagon.complete", "tenant": "tenant.upload"}[rw_mount.store]
    assert after.get(uploads, 0) - before.get(uploads, 0) == 1
    assert sorted(os.listdir(rw_mount.path)) == ["notes.txt"]
    rw_mount.remount()
    assert target.read_text() == "second version\n"


def test_append_truncate_and_random_writes(rw_mount, tmp_path):
    path = rw_mount.path / "log.txt"
    sh(f"echo one > {path} && echo two >> {path}")
    rw_mount.wait_uploaded()
    sh(f"echo three >> {path}")  # appends to a file already on the store
    assert path.read_text() == "one\ntwo\nthree\n"
    sh(f"truncate -s 4 {path}")
    assert path.read_text() == "one\n"

    rng = random.Random(7)
    local = tmp_path / "model.bin"
    data = bytearray(rng.randbytes(3_000_000))
    local.write_bytes(data)
    sh(f"cp {local} {rw_mount.path}/random.bin")
    rw_mount.wait_uploaded()
    with open(rw_mount.path / "random.bin", "r+b") as fh:
        for _ in range(40):
            offset = rng.randrange(0, 3_500_000)
            chunk = rng.randbytes(rng.randrange(1, 200_000))
            fh.seek(offset)
            fh.write(chunk)
            if offset > len(data):
                data.extend(b"\0" * (offset - len(data)))
            data[offset:offset + len(chunk)] = chunk
    local.write_bytes(data)
    rw_mount.remount()
    assert path.read_text() == "one\n"
    assert sha256(rw_mount.path / "random.bin") == sha256(local)


def test_mv_inside_and_across_folders(rw_mount):
    root = rw_mount.path
    sh(f"mkdir -p {root}/x {root}/y && echo hello > {root}/x/a.txt")
    rw_mount.wait_uploaded()
    if rw_mount.store == "vagon":  # no server-side move: the kernel hears EXDEV
        with pytest.raises(OSError) as exc:
            os.rename(root / "x/a.txt", root / "x/b.txt")
        assert exc.value.errno == errno.EXDEV
    sh(f"mv {root}/x/a.txt {root}/x/b.txt")  # mv falls back to copy and delete on EXDEV
    sh(f"mv {root}/x/b.txt {root}/y/c.txt")
    sh(f"mv {root}/y {root}/z")
    rw_mount.remount()
    assert sorted(os.listdir(root)) == ["x", "z"]
    assert os.listdir(root / "x") == []
    assert (root / "z/c.txt").read_text() == "hello\n"


def test_rm_r_mkdir_p_rmdir_and_df(rw_mount):
    root = rw_mount.path
    sh(f"mkdir -p {root}/p/q/r && echo x > {root}/p/q/r/f && echo y > {root}/p/g")
    with pytest.raises(OSError) as exc:
        os.rmdir(root / "p/q")
    assert exc.value.errno == errno.ENOTEMPTY
    sh(f"rm -r {root}/p")
    assert not (root / "p").exists()
    rw_mount.remount()
    assert not (root / "p").exists()
    df = sh(f"df -B1 --output=size,used {root}").split("\n")[1].split()
    assert int(df[0]) > 0 and int(df[1]) >= 0


def test_remount_shows_the_same_tree_and_contents(rw_mount, tmp_path):
    src = tmp_path / "tree"
    make_tree(src, seed=4)
    sh(f"cp -r {src} {rw_mount.path}/t")
    before = sh("find . -type f -exec sha256sum {} + | sort", cwd=rw_mount.path / "t")
    rw_mount.remount()
    after = sh("find . -type f -exec sha256sum {} + | sort", cwd=rw_mount.path / "t")
    assert before == after and before.count("\n") == sum(1 for p in src.rglob("*") if p.is_file())
