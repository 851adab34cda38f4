"""Daily use: the demo, mount(8) and fstab, a second mount, stale mounts, file managers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from vagonfs.control.mounttable import is_mounted

from support import wait_until

from .conftest import DaemonLog, kill_mount, sh, vagonfs

DEMO_STORES = ("vagon", "tenant", "shannon")


def test_demo_mounts_all_three_stores_and_ctrl_c_cleans_up(tmp_path):
    """Ctrl-C as a terminal sends it, to the whole process group: the files
    still in their write-back window are uploaded before the emulator stops."""
    demo = _start_demo(tmp_path)
    lines: list[str] = []
    try:
        assert demo.stdout is not None  # stdout=PIPE
        def next_line_says_ready() -> bool:
            assert demo.stdout is not None  # stdout=PIPE
            line = demo.stdout.readline()
            assert line, "demo exited early:\n" + "".join(lines)
            lines.append(line)
            return "Press Ctrl-C" in line

        wait_until(next_line_says_ready, 90, interval=0,
                   message=lambda: "demo not ready:\n" + "".join(lines))
        mnt = tmp_path / "mnt"
        assert all(is_mounted(mnt / store) for store in DEMO_STORES)
        assert "Projects" in os.listdir(mnt / "vagon/shared")
        assert "README.md" in os.listdir(mnt / "tenant")
        assert len(os.listdir(mnt / "shannon")) == 2
        (mnt / "tenant/hello.txt").write_text("kept across demo runs\n")
        (mnt / "vagon/shared/pending.txt").write_text("in its write-back window\n")
    finally:
        out = _ctrl_c(demo, tmp_path)
    assert demo.returncode == 0, "".join(lines) + out
    assert not any(is_mounted(tmp_path / "mnt" / s) for s in DEMO_STORES)
    assert "unmounted" in out
    logs = sorted((tmp_path / ".vagonfs-demo" / "cache").glob("*.log"))
    assert [log.name for log in logs] == ["shannon.log", "tenant.log", "vagon.log"]
    assert "uploaded shared/pending.txt" in logs[2].read_text()
    assert "uploaded hello.txt" in logs[1].read_text()
    assert [problem for log in logs for problem in DaemonLog(log).problems()] == []


def test_ctrl_c_while_the_demo_mounts_leaves_no_mount(tmp_path):
    """Ctrl-C (to the process group) once the first store is mounted, while the
    others are still mounting: the demo unmounts what it mounted and says no
    mount failed."""
    demo = _start_demo(tmp_path)
    mnt = tmp_path / "mnt"
    try:
        def mounted() -> bool:
            assert demo.poll() is None, "demo exited early"
            return is_mounted(mnt / "vagon")

        wait_until(mounted, 90, message="the demo's vagon mount")
    finally:
        out = _ctrl_c(demo, tmp_path)
    left = [store for store in DEMO_STORES if is_mounted(mnt / store)]
    if left:  # cleaned here, so that the failure below is the only trace
        for store in left:
            kill_mount(mnt / store)
    assert left == [], out
    assert demo.returncode == 0 and "a mount failed" not in out, out
    assert "unmounted" in out


def _start_demo(folder) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vagonfs", "demo", str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _ctrl_c(demo: subprocess.Popen, folder) -> str:
    """Ctrl-C as a terminal sends it, to the whole process group; what the
    demo printed. A demo that hangs is killed, and its mounts with it."""
    os.killpg(demo.pid, signal.SIGINT)
    try:
        out, _ = demo.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        _kill_demo(demo, folder)
        raise
    return out


def _kill_demo(demo: subprocess.Popen, folder) -> None:
    """A demo that hung: its mounts killed and cleaned, then the demo (its
    emulator ends with it)."""
    for store in DEMO_STORES:
        kill_mount(folder / "mnt" / store)
    os.killpg(demo.pid, signal.SIGKILL)
    demo.wait()


def test_second_mount_on_the_same_mountpoint_is_refused(vagon_mount, tmp_path):
    result = vagonfs("mount", *vagon_mount.args(), check=False)
    assert result.returncode != 0
    assert "already a mount point" in result.stderr
    vagon_mount.expect_log(r"ERROR vagonfs\.mount: mount failed: .* is already a mount point")


def test_stale_mount_is_detected_and_cleaned_up(vagon_mount):
    for pid in vagon_mount.daemon_pids():
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not vagon_mount.daemon_pids(), 10, message="the daemon is not gone")
    status = vagonfs("status", str(vagon_mount.path), check=False)
    assert status.returncode != 0 and "stale mount" in status.stderr
    result = vagonfs("unmount", str(vagon_mount.path), check=False)
    assert "stale" in result.stderr
    assert not is_mounted(vagon_mount.path)


def _mount_helper_ready():
    return (os.getuid() == 0 and shutil.which("mount.fuse3", path="/sbin:/usr/sbin:/usr/bin")
            and os.path.exists("/usr/local/bin/vagonfs"))


@pytest.mark.skipif(not _mount_helper_ready(),
                    reason="needs root, mount.fuse3 and /usr/local/bin/vagonfs "
                           "(scripts/setup.sh installs it when run as root)")
@pytest.mark.parametrize("how", ["mount -t", "fstab"])
def test_mount_t_fuse_vagonfs_and_an_fstab_line(vagon_mount, tmp_path, how):
    vagon_mount.stop()
    options = (f"config={vagon_mount.config},cache_dir={vagon_mount.cache},"
               f"log_file={vagon_mount.log},attr_timeout=2s,_netdev")
    if how == "fstab":
        fstab = tmp_path / "fstab"
        fstab.write_text(f"emu:shared {vagon_mount.path} fuse.vagonfs {options} 0 0\n")
        command = ["mount", "-T", str(fstab), str(vagon_mount.path)]
    else:
        command = ["mount", "-t", "fuse.vagonfs", "emu:shared", str(vagon_mount.path),
                   "-o", options]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr + vagon_mount.log_text()
    assert is_mounted(vagon_mount.path)
    sh(f"echo via-mount > {vagon_mount.path}/m.txt")
    assert (vagon_mount.path / "m.txt").read_text() == "via-mount\n"
    fstype = sh(f"findmnt -n -o FSTYPE,SOURCE {vagon_mount.path}").split()
    assert fstype == ["fuse.vagonfs", "vagonfs:emu"]


def test_gio_browsing_reads_no_file_contents(mount_factory, demo_emulator):
    if not shutil.which("gio"):
        pytest.skip("gio is not installed (scripts/setup.sh installs libglib2.0-bin)")
    mount = mount_factory("vagon", emulator=demo_emulator, subpath="shared",
                          options=("--xattrs",))
    demo_emulator.reset_stats()
    listing = sh(f"gio list -a 'standard::*' '{mount.path}/Big folder'")
    assert listing.count("\n") == 250
    stats = demo_emulator.stats()
    assert set(stats["requests"]) == {"vagon.files"}, stats  # listings only, no content
    # gio info sniffs the head of a file whose name does not tell its type: that
    # costs one block, not the 64 MiB file
    demo_emulator.reset_stats()
    sh(f"gio info '{mount.path}/Media/sample-video.bin'")
    stats = demo_emulator.stats()
    assert stats["requests"].get("s3.get_object", 0) <= 1, stats
    assert stats["bytes_out"] < 2 * 1024 * 1024, stats
    info = sh(f"stat -c '%s %b %B' '{mount.path}/Media/sample-video.bin'").split()
    size, blocks, unit = map(int, info)
    assert blocks * unit >= size and blocks * unit < size + 8192  # st_blocks as on a disk
    mime = os.getxattr(mount.path / "Docs/README.txt", "user.mime_type")
    assert mime.startswith(b"text/")


def test_status_shows_pending_uploads_and_watch_refreshes(mount_factory):
    mount = mount_factory("tenant", options=("--write-back-delay", "60s"))
    (mount.path / "pending.txt").write_text("not uploaded yet\n")
    text = vagonfs("status", str(mount.path)).stdout
    assert text.startswith("not uploaded yet: 1 file(s)\n"), text  # what a user asks first
    assert "/pending.txt: waiting for the write-back delay" in text, text
    assert "0/17 bytes (0%)" in text, text
    assert "\nrequests: " in text, text  # request counts since the mount
    watch = subprocess.Popen([sys.executable, "-m", "vagonfs", "status", "--watch",
                              str(mount.path)], stdout=subprocess.PIPE, text=True)
    seen: list[str] = []

    def reported_twice() -> bool:  # a report each second, until Ctrl-C
        assert watch.stdout is not None  # stdout=PIPE
        seen.append(watch.stdout.readline())
        return "".join(seen).count("not uploaded yet: 1 file(s)") >= 2

    wait_until(reported_twice, interval=0, message=lambda: "".join(seen))
    watch.send_signal(signal.SIGINT)
    watch.communicate(timeout=30)
    assert watch.returncode == 130
