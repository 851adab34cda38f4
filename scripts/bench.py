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
fails shows its rows as misses with the reason; the run goes on, and exits 1
at its end, as it does when a row of a case that ran lacks a figure it needs
(named in a ``MISSING FIGURE`` line).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_figures import Figures, commit, fmt  # noqa: E402
from bench_targets import Key, Settings, judged, mib, table  # noqa: E402
from bench_wan import run_wan  # noqa: E402
from wan_link import settings_arguments  # noqa: E402
from bench_rig import (MB, MiB, Rig, dd_read, drop_page_cache, into_page_cache,  # noqa: E402
                       make_local_file, read_ahead_kb, rsync_up, run, same_files,
                       set_read_ahead_kb, sh, timed, zero_mount)


def mb_s(size: int, seconds: float) -> float:
    return size / MB / seconds


# -- the cases --------------------------------------------------------------------------------

def case_zero(rig: Rig, fig: Figures, s: Settings) -> None:
    """The zero-work pyfuse3 ceiling at 128 KiB and 1 MiB requests; and the
    same filesystem storing ahead as vagonfs does, with nothing to fetch or
    load (``scripts/zero_fs.py --store-ahead``): the most store-ahead gives."""
    for store_ahead in (False, True):
        with zero_mount(rig.work, s.size, store_ahead) as mnt:
            for kb in (128, 1024):
                set_read_ahead_kb(mnt, kb)
                drop_page_cache()
                before = json.loads(os.getxattr(mnt, "user.stats"))
                seconds = dd_read(mnt / "zero.bin", s.size)
                after = json.loads(os.getxattr(mnt, "user.stats"))
                reads = after["reads"] - before["reads"]
                key = Key.zero(kb, store_ahead)
                fig.put(key, mb_s(s.size, seconds), read_ahead_kb=kb, fuse_reads=reads,
                        largest_request_kib=after["largest_read"] >> 10,
                        stored=after["stored"] - before["stored"])
                fig.put(Key.reads(key), per_gib(reads, s.size))


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
    fig.put(Key.CURL, mb_s(s.size, seconds), **cpu)


def per_gib(count: int, size: int) -> float:
    return round(count * 1024 ** 3 / size, 1)


def fuse_reads(m) -> int:
    return m.status()["kernel_requests"].get("read", 0)


def case_read(rig: Rig, fig: Figures, s: Settings) -> None:
    """Cold then warm (block cache) sequential reads, with the read-ahead a root
    mount raises (``--read-ahead 1M``) and with a user mount's (the kernel's 128 KiB,
    ``--read-ahead 0``); each with store-ahead and without (``--no-store-ahead``),
    interleaved, with the FUSE reads each made per GiB (``vagonfs status``). The
    warm read is made twice: from the cache's disk (the page cache dropped), then
    with the cache's data file in the page cache and only the mount's own pages
    dropped ("hot"), which leaves the disk out of what the zero-work ceiling,
    which has none, is compared with."""
    for who, option, kb in (("root", "1M", 1024), ("user", "0", 128)):
        cache = [read_once(rig, fig, s, who, option, kb, store_ahead)
                 for store_ahead in (True, False)][0]
        if who == "root":  # what the disk under the cache gives, the same bytes read the same way
            data_file = max(cache.rglob("*.blocks"), key=lambda p: p.stat().st_size)
            drop_page_cache()
            fig.put(Key.CACHE_DISK, mb_s(s.size, dd_read(data_file, s.size)))


def read_once(rig: Rig, fig: Figures, s: Settings, who: str, option: str, kb: int,
              store_ahead: bool) -> Path:
    """One cold and one warm read of the big file by a fresh mount (with
    ``--no-store-ahead`` unless ``store_ahead``). The mount's cache dir."""
    rig.warm_server()
    extra = () if store_ahead else ("--no-store-ahead",)
    with rig.mount(f"read-{who}{'' if store_ahead else '-nostore'}-{fig.round}",
                   "--read-ahead", option, *extra,
                   memory_case=f"read {mib(s.size)}, {who}") as m:
        read_ahead = m.wait_read_ahead(kb)
        if read_ahead != kb:
            print(f"  --read-ahead {option}: the mount's read_ahead_kb is {read_ahead}, "
                  f"not {kb}")
        path = m.path / rig.big_name
        for temp in ("cold", "warm", "hot"):
            if temp != "cold":
                m.wait_cached(s.size)
                drop_page_cache()
            if temp == "hot":
                for data_file in m.cache.rglob("*.blocks"):
                    into_page_cache(data_file)
            before = fuse_reads(m)
            with rig.cpu_use(m) as cpu:
                seconds = dd_read(path, s.size)
            reads = fuse_reads(m) - before
            key = Key.read(temp, who, store_ahead)
            fig.put(key, mb_s(s.size, seconds), read_ahead_kb=read_ahead, fuse_reads=reads,
                    **cpu)
            fig.put(Key.reads(key), per_gib(reads, s.size))
    return m.cache


