"""The benchmark's rig: the processes and mounts ``scripts/bench.py`` measures, and its tools.

Everything here starts something, stops it, or reads a figure off the
machine; the cases and their targets are in ``bench.py``. Each service (the
emulator with its test data, the rclone WebDAV server, local files) is made
the first time a case needs it, so a subset of the cases costs only its own
set-up. Every mount is fresh (its own mountpoint and empty cache dir) and is
unmounted when its ``with`` block ends, even on failure.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vagonfs.config import Remote  # noqa: E402
from vagonfs.control import channel  # noqa: E402
from vagonfs.emulator.process import EmulatorProcess  # noqa: E402
from vagonfs.remote.factory import open_store  # noqa: E402
from vagonfs.remote.vagon.store import VagonStore  # noqa: E402
from wan_link import LinkSettings, RunningLink, running_link  # noqa: E402

MiB = 1 << 20
MB = 1e6
VAGONFS = [sys.executable, "-m", "vagonfs"]
LONG = 3600  # seconds: no command of the bench may hang longer than this
# the bench's write-back delay, given to both vagonfs and rclone so their
# "until confirmed" figures wait the same time before uploading
WRITE_BACK_DELAY = 0.5  # seconds
# how often rclone's "until confirmed" looks at the server (vagonfs's answers
# ``vagonfs sync``: asking its status every 0.1 s cost 9% of the daemon's main
# thread while 1,000 small files uploaded, every 20 ms 18%)
CONFIRM_POLL = 0.1


def run(*argv, timeout: float = LONG, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True,
                          timeout=timeout, **kw)


def sh(command: str, timeout: float = LONG) -> str:
    return run("sh", "-c", command, timeout=timeout).stdout


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def wait_for(what: str, ready, timeout: float, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout:.0f} s")
        time.sleep(interval)


def drop_page_cache() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def into_page_cache(path: Path) -> None:
    sh(f"cat '{path}' > /dev/null")


def dd_read(path: Path, size: int) -> float:
    """Seconds for ``dd bs=1M`` to read the first ``size`` bytes of ``path`` (a file
    of the mount whole; a cache file without its index); a short read is an error,
    not a figure."""
    start = time.perf_counter()
    done = run("dd", f"if={path}", "of=/dev/null", "bs=1M", f"count={size}", "iflag=count_bytes")
    seconds = time.perf_counter() - start
    copied = re.search(r"^(\d+) bytes", done.stderr, re.M)
    if not copied or int(copied.group(1)) != size:
        raise RuntimeError(f"dd read {copied and copied.group(1)} of {size} bytes: {done.stderr}")
    return seconds


def rsync_up(source: Path, dest: Path, wait_on_server) -> tuple[float, float]:
    """Seconds until ``rsync -a`` returns, and until ``wait_on_server()`` returns
    (all the files are on the server)."""
    start = time.perf_counter()
    run("rsync", "-a", f"{source}/", f"{dest}/")
    returned = time.perf_counter() - start
    wait_on_server()
    return returned, time.perf_counter() - start


def copy_synced(source: Path, dest: Path) -> None:
    """``cp``, then ``fsync`` of the copy: what a careful program does before it
    calls a file written."""
    run("cp", source, dest)
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_local_file(path: Path, size: int) -> Path:
    block = hashlib.sha256(b"bench").digest() * (MiB // 32)
    with open(path, "wb") as fh:
        for i in range(-(-size // MiB)):
            fh.write((block[:-8] + i.to_bytes(8, "little"))[:size - i * MiB])
    return path


def make_small_files(folder: Path, count: int, size: int = 4096) -> Path:
    folder.mkdir()
    for i in range(count):
        (folder / f"s{i:05d}.dat").write_bytes(os.urandom(size))
    return folder


def same_files(a: Path, b: Path) -> None:
    """Raise unless the two folders hold the same files with the same bytes."""
    run("diff", "-r", "-q", a, b)


# -- the kernel's side of a FUSE mount ------------------------------------------------------

def bdi_read_ahead(mountpoint: Path) -> Path:
    """The mount's read-ahead knob: /sys/class/bdi/<major:minor>/read_ahead_kb, the
    device number from ``stat`` of the mountpoint (FUSE names its bdi that way)."""
    dev = os.stat(mountpoint).st_dev
    return Path(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb")


def read_ahead_kb(mountpoint: Path) -> int:
    return int(bdi_read_ahead(mountpoint).read_text())


def set_read_ahead_kb(mountpoint: Path, kb: int) -> None:
    bdi_read_ahead(mountpoint).write_text(f"{kb}\n")


def mounted(path: Path) -> bool:
    return os.path.ismount(path)


def unmount_fuse(path: Path) -> None:
    if mounted(path):
        if subprocess.run(["fusermount3", "-u", str(path)], capture_output=True).returncode:
            subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB (10^6 bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError(f"no VmHWM for pid {pid}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_running(*argv_parts: str) -> int:
    """The process whose command line holds all of ``argv_parts``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if all(part.encode() in argv for part in argv_parts):
                    return int(entry.name)
    raise RuntimeError(f"no process runs {' '.join(argv_parts)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- vagonfs ----------------------------------------------------------------------------------

class VagonMount:
    """A fresh ``vagonfs mount`` of the emulator's shared files.

    On leaving, the daemon's peak RSS goes into ``rss`` under ``memory_case``
    (every such mount is one case of the "peak RSS in every case" row).
    """

    def __init__(self, rig: Rig, name: str, *options: str, memory_case: str | None = None):
        self.rig = rig
        self.path = rig.work / f"mnt-{name}"
        self.cache = rig.work / f"cache-{name}"
        self.options = options
        self.memory_case = memory_case
        self.pid = 0
        self.path.mkdir()

    def __enter__(self) -> VagonMount:
        run(*VAGONFS, "mount", "--config", self.rig.config, "--cache-dir", self.cache,
            "--write-back-delay", f"{WRITE_BACK_DELAY}s", "--cache-max-size", "20G",
            *self.options,
            "vagon:shared", self.path, timeout=120)
        try:
            self.pid = self.status()["pid"]
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.memory_case and self.pid:
                peak = round(peak_rss_mb(self.pid), 1)  # the worst of a case's rounds
                self.rig.rss[self.memory_case] = max(peak, self.rig.rss.get(self.memory_case, 0))
        finally:
            done = subprocess.run([*VAGONFS, "unmount", str(self.path)], capture_output=True,
                                  timeout=LONG)
            if done.returncode:
                print(f"  vagonfs unmount {self.path}: {done.stderr.decode().strip()}")
            unmount_fuse(self.path)

    def status(self) -> dict:
        return next(channel.request(self.path, {"cmd": "status"}))

    def peak_rss_mb(self) -> float:
        return peak_rss_mb(self.pid)

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def wait_uploaded(self, *, after_write_back_delay: bool = False,
                      timeout: float = LONG) -> None:
        """Until the server confirmed every upload: ``vagonfs sync``, which the
        daemon answers once the store has, polling nothing. Sync uploads at
        once, so files just closed (``after_write_back_delay``) first wait out
        the bench's write-back delay, as rclone's do and as they did here when
        this waited on ``status``: the figure keeps its meaning."""
        if after_write_back_delay:
            time.sleep(WRITE_BACK_DELAY)
        done = subprocess.run([*VAGONFS, "sync", str(self.path), "--timeout", str(timeout)],
                              capture_output=True, text=True, timeout=timeout + 60)
        if done.returncode:
            raise RuntimeError(f"uploads not confirmed: {done.stderr.strip()}")

    def wait_cached(self, size: int, timeout: float = 120) -> None:
        """Until the block cache holds ``size`` bytes (it may store blocks after serving them)."""
        wait_for("block cache", lambda: self.status()["cache"]["used"] >= size, timeout)

    def copy_in(self, local: Path, name: str) -> None:
        """``cp`` then ``fsync`` of the copy, until the server confirmed it."""
        copy_synced(local, self.path / name)
        self.wait_uploaded()

    def wait_read_ahead(self, kb: int, timeout: float = 10) -> int:
        """The mount's read_ahead_kb once it is ``kb`` (the daemon sets it just
        after mounting), else what it still is after ``timeout``: a row then
        says the read-ahead it really had."""
        with contextlib.suppress(TimeoutError):
            wait_for("read-ahead", lambda: read_ahead_kb(self.path) == kb, timeout)
        return read_ahead_kb(self.path)


# -- the zero-work filesystem -----------------------------------------------------------------

@contextlib.contextmanager
def fuse_process(what: str, path: Path, argv: list[str]):
    """A filesystem process (``argv``) mounted at ``path`` until the block ends,
    then unmounted and stopped. Its stderr goes to ``<path>.log`` (a pipe
    nobody reads could fill and stall it) and is the reason given when it
    exits instead of mounting."""
    log = path.with_name(path.name + ".log")
    with open(log, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_for(f"{what} mount", lambda: mounted(path) or proc.poll() is not None, 30)
        if not mounted(path):
            raise RuntimeError(f"{what} did not mount (exit {proc.poll()}): "
                               f"{log.read_text(errors='replace').strip()[-2000:]}")
        yield path
    finally:
        unmount_fuse(path)
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def zero_mount(work: Path, size: int, store_ahead: bool = False):
    """``scripts/zero_fs.py`` mounted with a ``zero.bin`` of ``size`` bytes
    (storing ahead as vagonfs does, with ``store_ahead``)."""
    path = work / ("mnt-zero-store" if store_ahead else "mnt-zero")
    path.mkdir(exist_ok=True)
    with fuse_process("zero_fs", path, [sys.executable, str(ROOT / "scripts" / "zero_fs.py"),
                                        str(path), "--size", str(size),
                                        *(["--store-ahead"] if store_ahead else [])]):
        yield path


# -- rclone, the peer -------------------------------------------------------------------------

def ensure_rclone() -> None:
    """The Debian package, installed when missing (apt's lists refreshed only if needed)."""
    if shutil.which("rclone"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "rclone"]
    if subprocess.run(install, capture_output=True, env=env).returncode:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env)
        subprocess.run(install, capture_output=True, env=env)
    if not shutil.which("rclone"):
        raise RuntimeError("rclone is not installed and apt-get could not install it")


class RcloneServer:
    """``rclone serve webdav`` of a local folder: the peer's server, whose
    folder shows at once what has reached it. With ``link`` settings, its mounts
    reach it through a simulated link of its own (``scripts/wan_link.py``)."""

    def __init__(self, work: Path, link: LinkSettings | None = None,
                 cache_mode: str = "full"):
        ensure_rclone()
        self.work = work
        self.cache_mode = cache_mode
        self._stack = contextlib.ExitStack()
        self.share = work / "webdav"
        self.share.mkdir()
        self.config = work / "rclone.conf"  # empty: nothing read from or written to ~
        self.config.write_text("")
        port = free_port()
        address = f"127.0.0.1:{port}"
        self.url = f"http://{address}"
        self.link = None if link is None else \
            self._stack.enter_context(running_link(("127.0.0.1", port), link))
        self.mount_url = self.url if self.link is None else self.link.url
        self.proc = subprocess.Popen(
            ["rclone", "serve", "webdav", str(self.share), "--addr", address,
             "--config", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.request("PROPFIND", self.url, headers={"Depth": "0"}).is_success
            return False
        wait_for("rclone serve webdav", answers, 30, 0.1)

    def stop(self) -> None:
        self._stack.close()
        self.proc.terminate()
        self.proc.wait(30)

    def landed(self, folder: str) -> dict[str, int]:
        """Name -> size of the files in the served ``folder`` (``""``: its top),
        looked at on disk, which costs rclone nothing."""
        try:
            with os.scandir(self.share / folder) as it:
                return {e.name: e.stat().st_size for e in it if e.is_file()}
        except FileNotFoundError:
            return {}

    def wait_landed(self, folder: str, sizes: dict[str, int]) -> None:
        """Until ``folder`` holds every file of ``sizes`` at its full size: rclone's
        "until on the server"."""
        def all_landed() -> bool:
            landed = self.landed(folder)
            return all(landed.get(name) == size for name, size in sizes.items())
        wait_for("rclone's uploads", all_landed, 600, CONFIRM_POLL)

    @contextlib.contextmanager
    def mount(self, name: str):
        """A fresh ``rclone mount`` of the share, with its own empty cache dir and
        the same write-back delay as vagonfs's mounts in the bench."""
        path = self.work / f"mnt-rclone-{name}"
        path.mkdir()
        with fuse_process("rclone", path, [
                "rclone", "mount", ":webdav:", str(path), "--webdav-url", self.mount_url,
                "--config", str(self.config), "--cache-dir", str(self.work / f"rclone-cache-{name}"),
                "--vfs-cache-mode", self.cache_mode, "--vfs-write-back", f"{WRITE_BACK_DELAY}s"]):
            yield path


# -- the rig ----------------------------------------------------------------------------------

class Rig:
    """What the cases share, each part made on first use and undone by ``close``.

    With ``link`` settings (the WAN mode), the mounts reach the emulator through
    a simulated link (``store_link``), and so do the download and part-upload
    links it hands out (its ``--public-url``); rclone's mounts reach its server
    through a link of their own with the same settings. The bench's own calls
    (``remote``: set-up, checks, admin) go to the emulator directly."""

    def __init__(self, work: Path, size: int, link: LinkSettings | None = None,
                 rclone_cache_mode: str = "full"):
        self.work = work
        self.size = size  # the big file's
        self.link = link
        self.rclone_cache_mode = rclone_cache_mode
        self.rss: dict[str, float] = {}  # memory case -> the daemon's peak RSS, MB
        self.store_link: RunningLink | None = None  # in front of the emulator, with `link`
        self._stack = contextlib.ExitStack()

    # the emulator and the files on it
    @functools.cached_property
    def emulator(self) -> EmulatorProcess:
        if self.link is None:
            return EmulatorProcess(self.work / "emulator").start()
        port = free_port()
        self.store_link = self._stack.enter_context(running_link(("127.0.0.1", port), self.link))
        return EmulatorProcess(self.work / "emulator", port=port,
                               args=("--public-url", self.store_link.url)).start()

    @functools.cached_property
    def remote(self) -> Remote:
        e = self.emulator
        if e.url is None:
            raise RuntimeError("the emulator has not said where it listens")
        return Remote("vagon", "vagon", e.url, e.api_key, e.api_secret)

    @functools.cached_property
    def config(self) -> Path:
        """The mounts' remote: the emulator, through the link when there is one."""
        direct = self.remote.url  # starts the emulator, and its link
        url = self.store_link.url if self.store_link else direct
        path = self.work / "config.toml"
        path.write_text(f'[remotes.vagon]\ntype = "vagon"\nurl = "{url}"\n'
                        f'api_key = "{self.remote.api_key}"\n'
                        f'api_secret = "{self.remote.api_secret}"\n')
        path.chmod(0o600)
        return path

    @functools.cached_property
    def big_name(self) -> str:
        """A file of ``size`` bytes in the emulator's shared files."""
        self.populate(0, 1, "big", size=self.size)
        return "big000000"

    @functools.cached_property
    def emulator_pid(self) -> int:
        return pid_running("emulator", "--data", str(self.emulator.data_dir))

    @contextlib.contextmanager
    def cpu_use(self, mount: VagonMount | None = None):
        """The share of one core the emulator (and the mount's daemon) used during
        the block, filled in at its end: an emulator near 100% means the row
        measures the emulator, not vagonfs."""
        pids = {"emulator_cpu": self.emulator_pid, **({"daemon_cpu": mount.pid} if mount else {})}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        start = time.perf_counter()
        shares: dict[str, str] = {}
        yield shares
        seconds = time.perf_counter() - start
        shares.update({name: f"{(cpu_seconds(pid) - before[name]) / seconds:.0%}"
                       for name, pid in pids.items()})

    def populate(self, parent_id: int, count: int, prefix: str, **kw) -> list[int]:
        """Make ``count`` entries named ``{prefix}{i:06d}`` (docs/EMULATOR.md, Admin)."""
        reply = self.emulator.admin("POST", "/_admin/populate", json={
            "store": "vagon", "parent_id": parent_id, "count": count, "prefix": prefix, **kw})
        return reply.get("ids") or []

    def api_calls(self) -> int:
        return sum(self.emulator.stats()["requests"].values())

    def mount(self, name: str, *options: str, memory_case: str | None = None) -> VagonMount:
        return VagonMount(self, name, *options, memory_case=memory_case)

    # the client's own calls: the baselines vagonfs is measured against
    async def _shared(self, store, *path: str):
        entry = await store.lookup(await store.root(), "shared")
        for name in path:
            entry = await store.lookup(entry, name)
        return entry

    def download_link(self, name: str) -> str:
        """The presigned link vagonfs would read ``name`` from, asked as it asks it."""
        async def link() -> str:
            async with open_store(self.remote) as (store, _):
                entry = await self._shared(store, name)
                if not isinstance(store, VagonStore):
                    raise TypeError(f"the benchmark's store is Vagon, not {type(store).__name__}")
                reply = await store.api.download_link(entry.key.id)
                return str(httpx.URL(store.api.base_url).join(reply["url"]))
        return trio.run(link)

    def direct_upload(self, local: Path, name: str) -> None:
        """The client's multipart upload of ``local``, as vagonfs's upload queue calls it."""
        async def upload() -> None:
            async with open_store(self.remote) as (store, _):
                shared = await self._shared(store)
                with open(local, "rb") as source:
                    await store.upload(shared, name, source, local.stat().st_size)
        trio.run(upload)

    def server_files(self, *path: str) -> dict[str, int]:
        """Name -> size of what the server lists in shared/<path>."""
        async def listing() -> dict[str, int]:
            async with open_store(self.remote) as (store, _):
                folder = await self._shared(store, *path)
                return {e.name: e.size async for page in store.list(folder) for e in page}
        return trio.run(listing)

    def warm_server(self) -> None:
        """Drop the page cache, then have the emulator read the big file once:
        the server's side warm (as an object store's would be), ours cold."""
        drop_page_cache()
        run("curl", "-sS", "-o", "/dev/null", self.download_link(self.big_name))

    # local files
    @functools.cached_property
    def local_file(self) -> Path:
        return make_local_file(self.work / "local.bin", self.size)

    def small_files(self, count: int) -> Path:
        folder = self.work / f"small-{count}"
        return folder if folder.exists() else make_small_files(folder, count)

    # the peer
    @functools.cached_property
    def rclone(self) -> RcloneServer:
        return RcloneServer(self.work, self.link, self.rclone_cache_mode)

    def close(self) -> None:
        if "rclone" in self.__dict__:
            self.rclone.stop()
        if "emulator" in self.__dict__:
            self.emulator.stop()
        self._stack.close()
