#!/usr/bin/env python3
"""The vagonfs benchmark: each figure side by side with its baseline, in one run.

Starts the emulator, mounts it, and measures sequential reads (cold and warm),
a sequential write to confirmation, ``ls -l`` of a 10,000-entry folder, 1,000
small files up and down, the daemon's peak memory, and a peer row (rclone
mount of a WebDAV share served by rclone from a local folder). Prints a table
of ratios to the baselines and writes the figures as JSON.

    .venv/bin/python scripts/bench.py [--size-mib 1024] [--big-mib 4096] [--json FILE]

Root is needed for dropping the kernel page cache between cold runs; the
peer row needs the Debian package ``rclone`` (installed here when missing).
Timings are wall time on this machine; API calls are counted by the emulator.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vagonfs.config import Remote  # noqa: E402
from vagonfs.emulator.process import EmulatorProcess  # noqa: E402
from vagonfs.remote.factory import open_store  # noqa: E402

MiB = 1 << 20
VAGONFS = [sys.executable, "-m", "vagonfs"]


def run(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def drop_page_cache() -> None:
    if os.geteuid() == 0:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")


def make_local_file(path: Path, size: int) -> None:
    block = hashlib.sha256(b"bench").digest() * (MiB // 32)
    with open(path, "wb") as fh:
        for i in range(size // MiB):
            fh.write(block[:-8] + i.to_bytes(8, "little"))


class Mount:
    """One vagonfs mount of the emulator's Vagon shared files, with a fresh cache."""

    def __init__(self, work: Path, config: Path, name: str, *options: str):
        self.path = work / f"mnt-{name}"
        self.cache = work / f"cache-{name}"
        self.config = config
        self.options = options
        self.path.mkdir()

    def __enter__(self):
        run(*VAGONFS, "mount", "--config", str(self.config), "--cache-dir", str(self.cache),
            "--write-back-delay", "0.5s", "--cache-max-size", "20G", *self.options,
            "vagon:shared", str(self.path))
        return self

    def __exit__(self, *exc):
        subprocess.run([*VAGONFS, "unmount", str(self.path)], capture_output=True)

    def status(self) -> dict:
        return json.loads(run(*VAGONFS, "status", "--json", str(self.path)).stdout)

    def pid(self) -> int:
        return self.status()["pid"]

    def reset_peak_rss(self) -> None:
        Path(f"/proc/{self.pid()}/clear_refs").write_text("5\n")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid()}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def wait_uploaded(self) -> None:
        while self.status()["uploads"]:
            time.sleep(0.05)

    def fsync(self, relpath: str) -> None:
        fd = os.open(self.path / relpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Results:
    def __init__(self):
        self.rows: list[dict] = []

    def add(self, case: str, value: float, unit: str, baseline: float | None = None,
            baseline_name: str = "", target: str = "", met: bool | None = None, **extra):
        ratio = value / baseline if baseline else None
        self.rows.append({"case": case, "value": round(value, 3), "unit": unit,
                          "baseline": round(baseline, 3) if baseline else None,
                          "baseline_name": baseline_name,
                          "ratio": round(ratio, 2) if ratio else None, "target": target,
                          "met": met, **extra})
        shown = f"{value:10.2f} {unit}"
        if ratio is not None:
            shown += f"  vs {baseline:.2f} ({baseline_name}): {ratio:.2f}x"
        print(f"{case:<48} {shown}", flush=True)

    def table(self) -> str:
        lines = ["| case | vagonfs | baseline | ratio | target | met |",
                 "|---|---|---|---|---|---|"]
        for r in self.rows:
            base = f"{r['baseline']} {r['unit']} ({r['baseline_name']})" if r["baseline"] else ""
            met = {True: "yes", False: "**no**", None: ""}[r["met"]]
            lines.append(f"| {r['case']} | {r['value']} {r['unit']} | {base} | "
                         f"{r['ratio'] or ''} | {r['target']} | {met} |")
        return "\n".join(lines)


def mb_per_s(size: int, seconds: float) -> float:
    return size / MiB / seconds


async def direct_read(remote: Remote, name: str) -> int:
    """The baseline read: one streaming GET of the object, with the client."""
    async with open_store(remote) as (store, _):
        shared = await store.lookup(await store.root(), "shared")
        entry = await store.lookup(shared, name)
        total = 0
        async with store.read(entry, 0, None) as chunks:
            async for chunk in chunks:
                total += len(chunk)
        return total


async def direct_upload(remote: Remote, path: Path, name: str) -> None:
    """The baseline write: the client's multipart upload of the same file."""
    async with open_store(remote) as (store, _):
        shared = await store.lookup(await store.root(), "shared")
        with open(path, "rb") as source:
            await store.upload(shared, name, source, path.stat().st_size)


def bench_vagonfs(work: Path, res: Results, size: int, big: int) -> dict:
    emulator = EmulatorProcess(work / "emulator")
    emulator.start()
    try:
        remote = Remote("vagon", "vagon", emulator.url, emulator.api_key, emulator.api_secret)
        config = work / "config.toml"
        config.write_text(f'[remotes.vagon]\ntype = "vagon"\nurl = "{emulator.url}"\n'
                          f'api_key = "{emulator.api_key}"\napi_secret = "{emulator.api_secret}"\n')
        config.chmod(0o600)
        emulator.admin("POST", "/_admin/populate", json={
            "store": "vagon", "parent_id": 0, "count": 1, "prefix": "big", "size": size})
        name = "big000000"
        local = work / "local.bin"
        make_local_file(local, size)

        # 1. cold sequential read vs one streaming GET
        drop_page_cache()
        direct = timed(lambda: trio.run(direct_read, remote, name))
        figures = {}
        for tool, cmd in (("cat (128 KiB reads)", "cat '{p}' > /dev/null"),
                          ("dd bs=1M", "dd if='{p}' of=/dev/null bs=1M status=none")):
            with Mount(work, config, f"cold-{tool.split()[0]}") as m:
                drop_page_cache()
                m.reset_peak_rss()
                t = timed(lambda: run("sh", "-c", cmd.format(p=m.path / name)))
                res.add(f"cold read {size >> 20} MiB, {tool}", mb_per_s(size, t), "MB/s",
                        mb_per_s(size, direct), "direct GET", ">= 0.8",
                        t and direct / t >= 0.8)
                figures.setdefault("peak_rss_read", m.peak_rss_mib())
                if tool.startswith("dd"):
                    # 2. warm: the kernel page cache, then vagonfs's own block cache
                    t_page = timed(lambda: run("sh", "-c", cmd.format(p=m.path / name)))
                    drop_page_cache()
                    run("sh", "-c", f"cat '{local}' > /dev/null")  # into the page cache
                    t_local = timed(lambda: run("sh", "-c", f"cat '{local}' > /dev/null"))
                    res.add("warm read, page cache", mb_per_s(size, t_page), "MB/s",
                            mb_per_s(size, t_local), "local file", ">= 0.5",
                            t_local / t_page >= 0.5)
                    # without the page cache: vagonfs's blocks vs the local file, both
                    # read from disk
                    drop_page_cache()
                    t_cache = timed(lambda: run("sh", "-c", cmd.format(p=m.path / name)))
                    drop_page_cache()
                    t_disk = timed(lambda: run("sh", "-c", f"cat '{local}' > /dev/null"))
                    res.add("warm read, vagonfs block cache", mb_per_s(size, t_cache), "MB/s",
                            mb_per_s(size, t_disk), "local file from disk", ">= 0.5",
                            t_disk / t_cache >= 0.5)
        res.add("memory: daemon peak RSS, cold read", figures["peak_rss_read"], "MiB",
                target="< 250", met=figures["peak_rss_read"] < 250)

        # 3. sequential write to confirmation vs the client's multipart upload
        direct_w = timed(lambda: trio.run(direct_upload, remote, local, "direct.bin"))
        with Mount(work, config, "write") as m:
            m.reset_peak_rss()

            def cp_and_fsync():
                run("cp", str(local), str(m.path / "written.bin"))
                m.fsync("written.bin")
            t = timed(cp_and_fsync)
            res.add(f"write {size >> 20} MiB (cp + fsync, confirmed)", mb_per_s(size, t), "MB/s",
                    mb_per_s(size, direct_w), "direct multipart", ">= 0.8", direct_w / t >= 0.8)
            peak = m.peak_rss_mib()
            res.add("memory: daemon peak RSS, write", peak, "MiB", target="< 250", met=peak < 250)

        # 4. ls -l of 10,000 entries, cold and warm, with API calls
        folder = emulator.admin("POST", "/_admin/populate", json={
            "store": "vagon", "parent_id": 0, "count": 1, "prefix": "many",
            "object_type": "directory"})
        emulator.admin("POST", "/_admin/populate", json={
            "store": "vagon", "parent_id": folder["ids"][0], "count": 10_000, "prefix": "f",
            "size": 100})
        pages = -(-10_000 // 100)
        for label, options in (("", ()), (", --no-xattrs", ("--no-xattrs",))):
            with Mount(work, config, "ls" + label.strip(", -"), *options) as m:
                run("ls", str(m.path))
                emulator.reset_stats()
                t_cold = timed(lambda: run("ls", "-l", str(m.path / "many000000")))
                cold_calls = sum(emulator.stats()["requests"].values())
                emulator.reset_stats()
                t_warm = timed(lambda: run("ls", "-l", str(m.path / "many000000")))
                warm_calls = sum(emulator.stats()["requests"].values())
                res.add(f"ls -l 10,000 entries{label}, cold", t_cold, "s",
                        target=f"{pages} list calls", met=cold_calls == pages,
                        api_calls=cold_calls)
                res.add(f"ls -l 10,000 entries{label}, warm", t_warm, "s",
                        target="0 calls, < 0.3 s", met=warm_calls == 0 and t_warm < 0.3,
                        api_calls=warm_calls)

        # 5. 1,000 files of 4 KiB
        small = work / "small"
        small.mkdir()
        for i in range(1000):
            (small / f"s{i:04d}.dat").write_bytes(os.urandom(4096))
        with Mount(work, config, "small") as m:
            emulator.reset_stats()

            def rsync_up():
                run("rsync", "-a", f"{small}/", f"{m.path}/rsync-up/")
                m.wait_uploaded()
            t = timed(rsync_up)
            calls = sum(emulator.stats()["requests"].values())
            figures["small_up"] = 1000 / t
            res.add("rsync -a up, 1,000 x 4 KiB", 1000 / t, "files/s",
                    api_calls_per_file=round(calls / 1000, 2))

            def cp_up():
                run("cp", "-r", str(small), str(m.path / "cp-up"))
                m.wait_uploaded()
            t = timed(cp_up)
            res.add("cp -r up, 1,000 x 4 KiB", 1000 / t, "files/s")
        with Mount(work, config, "small-down") as m:
            emulator.reset_stats()
            down = work / "down"
            t = timed(lambda: run("rsync", "-a", f"{m.path}/rsync-up/", f"{down}/"))
            calls = sum(emulator.stats()["requests"].values())
            figures["small_down"] = 1000 / t
            res.add("rsync -a down, 1,000 x 4 KiB", 1000 / t, "files/s",
                    api_calls_per_file=round(calls / 1000, 2))

        # 6. memory while copying a big file
        huge = work / "huge.bin"
        make_local_file(huge, big)
        with Mount(work, config, "huge") as m:
            m.reset_peak_rss()
            run("cp", str(huge), str(m.path / "huge.bin"))
            m.fsync("huge.bin")
            peak = m.peak_rss_mib()
            res.add(f"memory: daemon peak RSS copying {big >> 20} MiB", peak, "MiB", target="< 250",
                    met=peak < 250)
        huge.unlink()
        return figures
    finally:
        emulator.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_rclone() -> bool:
    if shutil.which("rclone"):
        return True
    if os.geteuid() != 0:
        return False
    subprocess.run(["apt-get", "install", "-y", "-qq", "rclone"], capture_output=True)
    return bool(shutil.which("rclone"))


def bench_rclone(work: Path, res: Results, size: int, figures: dict) -> None:
    if not ensure_rclone():
        print("peer row skipped: rclone is not installed (apt-get install rclone)")
        return
    share = work / "webdav"
    share.mkdir()
    make_local_file(share / "big.bin", size)
    port = free_port()
    server = subprocess.Popen(["rclone", "serve", "webdav", str(share), "--addr",
                               f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    mnt = work / "mnt-rclone"
    mnt.mkdir()
    mounted = None
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(url)
                break
            time.sleep(0.1)
        drop_page_cache()

        def direct():
            with httpx.stream("GET", f"{url}/big.bin") as r:
                for _ in r.iter_bytes(1 << 20):
                    pass
        t_direct = timed(direct)
        mounted = subprocess.Popen(["rclone", "mount", ":webdav:", str(mnt), "--webdav-url",
                                    url, "--vfs-cache-mode", "full", "--cache-dir",
                                    str(work / "rclone-cache")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            if os.path.ismount(mnt):
                break
            time.sleep(0.1)
        drop_page_cache()
        t = timed(lambda: run("sh", "-c", f"cat '{mnt}/big.bin' > /dev/null"))
        res.add(f"peer: rclone cold read {size >> 20} MiB, cat", mb_per_s(size, t), "MB/s",
                mb_per_s(size, t_direct), "direct GET from rclone serve")
        small = work / "small"

        def up():
            run("rsync", "-a", f"{small}/", f"{mnt}/rsync-up/")
            run("sync", "-f", str(mnt))
        t_up = timed(up)
        res.add("peer: rclone rsync -a up, 1,000 x 4 KiB", 1000 / t_up, "files/s",
                figures.get("small_up"), "vagonfs rsync up (ratio = rclone / vagonfs)",
                "vagonfs >= rclone", figures.get("small_up", 0) >= 1000 / t_up)
        t_down = timed(lambda: run("rsync", "-a", f"{mnt}/rsync-up/", f"{work}/rclone-down/"))
        res.add("peer: rclone rsync -a down, 1,000 x 4 KiB", 1000 / t_down, "files/s",
                figures.get("small_down"), "vagonfs rsync down (ratio = rclone / vagonfs)",
                "vagonfs >= rclone", figures.get("small_down", 0) >= 1000 / t_down)
    finally:
        if mounted:
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
            mounted.terminate()
            mounted.wait(timeout=30)
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="read/write file size")
    parser.add_argument("--big-mib", type=int, default=4096, help="file for the memory case")
    parser.add_argument("--json", default="bench-results.json", help="where to write figures")
    parser.add_argument("--work", help="scratch dir (default: a temporary dir, removed)")
    args = parser.parse_args()
    res = Results()
    with tempfile.TemporaryDirectory(prefix="vagonfs-bench-", dir=args.work) as tmp:
        work = Path(tmp)
        figures = bench_vagonfs(work, res, args.size_mib * MiB, args.big_mib * MiB)
        bench_rclone(work, res, args.size_mib * MiB, figures)
    machine = f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}"
    print()
    print(f"Machine: {machine}")
    print(res.table())
    Path(args.json).write_text(json.dumps({"machine": machine, "rows": res.rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
