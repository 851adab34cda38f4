"""Nothing lost: faults injected by the emulator, crashes and concurrency, through real mounts.

Every test ends by comparing sha256 of what reads back through the mount and of
what the store holds (read after a remount with an empty cache, or straight
from the emulator), so a retry that silently corrupted data cannot pass.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import time

import pytest

from vagonfs.control.mounttable import is_mounted

from support import wait_until

from .conftest import Mount, sh, vagonfs
from .test_tools import sha256

MiB = 1024 * 1024


def fresh_read(mount: Mount, relpath: str) -> str:
    """sha256 of a file as the store holds it: remount with an empty block cache."""
    mount.stop()
    shutil.rmtree(mount.cache / "emu" / "blocks", ignore_errors=True)
    mount.start()
    return sha256(mount.path / relpath)


@pytest.fixture
def big_file(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(24 * MiB))
    return path


@pytest.mark.parametrize("store,subpath,upload_route", [
    ("vagon", "shared", "s3.part_put"), ("tenant", "", "tenant.upload")])
def test_5xx_and_429_bursts_on_upload_listing_and_download(mount_factory, emulator_factory,
                                                           big_file, store, subpath,
                                                           upload_route):
    emulator = emulator_factory()
    mount = mount_factory(store, emulator=emulator, subpath=subpath)
    emulator.set_faults({"rules": [
        {"route": upload_route, "status": 503, "times": 3},
        {"route": f"{store}.*", "status": 429, "retry_after": 1, "times": 2},
    ]})
    sh(f"cp {big_file} {mount.path}/big.bin")
    mount.wait_uploaded(timeout=120)
    assert emulator.stats()["errors"].get(upload_route, 0) >= 1
    download = "s3.get_object" if store == "vagon" else "tenant.download"
    list_route = "vagon.files" if store == "vagon" else "tenant.list"
    mount.stop()
    shutil.rmtree(mount.cache / "emu" / "blocks", ignore_errors=True)
    emulator.set_faults({"rules": [
        {"route": download, "status": 500, "times": 2},
        {"route": list_route, "status": 503, "times": 2},
    ]})
    mount.start()
    assert sha256(mount.path / "big.bin") == sha256(big_file)
    errors = emulator.stats()["errors"]
    assert errors.get(download, 0) >= 1 and errors.get(list_route, 0) >= 1


@pytest.mark.parametrize("store,subpath,download", [
    ("vagon", "shared", "s3.get_object"), ("tenant", "", "tenant.download")])
def test_connection_cut_mid_download_and_mid_part(mount_factory, emulator_factory, big_file,
                                                  store, subpath, download):
    emulator = emulator_factory()
    mount = mount_factory(store, emulator=emulator, subpath=subpath)
    if store == "vagon":
        emulator.set_faults({"rules": [{"route": "s3.part_put", "cut_after": 100_000,
                                        "times": 1}]})
    sh(f"cp {big_file} {mount.path}/big.bin")
    mount.wait_uploaded(timeout=120)
    mount.stop()
    shutil.rmtree(mount.cache / "emu" / "blocks", ignore_errors=True)
    emulator.set_faults({"rules": [{"route": download, "cut_after": 3 * MiB + 17,
                                    "times": 2}]})
    mount.start()
    assert sha256(mount.path / "big.bin") == sha256(big_file)


def test_download_link_expiring_in_the_middle_of_a_long_read(mount_factory, emulator_factory,
                                                             big_file):
    emulator = emulator_factory()
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    sh(f"cp {big_file} {mount.path}/big.bin")
    mount.wait_uploaded()
    mount.stop()
    shutil.rmtree(mount.cache / "emu" / "blocks", ignore_errors=True)
    # links live 1 s and every ranged GET takes 0.3 s: the read outlives its links
    emulator.set_faults({"link_ttl": 1,
                         "rules": [{"route": "s3.get_object", "latency_ms": 300}]})
    mount.start()
    before = mount.calls().get("vagon.download_link", 0)
    with open(mount.path / "big.bin", "rb") as fh:
        first = fh.read(4 * MiB)
        emulator.expire_links()  # and every link handed out so far is refused now
        rest = fh.read()
    assert hashlib.sha256(first + rest).hexdigest() == sha256(big_file)
    assert mount.calls()["vagon.download_link"] - before >= 2  # the link was refreshed


def test_emulator_restart_while_the_mount_is_busy(mount_factory, emulator_factory, big_file):
    emulator = emulator_factory()
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    emulator.set_faults({"rules": [{"route": "s3.part_put", "latency_ms": 300}]})
    copy = subprocess.Popen(["cp", str(big_file), str(mount.path / "big.bin")])
    assert copy.wait(timeout=60) == 0
    emulator.restart()  # faults go with the old process; the data dir stays
    mount.wait_uploaded(timeout=120)
    assert fresh_read(mount, "big.bin") == sha256(big_file)


def test_sigkill_during_upload_then_remount_completes_from_the_journal(mount_factory,
                                                                       emulator_factory,
                                                                       big_file):
    emulator = emulator_factory()
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    emulator.set_faults({"rules": [{"route": "s3.part_put", "latency_ms": 5000}]})
    sh(f"cp {big_file} {mount.path}/big.bin")  # close returns: data is in the journal
    wait_until(lambda: any(u["state"] == "uploading" for u in mount.status()["uploads"]),
               message="no upload started")
    mount.kill(signal.SIGKILL)
    assert emulator.stats()["requests"].get("vagon.complete", 0) == 0
    emulator.clear_faults()
    mount.start()
    # the pending file is visible at once, with its full size, before the upload ends
    assert (mount.path / "big.bin").stat().st_size == big_file.stat().st_size
    mount.wait_uploaded(timeout=120)
    assert fresh_read(mount, "big.bin") == sha256(big_file)


def test_fusermount_u_leaves_the_journal_for_the_next_mount(mount_factory, emulator_factory,
                                                            big_file):
    emulator = emulator_factory()
    mount = mount_factory("tenant", emulator=emulator,
                          options=("--write-back-delay", "60s"))
    sh(f"cp {big_file} {mount.path}/big.bin")
    pids = mount.daemon_pids()
    subprocess.run(["fusermount3", "-u", str(mount.path)], check=True)
    for pid in pids:  # the daemon finishes the upload it owes, then exits
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 60,
                   message=f"daemon {pid} did not exit")
    mount.options = ()
    mount.start()
    mount.wait_uploaded()
    assert fresh_read(mount, "big.bin") == sha256(big_file)


def test_two_writers_in_one_folder_then_an_editor_save_over_one(tenant_mount, tmp_path):
    """Through the kernel: two copies into one folder at once both land whole, and
    a file saved editor-style (write new, rename over) reads as the new content
    from the moment ``mv`` returns. A reader racing the save is tested
    deterministically in tests/core/test_races.py."""
    root = tenant_mount.path
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(os.urandom(5 * MiB))
    b.write_bytes(os.urandom(5 * MiB))
    writers = [subprocess.Popen(["cp", str(src), str(root / src.name)]) for src in (a, b)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    tenant_mount.wait_uploaded()
    assert sha256(root / "a.bin") == sha256(a) and sha256(root / "b.bin") == sha256(b)

    new = tmp_path / "new.bin"
    new.write_bytes(os.urandom(6 * MiB))
    sh(f"cp {new} {root}/.a.bin.tmp && mv {root}/.a.bin.tmp {root}/a.bin")
    assert sha256(root / "a.bin") == sha256(new)  # the kernel shows no page of the old one
    assert sorted(os.listdir(root)) == ["a.bin", "b.bin"]
    tenant_mount.wait_uploaded()
    assert fresh_read(tenant_mount, "a.bin") == sha256(new)


def test_deleting_a_file_open_for_reading(tenant_mount, tmp_path):
    """As docs/SEMANTICS.md says: the name goes at once; the open file reads on
    from what is cached (the kernel's page cache or the mount's block cache) and
    a part that nothing fetched fails with ENOENT at the syscall, never wrong
    bytes. Each interleaving is in tests/core/test_races.py."""
    root = tenant_mount.path
    payload = os.urandom(8 * MiB)
    (root / "gone.bin").write_bytes(payload)
    tenant_mount.wait_uploaded()
    fd = os.open(root / "gone.bin", os.O_RDONLY)
    try:
        # a whole block, so it is cached (a first read of 4 KiB would be a
        # piece, kept only in the kernel's pages)
        assert os.pread(fd, MiB, 0) == payload[:MiB]
        os.unlink(root / "gone.bin")
        assert not (root / "gone.bin").exists()
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # not from the kernel's pages
        assert os.pread(fd, 4096, 0) == payload[:4096]
        # 6 MiB on: past any read-ahead of the kernel (1 MiB at most) or of the first read
        with pytest.raises(OSError) as caught:
            os.pread(fd, 4096, 6 * MiB)
        assert caught.value.errno == errno.ENOENT
    finally:
        os.close(fd)
    (root / "after.txt").write_text("the mount goes on\n")
    tenant_mount.remount()
    assert not (root / "gone.bin").exists()
    assert (root / "after.txt").read_text() == "the mount goes on\n"


def test_errors_at_the_syscall(mount_factory, emulator_factory, tmp_path):
    emulator = emulator_factory("--tenant-quota", str(2 * MiB))
    mount = mount_factory("tenant", emulator=emulator)
    # EFBIG while writing past 50 MiB, not after the whole copy
    result = subprocess.run(["dd", "if=/dev/zero", f"of={mount.path}/huge.bin", "bs=1M",
                             "count=60"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "File too large" in result.stderr
    # ENOSPC from fsync when the store's quota is full; the data is kept
    result = subprocess.run(["dd", "if=/dev/urandom", f"of={mount.path}/full.bin", "bs=1M",
                             "count=3", "conv=fsync"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "No space left on device" in result.stderr
    failed = {u["path"]: u for u in mount.status()["uploads"] if u["state"] == "failed"}
    assert "full.bin" in failed, failed
    assert os.path.getsize(failed["full.bin"]["spool"]) == 3 * MiB  # kept, recoverable
    # each refused upload (what dd wrote of huge.bin too) is one line saying where its data is
    mount.expect_log(*(rf"ERROR vagonfs\.upload: upload of {name}\.bin refused by the store: "
                       r".*\(HTTP 507\); the data is kept in " for name in ("full", "huge")))


def test_enoent_when_a_file_vanished_behind_the_mount(mount_factory, emulator_factory):
    emulator = emulator_factory()
    other = mount_factory("tenant", emulator=emulator)
    (other.path / "vanish.txt").write_text("soon gone")
    other.wait_uploaded()
    mount = mount_factory("tenant", emulator=emulator)
    assert "vanish.txt" in os.listdir(mount.path)  # listed, not yet read
    os.unlink(other.path / "vanish.txt")  # deleted through another mount
    with pytest.raises(OSError) as exc:
        (mount.path / "vanish.txt").read_text()
    assert exc.value.errno == errno.ENOENT


def test_a_change_made_elsewhere_shows_within_the_dir_cache_time(mount_factory,
                                                                 emulator_factory):
    emulator = emulator_factory()
    here = mount_factory("vagon", emulator=emulator, subpath="shared",
                         options=("--dir-cache-time", "1s", "--attr-timeout", "1s"))
    there = mount_factory("vagon", emulator=emulator, subpath="shared")
    (there.path / "shared.txt").write_text("first\n")
    there.wait_uploaded()
    assert (here.path / "shared.txt").read_text() == "first\n"
    (there.path / "shared.txt").write_text("second, longer\n")  # another client rewrites it
    there.wait_uploaded()
    time.sleep(2.5)  # past both cache times: the new version, never the cached old bytes
    assert (here.path / "shared.txt").read_text() == "second, longer\n"


def test_unmount_timeout_refuses_rather_than_drop_data(mount_factory, emulator_factory,
                                                       big_file):
    emulator = emulator_factory()
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    emulator.set_faults({"rules": [{"route": "s3.part_put", "latency_ms": 4000}]})
    sh(f"cp {big_file} {mount.path}/big.bin")
    result = vagonfs("unmount", str(mount.path), "--timeout", "1", check=False)
    assert result.returncode == 1 and "still mounted" in result.stderr
    assert is_mounted(mount.path)
    emulator.clear_faults()
    result = vagonfs("unmount", str(mount.path), check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not is_mounted(mount.path)
    mount.start()
    assert sha256(mount.path / "big.bin") == sha256(big_file)
