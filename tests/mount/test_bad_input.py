"""Bad input from the other side: a store's listings and links are input too.

The emulator's bad-input switch (docs/EMULATOR.md) makes listings carry names
Linux cannot hold, impossible sizes, an item the client cannot read, a name
listed twice, sizes that differ from the bytes served (with and without the
download stating its total), and download links on another host. Through a
real mount: the good
entries show, each bad one is skipped with one log line, the daemon stays up,
nothing is written outside the cache dir nor named after a remote name, a
read never hangs nor returns bytes the store did not serve, and credentials
never go to a link's host.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

from vagonfs.emulator.storage import generated

from support import populate

from .conftest import sh

MiB = 1024 * 1024
GOOD = ["good000000", "good000001", "good000002"]
CONTROL = "ctl\x01\x1bname.txt"  # a legal Linux name: shown as it is, never altered
# what the store lists that no Linux name can be: one log line each
SKIPPED = ["'bad/slash.txt'", "'.'", "'..'", "'nul\\x00name.txt'", "'sur\\ud800rogate.txt'",
           "''", "''", "'LLLLL", "'MMMMM",  # '' twice: an empty name and a null one
           "'negative-size.bin'", "'huge-size.bin'"]

STORES = [pytest.param("vagon", "shared", "vagon", 0, id="vagon"),
          pytest.param("tenant", "", "tenant", "", id="tenant")]


def served(store: str, name: str, size: int) -> bytes:
    """The bytes the emulator holds for a populated file."""
    seed = f"populate/shared/0/{name}" if store == "vagon" else f"populate/tenant/{name}"
    return b"".join(generated(seed, size))


def tree(root: Path, skip: set[Path]) -> set[str]:
    """Every path under root, not descending into ``skip`` (mountpoints, caches)."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        found.update(str(Path(dirpath, n).relative_to(root)) for n in dirnames + filenames)
    return found


def skip_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "skipping an entry the store named" in line]


@pytest.mark.parametrize("store,subpath,switch,folder", STORES)
def test_bad_names_are_skipped_once_and_never_reach_the_disk(mount_factory, emulator_factory,
                                                            tmp_path, store, subpath, switch,
                                                            folder):
    emulator = emulator_factory()
    populate(emulator, store, count=3, prefix="good", size=100)
    emulator.admin("PUT", "/_admin/bad-input", {switch: [folder]})
    mount = mount_factory(store, emulator=emulator, subpath=subpath)
    skip = {mount.path, mount.cache, tmp_path / "emulator0"}
    before = tree(tmp_path, skip)

    names = os.listdir(mount.path)
    assert sorted(names) == sorted(GOOD + [CONTROL]), names  # the duplicate shows once
    assert os.stat(mount.path / "good000000").st_size == 100  # the first one listed
    assert (mount.path / "good000001").read_bytes() == served(store, "good000001", 100)
    assert len(sh(f"ls -l {mount.path}").splitlines()) == 1 + 4  # "total", 4 files
    sh(f"ls -lR {mount.path.parent} > /dev/null")  # every tool walks it without error

    lines = skip_lines(mount.log_text())
    for shown in SKIPPED:  # one line per bad entry, however often it is listed
        assert sum(shown in line for line in lines) == SKIPPED.count(shown), (shown, lines)
    assert len(lines) == len(SKIPPED), lines
    twice = [line for line in mount.log_text().splitlines() if "twice" in line]
    assert len(twice) == 1 and "good000000" in twice[0], twice
    malformed = [line for line in mount.log_text().splitlines() if "skipping an item" in line]
    assert len(malformed) == 1 and "unexpected reply" in malformed[0], malformed
    os.listdir(mount.path)
    assert len(skip_lines(mount.log_text())) == len(lines)  # a cached listing: no new lines

    # the daemon is up and still writes; nothing landed outside the cache dir
    (mount.path / "after.txt").write_bytes(b"still here")
    mount.wait_uploaded()
    assert (mount.path / "after.txt").read_bytes() == b"still here"
    assert tree(tmp_path, skip) == before
    remote = ("good", "slash", "name.txt", "rogate", "after", "LLLL", "MMMM")
    for path in mount.cache.rglob("*"):
        assert not any(part in path.name for part in remote), path
        assert path.resolve().is_relative_to(mount.cache.resolve()), path
    assert "Traceback" not in mount.log_text()


