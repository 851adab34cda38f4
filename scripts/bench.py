#!/usr/bin/env python3
"""The vagonfs benchmark: every speed and memory target beside its baseline, in one run.

Each row is a target of issues 10 and 11, with the baseline measured in the
same run, the ratio, and whether the target is met:

- reads: cold sequential read of the big file with ``dd bs=1M``, as root with
  the read-ahead raised to 1 MiB (vs ``curl`` of the same Vagon download link,
  asked as vagonfs asks it) and as a user with the default 128 KiB (vs the
  zero-work pyfuse3 ceiling at 128 KiB requests, ``scripts/zero_fs.py``, and vs
  rclone); warm reads from the block cache, page cache dropped, vs the ceiling
  at the same request size. Each read is made with store-ahead and again with
  ``--no-store-ahead`` (rows without a target), and the FUSE reads per GiB of
  each are rows beside the ceiling's. The emulator's copy is warm before every read (a
  server's storage would be); our side is cold (a fresh mount and cache).
- write: ``cp`` + ``fsync`` until the server confirmed it, vs the client's own
  multipart upload of the same file.
- small files: ``rsync -a`` of 1,000 x 4 KiB up, until rsync returns and until
  all are on the server, and down from a fresh mount with an empty cache (the
  server's side stays warm, as for the reads); rclone (``rclone mount`` of
  ``rclone serve webdav``, ``--vfs-cache-mode full``, its own fresh cache dir)
  measured the same way in the same run. "On the server": for vagonfs, its
  upload queue is empty (an upload leaves it only on the server's reply to
  complete), then the server's listing is checked; for rclone, the served
  folder holds every file at full size (looked at on disk, which costs rclone
  nothing). Both get the same write-back delay (0.5 s), so both wait the same
  before uploading.
- memory: the daemon's peak RSS in every case above, and while copying a big file.
- scale: ``ls -l`` of a 100,000-entry folder cold and warm (the default, and
  ``--xattrs``: the ratio is what xattrs cost), the daemon's peak RSS
  walking 150,000 entries and a 1,000,000-entry tree with ``find``.

Every case but the once-only ones (big-copy, scale) runs ``--rounds`` times
(3), each round measuring the baselines again just before the rows compared
with them; a row shows the medians of its figure and its baseline, and the
median of the rounds' ratios (each round's figure against that round's
baseline), every round's figures in the JSON.

Beside each figure, the JSON (and the progress lines) give the share of a
core the emulator and the daemon used meanwhile (an emulator near 100% means
the row measures the emulator) and, where it says something, API calls.

    sudo .venv/bin/python scripts/bench.py                 # everything, 15-20 minutes
    sudo .venv/bin/python scripts/bench.py --quick         # small sizes, 2-3 minutes
    sudo .venv/bin/python scripts/bench.py --only small,cold --skip-scale
    sudo .venv/bin/python scripts/bench.py --wan           # over a simulated link, ~6 minutes

``--wan`` runs issue 26's cases over a simulated link instead, beside rclone and
the link's own limit (``scripts/bench_wan.py``).

Root is needed: it drops the page cache, sets read_ahead_kb, and installs
the Debian package ``rclone`` when missing. MB is 10^6 bytes. A case that
fails shows its rows as misses with the reason; the run goes on.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_figures import Figures, commit, fmt  # noqa: E402
from bench_wan import run_wan  # noqa: E402
from wan_link import settings_arguments  # noqa: E402
from bench_rig import (MB, MiB, Rig, dd_read, drop_page_cache, into_page_cache,  # noqa: E402
                       make_local_file, read_ahead_kb, rsync_up, run, same_files,
                       set_read_ahead_kb, sh, timed, zero_mount)


@dataclass
class Settings:
    size: int  # bytes of the big file read and written
    big: int  # bytes of the file copied for the memory case
    small_files: int
    rounds: int
    ls_entries: int
    walk_entries: int
    tree_entries: int


def mb_s(size: int, seconds: float) -> float:
    return size / MB / seconds


def mib(n: int) -> str:
    return f"{n >> 30} GiB" if n >= 1 << 30 and not n % (1 << 30) else f"{n >> 20} MiB"


# -- the cases --------------------------------------------------------------------------------

def case_zero(rig: Rig, fig: Figures, s: Settings) -> None:
    """The zero-work pyfuse3 ceiling at 128 KiB and 1 MiB requests."""
    with zero_mount(rig.work, s.size) as mnt:
        for key, kb in (("zero_128k", 128), ("zero_1m", 1024)):
            set_read_ahead_kb(mnt, kb)
            drop_page_cache()
            before = json.loads(os.getxattr(mnt, "user.stats"))
            seconds = dd_read(mnt / "zero.bin", s.size)
            after = json.loads(os.getxattr(mnt, "user.stats"))
            reads = after["reads"] - before["reads"]
            fig.put(key, mb_s(s.size, seconds), read_ahead_kb=kb, fuse_reads=reads,
                    largest_request_kib=after["largest_read"] >> 10)
            fig.put(f"{key}_reads", per_gib(reads, s.size))


def case_curl(rig: Rig, fig: Figures, s: Settings) -> None:
    """``curl`` of the download link vagonfs would use for the big file."""
    rig.warm_server()
    url = rig.download_link(rig.big_name)
    with rig.cpu_use() as cpu:
        start = time.perf_counter()
        got = run("curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}", url).stdout
        seconds = time.perf_counter() - start
    if int(got) != s.size:
        raise RuntimeError(f"curl got {got} of {s.size} bytes")
    fig.put("curl", mb_s(s.size, seconds), **cpu)


def per_gib(count: int, size: int) -> float:
    return round(count * 1024 ** 3 / size, 1)


def fuse_reads(m) -> int:
    return m.status()["kernel_requests"].get("read", 0)


def case_read(rig: Rig, fig: Figures, s: Settings) -> None:
    """Cold then warm (block cache) sequential reads, with the read-ahead a root
    mount raises (``--read-ahead 1M``) and with a user mount's (the kernel's 128 KiB,
    ``--read-ahead 0``); each with store-ahead and without (``--no-store-ahead``),
    interleaved, with the FUSE reads each made per GiB (``vagonfs status``)."""
    for who, option, kb in (("root", "1M", 1024), ("user", "0", 128)):
        cache = [read_once(rig, fig, s, who, option, kb, off) for off in ("", "_nostore")][0]
        if who == "root":  # what the disk under the cache gives, the same bytes read the same way
            data_file = max(cache.rglob("*.blocks"), key=lambda p: p.stat().st_size)
            drop_page_cache()
            fig.put("cache_disk", mb_s(s.size, dd_read(data_file, s.size)))


def read_once(rig: Rig, fig: Figures, s: Settings, who: str, option: str, kb: int,
              off: str) -> Path:
    """One cold and one warm read of the big file by a fresh mount; ``off``:
    "_nostore" for ``--no-store-ahead``, else "". The mount's cache dir."""
    rig.warm_server()
    extra = ("--no-store-ahead",) if off else ()
    with rig.mount(f"read-{who}{off}-{fig.round}", "--read-ahead", option, *extra,
                   memory_case=f"read {mib(s.size)}, {who}") as m:
        read_ahead = m.wait_read_ahead(kb)
        if read_ahead != kb:
            print(f"  --read-ahead {option}: the mount's read_ahead_kb is {read_ahead}, "
                  f"not {kb}")
        path = m.path / rig.big_name
        for temp in ("cold", "warm"):
            if temp == "warm":
                m.wait_cached(s.size)
                drop_page_cache()
            before = fuse_reads(m)
            with rig.cpu_use(m) as cpu:
                seconds = dd_read(path, s.size)
            reads = fuse_reads(m) - before
            fig.put(f"{temp}_{who}{off}", mb_s(s.size, seconds), read_ahead_kb=read_ahead,
                    fuse_reads=reads, **cpu)
            fig.put(f"{temp}_{who}{off}_reads", per_gib(reads, s.size))
    return m.cache