def case_write(rig: Rig, fig: Figures, s: Settings) -> None:
    """``cp`` + ``fsync`` to confirmation vs the client's multipart upload."""
    r = fig.round
    local = rig.local_file
    into_page_cache(local)
    with rig.cpu_use() as cpu:
        seconds = timed(lambda: rig.direct_upload(local, f"direct-{r}.bin"))
    fig.put(Key.DIRECT_UPLOAD, mb_s(s.size, seconds), **cpu)
    written = f"written-{r}.bin"
    with rig.mount(f"write-{r}", memory_case=f"write {mib(s.size)}") as m:
        into_page_cache(local)
        with rig.cpu_use(m) as cpu:
            seconds = timed(lambda: m.copy_in(local, written))
        fig.put(Key.WRITE, mb_s(s.size, seconds), **cpu)
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
    fig.put(Key.SMALL_UP_RETURNED, n / returned, api_calls_per_file=round(calls / n, 2))
    fig.put(Key.SMALL_UP_CONFIRMED, n / done, **cpu_up)
    fig.put(Key.SMALL_DOWN, n / seconds, api_calls_per_file=round(down_calls / n, 2), **cpu)


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
        fig.put(Key.RCLONE_READ, mb_s(s.size, dd_read(mnt / "big.bin", s.size)),
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
    fig.put(Key.RCLONE_UP_RETURNED, n / returned)
    fig.put(Key.RCLONE_UP_CONFIRMED, n / done)
    fig.put(Key.RCLONE_DOWN, n / seconds)


def case_big_copy(rig: Rig, fig: Figures, s: Settings) -> None:
    """The daemon's peak RSS while a big file is copied in and confirmed."""
    huge = make_local_file(rig.work / "huge.bin", s.big)
    try:
        with rig.mount("copy-big", memory_case=f"copy {mib(s.big)}") as m:
            with rig.cpu_use(m) as cpu:
                seconds = timed(lambda: m.copy_in(huge, "huge.bin"))
            fig.put(Key.COPY_BIG, mb_s(s.big, seconds), **cpu)
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
            fig.put(Key.ls("cold", label), cold, api_calls=rig.api_calls(), list_pages=pages,
                    **cpu)
            rig.emulator.reset_stats()
            with rig.cpu_use(m) as cpu:
                warm = timed(lambda: sh(f"ls -l '{folder}' > /dev/null"))
            fig.put(Key.ls("warm", label), warm, api_calls=rig.api_calls(),
                    peak_rss_mb=round(m.peak_rss_mb(), 1), **cpu)
    for mount, key, name, entries in (("walk", Key.WALK_RSS, walk_name, walk),
                                      ("tree", Key.TREE_RSS, tree_name, tree)):
        with rig.mount(mount) as m:
            with rig.cpu_use(m) as cpu:
                start = time.perf_counter()
                found = int(sh(f"find '{m.path / name}' | wc -l")) - 1  # not the top folder
                seconds = time.perf_counter() - start
            if found != entries:
                raise RuntimeError(f"find saw {found} of {entries} entries in {name}")
            fig.put(key, m.peak_rss_mb(), entries=entries, find_s=round(seconds, 2),
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
BASELINES = (Key.ZERO_128K, Key.ZERO_1M, Key.CURL, Key.DIRECT_UPLOAD, Key.RCLONE_READ,
             Key.RCLONE_UP_RETURNED, Key.RCLONE_UP_CONFIRMED, Key.RCLONE_DOWN)


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
        fig.put(Key.RSS_WORST, rig.rss[worst], worst=worst, every_case=rig.rss)


def report(args: argparse.Namespace, s: Settings, cases: list[str], fig: Figures,
           seconds: float) -> list[str]:
    """Prints the table and writes the JSON; the figures the rows lack."""
    rows, missing = judged(s, cases, fig)
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
    for figure in missing:
        print(f"MISSING FIGURE: {figure}")
    Path(args.json or "bench-results.json").write_text(json.dumps({
        **head, "settings": vars(s), "cases": cases, "rows": rows, "figures": fig.values,
        "details": fig.details, "errors": fig.errors, "missing": missing}, indent=2))
    return missing


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
        missing = report(args, s, cases, fig, time.perf_counter() - start)
    return 1 if fig.errors or missing else 0


if __name__ == "__main__":
    sys.exit(main())