def read_with_timeout(path: Path, timeout: float = 30) -> tuple[bytes, int, str]:
    """(bytes read, exit status, error) of ``cat``: a read that hangs fails the test."""
    result = subprocess.run(["cat", str(path)], capture_output=True, timeout=timeout)
    return result.stdout, result.returncode, result.stderr.decode()


@pytest.mark.parametrize("unsized", [False, True], ids=["sized", "unsized"])
@pytest.mark.parametrize("store,subpath,switch,folder", STORES)
def test_declared_size_differs_from_bytes_served(mount_factory, emulator_factory, store,
                                                 subpath, switch, folder, unsized):
    """``unsized``: downloads do not state the total, so only counting tells."""
    size = 3 * MiB + 5
    emulator = emulator_factory()
    populate(emulator, store, count=1, prefix="more", size=size)
    populate(emulator, store, count=1, prefix="less", size=size)
    emulator.admin("PUT", "/_admin/bad-input", {"unsized": unsized, "size_delta": {
        "more000000": 100_000, "less000000": -100_000}})
    mount = mount_factory(store, emulator=emulator, subpath=subpath)
    assert os.stat(mount.path / "more000000").st_size == size + 100_000  # as the store says

    for name, declared in (("more000000", size + 100_000), ("less000000", size - 100_000)):
        real = served(store, name, size)
        data, status, error = read_with_timeout(mount.path / name)
        assert real.startswith(data), f"{name}: bytes the store never served"
        if status == 0:  # only a store that serves what it declared reads whole
            assert unsized and declared < size and data == real[:declared], name
            continue
        # a total that disagrees with the listing cannot be told from a file
        # replaced since it was listed: ESTALE (docs/SEMANTICS.md); a body
        # shorter than declared: EIO
        assert ("Input/output error" if unsized else "Stale file handle") in error, error
        lines = [line for line in mount.log_text().splitlines()
                 if "vagonfs.read" in line and name in line]
        assert len(lines) == 1, lines
    # the mount is fine afterwards
    assert sorted(os.listdir(mount.path)) == ["less000000", "more000000"]
    assert "Traceback" not in mount.log_text()


def test_download_link_on_another_host_gets_no_credentials(mount_factory, emulator_factory):
    emulator = emulator_factory()
    populate(emulator, "vagon", count=1, prefix="linked", size=3 * MiB)
    emulator.admin("PUT", "/_admin/bad-input", {"link_host": "localhost"})
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    assert (mount.path / "linked000000").read_bytes() == served("vagon", "linked000000",
                                                                3 * MiB)
    seen = emulator.admin("GET", "/_admin/bad-input")
    port = emulator.url.rsplit(":", 1)[1]
    assert seen["hosts_seen"] == [f"localhost:{port}"], seen
    assert seen["credentials_seen"] == 0, seen
    assert emulator.stats()["requests"]["s3.get_object"] >= 1


def test_a_download_link_without_a_host_is_read_from_the_apis(mount_factory, emulator_factory):
    emulator = emulator_factory()
    populate(emulator, "vagon", count=1, prefix="relative", size=3 * MiB)
    emulator.admin("PUT", "/_admin/bad-input", {"relative_links": True})
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    assert (mount.path / "relative000000").read_bytes() == served("vagon", "relative000000",
                                                                  3 * MiB)
    assert emulator.stats()["requests"]["s3.get_object"] >= 1


def test_twenty_thousand_entries_stream_and_count_right(mount_factory, emulator_factory):
    emulator = emulator_factory()
    populate(emulator, "vagon", count=20_000, prefix="f", size=0)
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    started = time.monotonic()
    first = sh(f"ls -f {mount.path} | head -3", timeout=30)
    took = time.monotonic() - started
    assert len(first.splitlines()) == 3 and took < 10, (first, took, mount.log_text()[-2000:])
    counted = sh(f"ls -l {mount.path} | wc -l", timeout=60).strip()
    assert counted == "20001", (counted, mount.log_text()[-2000:])  # + the "total" line
    assert sh(f"ls {mount.path} | head -2", timeout=30).split() == ["f000000", "f000001"]
    assert os.stat(mount.path / "f019999").st_size == 0
    with pytest.raises(FileNotFoundError) as missing:
        os.stat(mount.path / "f020000")
    assert missing.value.errno == errno.ENOENT