def case_write(rig: Rig, fig: Figures, s: Settings) -> None:
    """``cp`` + ``fsync`` to confirmation vs the client's multipart upload."""
    r = fig.round
    local = rig.local_file
    into_page_cache(local)
    with rig.cpu_use() as cpu:
        seconds = timed(lambda: rig.direct_upload(local, f"direct-{r}.bin"))
    fig.put("direct_upload", mb_s(s.size, seconds), **cpu)
    written = f"written-{r}.bin"
    with rig.mount(f"write-{r}", memory_case=f"write {mib(s.size)}") as m:
        into_page_cache(local)
        with rig.cpu_use(m) as cpu:
            seconds = timed(lambda: m.copy_in(local, written))
        fig.put("write", mb_s(s.size, seconds), **cpu)
    if rig.server_files().get(written) != s.size:
        raise RuntimeError(f"{written} is not on the server at its full size")


def case_small(rig: Rig, fig: Figures, s: Settings) -> None:
    """``rsync -a`` of small files up (returned, confirmed) and down cold, on vagonfs."""
    r = fig.round
    n = s.small_files
    source = rig.small_files(n)
    folder = f"rsync-up-{r}"
    with rig.mount(f"small-up-{r}", memory_case=f"rsync up {n} small files") as m:
        rig.emulator.reset_stats()
        with rig.cpu_use(m) as cpu_up:
            returned, done = rsync_up(source, m.path / folder,
                                      lambda: m.wait_uploaded(after_write_back_delay=True))
        calls = rig.api_calls()
    on_server = rig.server_files(folder)
    if len(on_server) != n or set(on_server.values()) != {4096}:
        raise RuntimeError(f"the server lists {len(on_server)} of {n} files after the upload")
    with rig.mount(f"small-down-{r}", memory_case=f"rsync down {n} small files") as m:
        down = rig.work / f"down-vagonfs-{r}"
        rig.emulator.reset_stats()
        with rig.cpu_use(m) as cpu:
            seconds = timed(lambda: run("rsync", "-a", f"{m.path}/{folder}/", f"{down}/"))
        down_calls = rig.api_calls()
    same_files(source, down)
    fig.put("small_up_returned", n / returned, api_calls_per_file=round(calls / n, 2))
    fig.put("small_up_confirmed", n / done, **cpu_up)
    fig.put("small_down", n / seconds, api_calls_per_file=round(down_calls / n, 2), **cpu)


