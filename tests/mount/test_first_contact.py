"""What a new user meets in the first ten minutes, through the real command.

Mounting from the folder that holds a clone, relative paths, a wrong secret,
a dead or wrong URL, a non-empty mountpoint, mounting before the network is
up, the dates a file manager sorts by, what ``status`` says first, and the
control socket a daemon must not leave behind.
"""

from __future__ import annotations

import http.server
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from vagonfs.control import channel
from vagonfs.control.mounttable import is_mounted
from vagonfs.emulator.process import EmulatorProcess
from vagonfs.remote.replies import parse_timestamp

from support import wait_until

from .conftest import DaemonLog, check_daemon_logs, control_socket_listens, sh, vagonfs
from .hanging_store import HangingStore

# the console script, as a user runs it: `python -m vagonfs` would itself be
# shadowed by a folder named vagonfs in its current folder
VAGONFS = str(Path(sys.executable).with_name("vagonfs"))
JAN_2020 = 1577836800


@pytest.fixture
def mounted(tmp_path, request):
    """Mountpoints a test mounts itself; each is unmounted at teardown, then its
    daemon's log is scanned. ``mounted(point, log)`` returns that log; by
    default the one ``mount_cmd`` leaves, ``cache/emu.log`` beside the point."""
    points: list[tuple[Path, DaemonLog]] = []

    def add(point: Path, log: Path | None = None) -> DaemonLog:
        points.append((point, DaemonLog(log or point.parent / "cache" / "emu.log")))
        return points[-1][1]

    yield add
    for point, _ in points:
        if is_mounted(point):
            vagonfs("unmount", str(point), "--timeout", "30", check=False, timeout=60)
        if is_mounted(point):
            subprocess.run(["fusermount3", "-u", "-z", str(point)], capture_output=True)
    check_daemon_logs(request, [log for _, log in points])


def write_config(path: Path, store: str, url: str, key: str = "demo-key",
                 secret: str = "demo-secret") -> Path:
    extra = f'api_secret = "{secret}"\n' if store == "vagon" else ""
    path.write_text(f'[remotes.emu]\ntype = "{store}"\nurl = "{url}"\napi_key = "{key}"\n'
                    + extra)
    path.chmod(0o600)
    return path