def case_rclone_read(rig: Rig, fig: Figures, s: Settings) -> None:
    """rclone's cold read of a file of the same size, same tool and read-ahead."""
    r = fig.round
    server = rig.rclone
    big = server.share / "big.bin"
    if not big.exists():
        run("cp", rig.local_file, big)
    drop_page_cache()
    into_page_cache(big)  # the server's side warm, as for vagonfs
    with server.mount(f"read-{r}") as mnt:
        set_read_ahead_kb(mnt, 128)
        fig.put("rclone_read", mb_s(s.size, dd_read(mnt / "big.bin", s.size)),
                read_ahead_kb=read_ahead_kb(mnt))


def case_rclone_small(rig: Rig, fig: Figures, s: Settings) -> None:
    """rclone's small files, measured as vagonfs's are."""
    r = fig.round
    n = s.small_files
    source = rig.small_files(n)
    server = rig.rclone
    sizes = {p.name: 4096 for p in source.iterdir()}
    folder = f"rsync-up-{r}"
    with server.mount(f"up-{r}") as mnt:
        returned, done = rsync_up(source, mnt / folder,
                                  lambda: server.wait_landed(folder, sizes))
    with server.mount(f"down-{r}") as mnt:  # a fresh mount with an empty cache dir
        down = rig.work / f"down-rclone-{r}"
        seconds = timed(lambda: run("rsync", "-a", f"{mnt}/{folder}/", f"{down}/"))
    same_files(source, down)
    fig.put("rclone_up_returned", n / returned)
    fig.put("rclone_up_confirmed", n / done)
    fig.put("rclone_down", n / seconds)


def case_big_copy(rig: Rig, fig: Figures, s: Settings) -> None:
    """The daemon's peak RSS while a big file is copied in and confirmed."""
    huge = make_local_file(rig.work / "huge.bin", s.big)
    try:
        with rig.mount("copy-big", memory_case=f"copy {mib(s.big)}") as m:
            with rig.cpu_use(m) as cpu:
                seconds = timed(lambda: m.copy_in(huge, "huge.bin"))
            fig.put("copy_big", mb_s(s.big, seconds), **cpu)
    finally:
        huge.unlink()