def free_port() -> int:
    """A loopback port where nothing listens (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mount_cmd(tmp_path: Path, config: Path, *options: str, cwd=None, timeout: float = 30):
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    return subprocess.run([VAGONFS, "mount", "emu:", str(mnt), "--config", str(config),
                           "--cache-dir", str(tmp_path / "cache"), *options],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_mount_from_the_folder_holding_a_clone_with_relative_paths(demo_emulator, tmp_path,
                                                                   mounted):
    parent = tmp_path / "parent"
    (parent / "vagonfs" / "vagonfs").mkdir(parents=True)  # `git clone … vagonfs` leaves this
    (parent / "vagonfs" / "README.md").write_text("a clone\n")
    write_config(parent / "config.toml", "tenant", demo_emulator.url)
    (parent / "mnt").mkdir()
    mounted(parent / "mnt", parent / "logs" / "vagonfs.log")
    result = subprocess.run([VAGONFS, "mount", "emu:", "mnt", "--config", "config.toml",
                             "--cache-dir", "cache", "--log-file", "logs/vagonfs.log",
                             "-o", "log_level=debug"],
                            cwd=parent, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "README.md" in sh(f"ls {parent}/mnt")
    pid = next(channel.request(parent / "mnt", {"cmd": "status"}))["pid"]
    assert os.readlink(f"/proc/{pid}/cwd") == "/"  # a daemon keeps no folder busy
    assert (parent / "cache" / "emu").is_dir()  # relative paths meant from where it ran
    assert " DEBUG " in (parent / "logs" / "vagonfs.log").read_text()  # -o log_level=debug
    result = subprocess.run([VAGONFS, "unmount", "mnt"], cwd=parent, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert not is_mounted(parent / "mnt")


class _NotTheStore(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def plain_http_server(tmp_path):
    """A tiny web server that is no file store: a page at every store's path."""
    site = tmp_path / "site"
    (site / "api" / "v1").mkdir(parents=True)
    (site / "api" / "v1" / "sessions").write_text("<html>a web page</html>\n")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _NotTheStore(*a, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _refusals(emulator, web: str) -> dict[str, tuple[str, str, dict, list[str]]]:
    url = emulator.url
    port = free_port()
    return {
        "wrong secret": ("vagon", url, {"secret": "wrong"},
                         [f"cannot mount emu: {url} refused the credentials: GET {url}/"
                          "organization-management/v1/files: Invalid signature (HTTP 401); "
                          "check the remote's api_key and api_secret"]),
        "wrong key": ("tenant", url, {"key": "wrong"},
                      [f"cannot mount emu: {url} refused the credentials", "(HTTP 401)",
                       "check the remote's api_key"]),
        "dead url": ("tenant", f"http://127.0.0.1:{port}", {},
                     [f"cannot mount emu: cannot reach http://127.0.0.1:{port} (",
                      "(to mount before the network is up, add --delay-connect)"]),
        "wrong path": ("tenant", f"{url}/wrong", {},
                       [f"cannot mount emu: {url}/wrong does not answer as a tenant file "
                        f"store (GET {url}/wrong/api/v1/files: HTTP 404)",
                        "check the url and the remote's type (tenant)"]),
        "web server 404": ("vagon", web, {},
                           [f"{web} does not answer as the Vagon Teams API (GET {web}/"
                            "organization-management/v1/files: HTTP 404)"]),
        "web page": ("shannon", web, {},
                     [f"{web} does not answer as a Shannon gateway (Shannon sessions: "
                      "unexpected reply from the server"]),
        "tls": ("tenant", url.replace("http://", "https://"), {},
                [f"cannot mount emu: TLS with {url.replace('http://', 'https://')} failed (",
                 "check the url's scheme (https only for a TLS server)"]),
    }


@pytest.mark.parametrize("case", ["wrong secret", "wrong key", "dead url", "wrong path",
                                  "web server 404", "web page", "tls"])
def test_a_store_that_cannot_serve_the_mount_is_refused_at_once(emulator_factory, tmp_path,
                                                                plain_http_server, mounted,
                                                                case):
    emulator = emulator_factory()
    store, url, credentials, messages = _refusals(emulator, plain_http_server)[case]
    config = write_config(tmp_path / "config.toml", store, url, **credentials)
    mounted(tmp_path / "mnt").expect(r"ERROR vagonfs\.mount: mount failed: ")
    emulator.reset_stats()
    result = mount_cmd(tmp_path, config, timeout=30)  # within seconds, or TimeoutExpired
    assert result.returncode == 1
    for message in messages:
        assert message in result.stderr, result.stderr
    assert not is_mounted(tmp_path / "mnt")
    assert not control_socket_listens(tmp_path / "mnt")
    requests = emulator.stats()["requests"]
    assert sum(requests.values()) <= 2, requests  # one check, at most one retry


def test_delay_connect_mounts_before_the_store_is_up(tmp_path, mounted):
    port = free_port()
    config = write_config(tmp_path / "config.toml", "tenant", f"http://127.0.0.1:{port}")
    mounted(tmp_path / "mnt")
    result = mount_cmd(tmp_path, config, "-o", "delay_connect,dir_cache_time=0s")
    assert result.returncode == 0, result.stderr
    # the store is still down: the first access waits out the retries, then fails
    ls = subprocess.run(["ls", str(tmp_path / "mnt")], capture_output=True, text=True,
                        timeout=90)
    assert ls.returncode != 0 and "Input/output error" in ls.stderr, ls.stderr
    with EmulatorProcess(tmp_path / "emulator", port=port, args=("--seed-demo",)):
        assert "README.md" in sh(f"ls {tmp_path}/mnt")  # the network is up: it works


def test_mount_gives_up_at_its_timeout_when_the_daemon_never_reports(tmp_path, mounted):
    """A store that accepts connections and never answers: the daemon's own
    check waits 10 s for it, silent meanwhile; ``--mount-timeout 2s`` holds
    anyway (a blocking read of the daemon's pipe waited for the check's
    answer), and the daemon is stopped."""
    hanging = HangingStore()
    config = write_config(tmp_path / "config.toml", "tenant", f"http://127.0.0.1:{hanging.port}")
    mounted(tmp_path / "mnt")
    try:
        result = mount_cmd(tmp_path, config, "--mount-timeout", "2s", timeout=30)
    finally:
        hanging.close()
    assert result.returncode == 1
    stopped = re.search(r"^vagonfs: the mount did not become ready in 2 s; stopped its daemon "
                        r"\(pid (\d+)\) \(log: ", result.stderr)
    assert stopped, result.stderr
    assert not os.path.exists(f"/proc/{stopped.group(1)}")  # stopped and reaped
    assert hanging.accepted >= 1  # the daemon was waiting on the store, not dead
    assert not is_mounted(tmp_path / "mnt")


@pytest.mark.parametrize("allow", [None, "--allow-non-empty", "-o allow_non_empty"])
def test_non_empty_mountpoint_is_refused_unless_allowed(demo_emulator, tmp_path, mounted,
                                                        allow):
    config = write_config(tmp_path / "config.toml", "tenant", demo_emulator.url)
    (tmp_path / "mnt").mkdir()
    (tmp_path / "mnt" / "kept.txt").write_text("mine\n")
    log = mounted(tmp_path / "mnt")
    result = mount_cmd(tmp_path, config, *(allow.split() if allow else ()))
    if allow is None:
        assert result.returncode == 1
        assert (f"vagonfs: cannot mount emu: {tmp_path}/mnt is not empty, and a mount would "
                "hide what it holds; use an empty folder, or --allow-non-empty "
                "(-o allow_non_empty) to mount over it anyway") in result.stderr
        assert not is_mounted(tmp_path / "mnt")
        assert not control_socket_listens(tmp_path / "mnt")
        log.expect(r"ERROR vagonfs\.mount: mount failed: .* is not empty")
    else:
        assert result.returncode == 0, result.stderr
        assert sorted(os.listdir(tmp_path / "mnt")) == ["README.md", "data", "docs"]
        vagonfs("unmount", str(tmp_path / "mnt"))
    assert (tmp_path / "mnt" / "kept.txt").read_text() == "mine\n"


def test_no_date_is_1970(mount_factory, demo_emulator):
    """Tenant folders have no time of their own and the deployed Shannon
    gateway sends none: they show their session's time, their newest file's,
    or the listing's, never the epoch."""
    tenant = mount_factory("tenant", emulator=demo_emulator,
                           options=("--dir-cache-time", "0s", "--attr-timeout", "0s"))
    shannon = mount_factory("shannon", emulator=demo_emulator)
    for mount in (tenant, shannon):
        for folder, dirs, files in os.walk(mount.path):
            for name in [".", *dirs, *files]:
                mtime = os.stat(os.path.join(folder, name)).st_mtime
                assert JAN_2020 < mtime < time.time() + 60, (folder, name, mtime)
    # a tenant folder, once listed, dates from its newest file
    newest = max(p.stat().st_mtime for p in (tenant.path / "data").iterdir())
    assert (tenant.path / "data").stat().st_mtime == newest
    # what a Shannon session holds dates from the session's last update
    sessions = httpx.get(f"{demo_emulator.url}/api/v1/sessions",
                         headers={"X-API-Key": demo_emulator.api_key}).json()["sessions"]
    for session in sessions:
        updated = parse_timestamp(session["updated_at"])
        folder = shannon.path / session["session_id"]
        assert folder.stat().st_mtime == updated
        assert {p.stat().st_mtime for p in folder.iterdir()} == {updated}


def test_status_begins_with_whether_everything_is_uploaded(mount_factory):
    mount = mount_factory("tenant", options=("--write-back-delay", "60s"))
    assert vagonfs("status", str(mount.path)).stdout.startswith("everything is uploaded\n")
    (mount.path / "report.txt").write_text("draft\n")
    text = vagonfs("status", str(mount.path)).stdout
    assert text.startswith(f"not uploaded yet: 1 file(s)\n  {mount.path}/report.txt: waiting "
                           "for the write-back delay or a free upload slot, 0/6 bytes "
                           "(0%)\n"), text


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signalled_daemon_unmounts_and_stops_listening(tenant_mount, sig):
    assert control_socket_listens(tenant_mount.path)
    (pid,) = tenant_mount.daemon_pids()
    os.kill(pid, sig)
    wait_until(lambda: not (tenant_mount.daemon_pids() or is_mounted(tenant_mount.path)),
               message="the daemon did not exit and unmount")
    assert not is_mounted(tenant_mount.path)
    assert not control_socket_listens(tenant_mount.path)


def test_unmount_of_a_killed_daemon_cleans_up_the_stale_mount(tenant_mount):
    for pid in tenant_mount.daemon_pids():
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not tenant_mount.daemon_pids(), 10, message="the daemon is not gone")
    # its control socket goes with it (an abstract socket is no file): once the
    # last of its threads has ended, which may be after pgrep stopped seeing
    # the process (the main thread's exit empties its command line)
    wait_until(lambda: not control_socket_listens(tenant_mount.path), 10,
               message="the killed daemon's control socket still listens")
    result = vagonfs("unmount", str(tenant_mount.path), check=False)
    assert "stale" in result.stderr
    assert not is_mounted(tenant_mount.path)