def populate_tree(rig: Rig, name: str, files: int, per_folder: int = 1000) -> tuple[str, int]:
    """A folder of folders of ``per_folder`` empty files (a hundred folders per
    call, well inside the admin call's timeout): its name and its entries."""
    top = rig.populate(0, 1, name, object_type="directory")[0]
    folders = max(1, files // per_folder)
    for batch, first in enumerate(range(0, folders, 100)):
        rig.populate(top, per_folder, "f", folders=min(100, folders - first),
                     folder_prefix=f"d{batch:03d}-")
    return f"{name}000000", folders * (per_folder + 1)


def populate_folder(rig: Rig, name: str, files: int) -> str:
    """One folder of ``files`` empty files; its name."""
    folder = rig.populate(0, 1, name, object_type="directory")[0]
    rig.populate(folder, files, "f")
    return f"{name}000000"


def case_scale(rig: Rig, fig: Figures, s: Settings) -> None:
    """``ls -l`` of a big folder, and the daemon's memory walking big trees."""
    start = time.perf_counter()
    ls_name = populate_folder(rig, "scale-ls", s.ls_entries)
    walk_name, walk = populate_tree(rig, "scale-walk", s.walk_entries)
    tree_name, tree = populate_tree(rig, "scale-tree", s.tree_entries)
    print(f"  (the emulator made {s.ls_entries + walk + tree:,} entries in "
          f"{time.perf_counter() - start:.0f} s)", flush=True)
    pages = -(-s.ls_entries // 100)
    for label, options in (("default", ()), ("xattrs", ("--xattrs",))):
        with rig.mount(f"ls-{label}", *options) as m:
            folder = m.path / ls_name
            os.stat(folder)
            rig.emulator.reset_stats()
            with rig.cpu_use(m) as cpu:
                cold = timed(lambda: sh(f"ls -l '{folder}' > /dev/null"))
            fig.put(f"ls_cold_{label}", cold, api_calls=rig.api_calls(), list_pages=pages, **cpu)
            rig.emulator.reset_stats()
            with rig.cpu_use(m) as cpu:
                warm = timed(lambda: sh(f"ls -l '{folder}' > /dev/null"))
            fig.put(f"ls_warm_{label}", warm, api_calls=rig.api_calls(),
                    peak_rss_mb=round(m.peak_rss_mb(), 1), **cpu)
    for key, name, entries in (("walk", walk_name, walk), ("tree", tree_name, tree)):
        with rig.mount(key) as m:
            with rig.cpu_use(m) as cpu:
                start = time.perf_counter()
                found = int(sh(f"find '{m.path / name}' | wc -l")) - 1  # not the top folder
                seconds = time.perf_counter() - start
            if found != entries:
                raise RuntimeError(f"find saw {found} of {entries} entries in {name}")
            fig.put(f"{key}_rss", m.peak_rss_mb(), entries=entries, find_s=round(seconds, 2),
                    rss_after_mb=round(m.rss_mb(), 1), **cpu)


# name: (function, cases whose figures its rows are compared with, whether it runs in
# every round); run in this order, each round's cases, then the once-only ones
CASES = {
    "zero": (case_zero, (), True),
    "curl": (case_curl, (), True),
    "rclone-read": (case_rclone_read, (), True),
    "read": (case_read, ("zero", "curl", "rclone-read"), True),
    "write": (case_write, (), True),
    "rclone-small": (case_rclone_small, (), True),
    "small": (case_small, ("rclone-small",), True),
    "big-copy": (case_big_copy, (), False),
    "scale": (case_scale, (), False),
}
ALIASES = {"cold": ["read"], "warm": ["read"], "rclone": ["rclone-read", "rclone-small"]}
# the figures only compared with, shown on one line above the table
BASELINES = ("zero_128k", "zero_1m", "curl", "direct_upload", "rclone_read",
             "rclone_up_returned", "rclone_up_confirmed", "rclone_down")


# -- the targets ------------------------------------------------------------------------------

@dataclass
class Target:
    by: str | None  # the case measuring the figure (its rows are left out when it did not run)
    case: str  # what the row says
    key: str  # the figure it shows
    unit: str
    baseline: str | None = None  # the figure it is compared with
    baseline_name: str = ""
    at_least: float | None = None  # the ratio to the baseline must reach this
    below: float | None = None  # or the figure must stay under this
    note: str = ""

    def row(self, fig: Figures) -> dict:
        """The medians of the figure and its baseline over the rounds, and the
        median of the rounds' ratios (each round's figure against the baseline
        of that same round)."""
        value, base = fig.median(self.key), fig.median(self.baseline or "")
        rounds = fig.values.get(self.key, {})
        bases = fig.values.get(self.baseline or "", {})
        ratios = {r: v / bases[r] for r, v in rounds.items() if bases.get(r)}
        ratio = statistics.median(ratios.values()) if ratios else None
        target = (f">= {self.at_least:g}" if self.at_least is not None else
                  f"< {self.below:g} {self.unit}" if self.below is not None else "")
        if self.at_least is not None:
            met = ratio is not None and ratio >= self.at_least
        elif self.below is not None:
            met = value is not None and value < self.below
        else:
            met = None
        details = fig.details.get(self.key, {})
        return {"case": self.case, "value": value, "unit": self.unit, "baseline": base,
                "baseline_name": self.baseline_name, "ratio": ratio, "target": target,
                "met": met, "note": self.note,
                "rounds": [{"round": r + 1, "value": v, "baseline": bases.get(r),
                            "ratio": ratios.get(r), **details.get(r, {})}
                           for r, v in sorted(rounds.items())]}


def targets(s: Settings, rss_worst: str) -> list[Target]:
    size, n = mib(s.size), f"{s.small_files:,} x 4 KiB"
    ls = f"ls -l {s.ls_entries:,} entries"
    scaled = s.ls_entries / 100_000  # the ls targets are per 100,000 entries
    zero_128k = ("zero_128k", "zero-work pyfuse3, 128 KiB requests")
    rclone = "rclone, the same"
    return [
        Target("read", f"cold read {size}, root, read-ahead 1 MiB (dd bs=1M)", "cold_root",
               "MB/s", "curl", "curl of the same download link", at_least=0.8),
        Target("read", f"cold read {size}, user, read-ahead 128 KiB (dd bs=1M)", "cold_user",
               "MB/s", *zero_128k, at_least=0.8),
        Target("read", f"cold read {size}, user, read-ahead 128 KiB, vs rclone", "cold_user",
               "MB/s", "rclone_read", "rclone mount, the same read", at_least=1.0),
        Target("read", "warm read from the block cache, 1 MiB requests", "warm_root", "MB/s",
               "zero_1m", "zero-work pyfuse3, 1 MiB requests", at_least=0.8),
        Target("read", "warm read from the block cache, 128 KiB requests", "warm_user", "MB/s",
               *zero_128k, at_least=0.8),
        *store_ahead_rows(size),
        Target("read", "warm read from the block cache, 1 MiB requests, vs the cache's disk",
               "warm_root", "MB/s", "cache_disk", "dd of the cache's data file, page cache dropped",
               note="no target: what the disk under the cache allows"),
        Target("write", f"write {size} to confirmation (cp + fsync)", "write", "MB/s",
               "direct_upload", "the client's multipart upload", at_least=0.8),
        Target("small", f"rsync -a up {n}, until rsync returns", "small_up_returned", "files/s",
               "rclone_up_returned", rclone, at_least=1.0),
        Target("small", f"rsync -a up {n}, until all are on the server", "small_up_confirmed",
               "files/s", "rclone_up_confirmed", rclone, at_least=1.0),
        Target("small", f"rsync -a down {n}, fresh mount, empty cache", "small_down", "files/s",
               "rclone_down", rclone, at_least=2.0),
        Target(None, f"memory: daemon peak RSS, every case (worst: {rss_worst})", "rss_worst",
               "MB", below=250),
        Target("scale", f"{ls}, cold, default", "ls_cold_default", "s", below=10 * scaled),
        Target("scale", f"{ls}, cold, --xattrs", "ls_cold_xattrs", "s",
               "ls_cold_default", "default", note="ratio: what xattrs cost"),
        Target("scale", f"{ls}, warm, default", "ls_warm_default", "s", below=1 * scaled),
        Target("scale", f"{ls}, warm, --xattrs", "ls_warm_xattrs", "s",
               "ls_warm_default", "default", note="ratio: what xattrs cost"),
        Target("scale", f"memory: daemon peak RSS, find over {s.walk_entries:,} entries",
               "walk_rss", "MB", below=150),
        Target("scale", f"memory: daemon peak RSS, find over a {s.tree_entries:,}-entry tree",
               "tree_rss", "MB", below=500),
    ]


def store_ahead_rows(size: str) -> list[Target]:
    """Each read row without store-ahead, and the FUSE reads per GiB each made
    beside the zero-work ceiling's at the same request size (every one of its
    reads is a FUSE read)."""
    rows = []
    reads = [("cold", "root", "zero_1m", "1 MiB"), ("cold", "user", "zero_128k", "128 KiB"),
             ("warm", "root", "zero_1m", "1 MiB"), ("warm", "user", "zero_128k", "128 KiB")]
    for temp, who, zero, request in reads:
        what = f"{temp} read {size}, {who}, {request} requests"
        rows.append(Target("read", f"{what}, --no-store-ahead", f"{temp}_{who}_nostore",
                           "MB/s", zero, f"zero-work pyfuse3, {request} requests",
                           note="no target: what store-ahead changes"))
        for off, how in (("", "store-ahead"), ("_nostore", "--no-store-ahead")):
            rows.append(Target("read", f"{what}, {how}: FUSE reads per GiB",
                               f"{temp}_{who}{off}_reads", "reads/GiB", f"{zero}_reads",
                               f"zero-work pyfuse3, {request} requests",
                               note="no target: fewer is better"))
    return rows


# -- the report -------------------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    lines = ["| case | vagonfs | baseline | ratio | target | met |", "|---|---|---|---|---|---|"]
    for r in rows:
        value = f"{fmt(r['value'])} {r['unit']}" if r["value"] is not None else \
            f"not measured: {r.get('error', 'its case did not run')}"
        base = f"{fmt(r['baseline'])} {r['unit']} ({r['baseline_name']})" \
            if r["baseline"] is not None else (f"not measured ({r['baseline_name']})"
                                               if r["baseline_name"] else "")
        ratio = f"{r['ratio']:.3g}" if r["ratio"] is not None else ""
        if r["note"]:
            ratio += f" ({r['note']})"
        met = {True: "yes", False: "**no**", None: ""}[r["met"]]
        lines.append(f"| {r['case']} | {value} | {base} | {ratio} | {r['target']} | {met} |")
    return "\n".join(lines)


def selected_cases(only: str | None, skip_scale: bool) -> list[str]:
    if only:
        wanted = set()
        for name in only.split(","):
            name = name.strip()
            if name not in CASES and name not in ALIASES:
                raise SystemExit(f"bench: no case {name!r}; cases: "
                                 f"{', '.join([*CASES, *ALIASES])}")
            for case in ALIASES.get(name, [name]):
                wanted |= {case, *CASES[case][1]}
    else:
        wanted = set(CASES)
    if skip_scale:
        wanted.discard("scale")
    return [c for c in CASES if c in wanted]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small sizes (256 MiB, 200 files, 10,000 entries...) to check the "
                        "harness in a few minutes; the figures are not the targets'")
    p.add_argument("--only", metavar="CASE[,CASE]",
                   help=f"run these cases (and the baselines they need): "
                        f"{', '.join([*CASES, *ALIASES])}")
    p.add_argument("--skip-scale", action="store_true", help="leave out the scale rows")
    p.add_argument("--size-mib", type=int, help="big file read and written (default 1024)")
    p.add_argument("--big-mib", type=int, help="file copied for the memory case (default 4096)")
    p.add_argument("--small-files", type=int, help="files of 4 KiB for rsync (default 1000)")
    p.add_argument("--rounds", type=int,
                   help="rounds of every case but big-copy and scale, each beside its "
                        "baselines; a row is the median (default 3)")
    p.add_argument("--ls-entries", type=int, help="entries of the ls -l folder (default 100000)")
    p.add_argument("--walk-entries", type=int, help="files walked by find (default 150000)")
    p.add_argument("--tree-entries", type=int, help="files of the big tree (default 1000000)")
    p.add_argument("--json", help="where to write the figures (default bench-results.json, "
                                  "with --wan bench-wan-results.json)")
    p.add_argument("--work", help="scratch dir's parent (default: the system's temp dir)")
    wan = p.add_argument_group(
        "WAN mode", "the cases of issue 26 over a simulated link (scripts/wan_link.py), beside "
        "rclone and the link's own limit; --only, --size-mib (default 256) and --small-files "
        "(default 200) apply")
    wan.add_argument("--wan", action="store_true", help="run the WAN mode instead")
    wan.add_argument("--rtt", default="40,80", metavar="MS[,MS]",
                     help="round-trip times in ms, one run of every case at each (default 40,80)")
    settings_arguments(wan)
    return p.parse_args()


def settings(args: argparse.Namespace) -> Settings:
    full = dict(size_mib=1024, big_mib=4096, small_files=1000, rounds=3,
                ls_entries=100_000, walk_entries=150_000, tree_entries=1_000_000)
    quick = dict(size_mib=256, big_mib=256, small_files=200, rounds=1,
                 ls_entries=10_000, walk_entries=15_000, tree_entries=30_000)
    chosen = {k: getattr(args, k) or (quick if args.quick else full)[k] for k in full}
    return Settings(size=chosen["size_mib"] * MiB, big=chosen["big_mib"] * MiB,
                    small_files=chosen["small_files"], rounds=chosen["rounds"],
                    ls_entries=chosen["ls_entries"],
                    walk_entries=chosen["walk_entries"], tree_entries=chosen["tree_entries"])


def run_cases(rig: Rig, fig: Figures, s: Settings, cases: list[str]) -> None:
    each_round = [c for c in cases if CASES[c][2]]
    plan = [(r, c) for r in range(s.rounds) for c in each_round]
    plan += [(0, c) for c in cases if not CASES[c][2]]
    try:
        for r, name in plan:
            function = CASES[name][0]
            fig.round = r
            shown = f"round {r + 1}/{s.rounds}: " if CASES[name][2] else ""
            print(f"{shown}{name}: {' '.join((function.__doc__ or '').split())}", flush=True)
            start = time.perf_counter()
            try:
                function(rig, fig, s)
            except Exception as exc:  # one case's failure is its rows' miss, not the run's end
                traceback.print_exc()
                fig.errors[name] = f"{shown}{type(exc).__name__}: {exc}"[:200]
            print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    finally:
        rig.close()
    if rig.rss:
        worst = max(rig.rss, key=lambda case: rig.rss[case])
        fig.round = 0
        fig.put("rss_worst", rig.rss[worst], worst=worst, every_case=rig.rss)


def report(args: argparse.Namespace, s: Settings, cases: list[str], fig: Figures,
           seconds: float) -> None:
    rows = []
    worst = fig.details.get("rss_worst", {}).get(0, {}).get("worst", "")
    for t in targets(s, worst):
        if t.by not in cases and not (t.by is None and t.key in fig.values):
            continue
        row = t.row(fig)
        if t.by in fig.errors:
            row["error"] = fig.errors[t.by]
        rows.append(row)
    head = {"when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit(),
            "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}",
            "seconds": round(seconds), "quick": args.quick}
    print(f"\n{head['when']}, commit {head['commit']}; {head['machine']}; took {seconds:.0f} s")
    if args.quick:
        print("QUICK MODE: small sizes; the ls targets are scaled to the entries, the rest "
              "are the full run's")
    print("Baselines (medians): " + ", ".join(f"{k} {fmt(fig.median(k))}" for k in BASELINES
                                              if k in fig.values))
    for name, error in fig.errors.items():
        print(f"FAILED {name}: {error}")
    print(table(rows))
    Path(args.json or "bench-results.json").write_text(json.dumps({
        **head, "settings": vars(s), "cases": cases, "rows": rows, "figures": fig.values,
        "details": fig.details, "errors": fig.errors}, indent=2))


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (it drops the page cache and sets read_ahead_kb)",
              file=sys.stderr)
        return 2
    if args.wan:
        return run_wan(args)
    s = settings(args)
    cases = selected_cases(args.only, args.skip_scale)
    # `timeout` or `kill` ends the run as Ctrl-C does: mounts, the emulator
    # and the scratch dir (gigabytes) are cleaned up on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    fig = Figures()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vagonfs-bench-", dir=args.work) as work:
        run_cases(Rig(Path(work), s.size), fig, s, cases)
        report(args, s, cases, fig, time.perf_counter() - start)
    return 1 if fig.errors else 0


if __name__ == "__main__":
    sys.exit(main())