@pytest.fixture
def tree_with_links(tmp_path):
    """A tree as a tarball or a source folder would bring it: files, relative,
    absolute and dangling links."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.txt").write_text("beta\n")
    os.symlink("a.txt", src / "rel")
    os.symlink("../a.txt", src / "sub" / "up")
    os.symlink("/etc/hostname", src / "abs")
    os.symlink("nowhere/at all", src / "dangling")
    sh(f"tar cf {tmp_path}/tree.tar -C {tmp_path} src")
    return src


def _shape(root: Path) -> list[tuple[str, str, str]]:
    """(path, type, link target) of everything under ``root``."""
    return sorted((str(p.relative_to(root)), "l" if p.is_symlink() else "d" if p.is_dir()
                   else "f", os.readlink(p) if p.is_symlink() else "")
                  for p in root.rglob("*"))


@pytest.mark.parametrize("store, subpath", [("vagon", "shared"), ("tenant", "")])
def test_tar_x_and_rsync_a_keep_links_with_links(mount_factory, tree_with_links, tmp_path,
                                                 store, subpath):
    mount = mount_factory(store, subpath=subpath, options=("--links",))
    sh(f"mkdir {mount.path}/t && tar xf {tmp_path}/tree.tar -C {mount.path}/t")
    assert _shape(mount.path / "t" / "src") == _shape(tree_with_links)
    assert (mount.path / "t" / "src" / "sub" / "up").read_text() == "alpha\n"  # followed
    sh(f"rsync -a {tree_with_links}/ {mount.path}/r/")
    assert _shape(mount.path / "r") == _shape(tree_with_links)
    again = sh(f"rsync -ai {tree_with_links}/ {mount.path}/r/").splitlines()
    # nothing sent again: links and files kept their times (folders keep the store's)
    assert [line for line in again if not line.startswith(".d..t...... ")] == [], again
    mount.remount()
    assert _shape(mount.path / "r") == _shape(tree_with_links)
    # on the store, each link is a small file holding its target
    mount.stop()
    plain = mount_factory(store, emulator=mount.emulator, subpath=subpath)
    stored = plain.path / "r" / "rel.vagonfslink"
    assert stored.read_text() == "a.txt" and not stored.is_symlink()
    assert sorted(os.listdir(plain.path / "r")) == [
        "a.txt", "abs.vagonfslink", "dangling.vagonfslink", "rel.vagonfslink", "sub"]


def test_without_links_a_symlink_is_refused_with_eperm(tenant_mount, tree_with_links,
                                                       tmp_path):
    ln = subprocess.run(["ln", "-s", "a.txt", str(tenant_mount.path / "rel")],
                        capture_output=True, text=True, timeout=30)
    assert ln.returncode != 0 and "Operation not permitted" in ln.stderr
    tar = subprocess.run(["tar", "xf", f"{tmp_path}/tree.tar", "-C", str(tenant_mount.path)],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "LC_ALL": "C"})
    assert tar.returncode != 0
    assert "src/rel: Cannot create symlink to 'a.txt': Operation not permitted" in tar.stderr
    assert (tenant_mount.path / "src" / "a.txt").read_text() == "alpha\n"  # the rest arrived
