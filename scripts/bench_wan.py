"""The benchmark's WAN mode (``bench.py --wan``): what a user 20-100 ms from the store waits for.

On loopback a request costs CPU only; over a real link the user waits for
round trips (issue 26). Here each case runs over a simulated link
(``scripts/wan_link.py``): one in front of the emulator, which puts it in the
download and part-upload links it hands out (``--public-url``), and one with
the same settings in front of rclone's WebDAV server, which ``rclone mount
--vfs-cache-mode writes`` reaches through it. Each case starts from a fresh
mount and an empty cache; each row shows vagonfs, rclone in the same run, and
the link's own limit computed from its settings (the round trips that cannot
overlap, plus the bytes at the link's rate), all in seconds and in RTTs.

"Until on the server": for vagonfs the bench's one way (``VagonMount.wait_uploaded``,
then the server's listing is checked); for rclone the served folder holds
every file at full size. One round at each RTT: every figure is a wait of many
round trips, which the machine's load moves far less than a CPU-bound row.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import shlex
import statistics
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench_figures import Figures, commit, fmt
from bench_rig import (WRITE_BACK_DELAY, MiB, RcloneServer, Rig, copy_synced, into_page_cache,
                       rsync_up, run, same_files, sh, timed)
from vagonfs.config import parse_duration
from wan_link import LinkSettings, RunningLink, link_settings

# the cases: a tree walked by find, a big folder listed, small files, a big file
FOLDERS, PER_FOLDER = 100, 10
LS_FILES = 1000
RANDOM_READS = 50
READ = 4096  # bytes of each random read and of the first-bytes read
TREE, LS, BIG, UP, WRITTEN = "tree000000", "ls000000", "big000000", "up", "written.bin"


class Fig:
    """The figures of the cases, named once for the case that puts them and the
    row that judges them (``key`` adds the tool and the RTT)."""

    FIND, LS, HEAD, COLD, DOWN, WRITE = "find", "ls", "head", "cold", "down", "write"
    RANDOM, RANDOM_BYTES = "random", "random_bytes"
    UP_RETURNED, UP_CONFIRMED = "up_returned", "up_confirmed"


@dataclass
class Mounted:
    """A fresh mount of one tool, and how it waits until what it wrote is on the server."""

    path: Path
    # (folder, name -> size, whether the files were only closed): vagonfs's
    # sync uploads at once, so files only closed first wait out the write-back
    # delay, as rclone's do; a file fsynced was uploaded by its fsync
    wait_on_server: Callable[[str, dict[str, int], bool], None]


class Vagonfs:
    name = "vagonfs"

    def __init__(self, rig: Rig):
        self.rig = rig

    @property
    def link(self) -> RunningLink | None:
        return self.rig.store_link

    def api_calls(self) -> dict[str, int]:
        return self.rig.emulator.stats()["requests"]

    @contextlib.contextmanager
    def mount(self, name: str) -> Iterator[Mounted]:
        with self.rig.mount(name) as m:
            yield Mounted(m.path, lambda folder, sizes, closed: m.wait_uploaded(
                after_write_back_delay=closed))

    def on_server(self, folder: str) -> dict[str, int]:
        return self.rig.server_files(*filter(None, [folder]))

    def make_data(self, size: int) -> None:
        top = self.rig.populate(0, 1, TREE[:-6], object_type="directory")[0]
        self.rig.populate(top, PER_FOLDER, "f", folders=FOLDERS, folder_prefix="d")
        folder = self.rig.populate(0, 1, LS[:-6], object_type="directory")[0]
        self.rig.populate(folder, LS_FILES, "f")
        self.rig.populate(0, 1, BIG[:-6], size=size)


class Rclone:
    name = "rclone"

    def __init__(self, rig: Rig):
        self.server: RcloneServer = rig.rclone
        self.rig = rig

    @property
    def link(self) -> RunningLink | None:
        return self.server.link

    def api_calls(self) -> dict[str, int]:
        return {}  # rclone serve webdav counts nothing; the link's counters do

    @contextlib.contextmanager
    def mount(self, name: str) -> Iterator[Mounted]:
        with self.server.mount(name) as path:
            yield Mounted(path, lambda folder, sizes, _: self.server.wait_landed(folder, sizes))

    def on_server(self, folder: str) -> dict[str, int]:
        return self.server.landed(folder)

    def make_data(self, size: int) -> None:
        share = self.server.share
        for j in range(FOLDERS):
            folder = share / TREE / f"d{j:06d}"
            folder.mkdir(parents=True)
            for i in range(PER_FOLDER):
                (folder / f"f{i:06d}").touch()
        (share / LS).mkdir()
        for i in range(LS_FILES):
            (share / LS / f"f{i:06d}").touch()
        run("cp", self.rig.local_file, share / BIG)


Tool = Vagonfs | Rclone


@dataclass
class Sizes:
    big: int
    small_files: int


@contextlib.contextmanager
def watching(tool: Tool) -> Iterator[dict]:
    """What went through the tool's link during the block (and the API calls by
    route, where the server counts them), filled in at its end."""
    link = tool.link
    before, calls = (link.counters if link else None), tool.api_calls()
    seen: dict = {}
    yield seen
    if link and before:
        c = link.counters.since(before)
        seen.update(connections=c.connections, bytes_down=c.bytes_down, bytes_up=c.bytes_up)
    after = tool.api_calls()
    if after:
        seen["api_calls"] = {k: v - calls.get(k, 0) for k, v in after.items()
                             if v - calls.get(k, 0)}


# -- the cases: each puts its figures under (case key, tool) --------------------------------

def timed_command(tool: Tool, put, name: str, command: str, expected: int) -> None:
    """Seconds for a shell ``command`` on a fresh mount (``{mnt}`` in it), which
    prints a count: anything but ``expected`` is an error, not a figure."""
    with tool.mount(name) as m, watching(tool) as seen:
        start = time.perf_counter()
        got = int(sh(command.format(mnt=shlex.quote(str(m.path)))))
        seconds = time.perf_counter() - start
    if got != expected:
        raise RuntimeError(f"{command} printed {got}, not {expected}")
    put(name, seconds, **seen)


def case_find(tool: Tool, put, s: Sizes) -> None:
    """``find`` over 100 folders of 10 files."""
    timed_command(tool, put, Fig.FIND, f"find {{mnt}}/{TREE} | wc -l",
                  1 + FOLDERS * (1 + PER_FOLDER))


def case_ls(tool: Tool, put, s: Sizes) -> None:
    """``ls -l`` of a folder of 1,000 files (its lookup included)."""
    timed_command(tool, put, Fig.LS, f"ls -l {{mnt}}/{LS} | wc -l", 1 + LS_FILES)  # and "total"


def case_head(tool: Tool, put, s: Sizes) -> None:
    """The first 4 KiB of a big file, ``head -c 4096 MNT/path``: the path's lookups included."""
    timed_command(tool, put, Fig.HEAD, f"head -c {READ} {{mnt}}/{BIG} | wc -c", READ)


def case_random(tool: Tool, put, s: Sizes) -> None:
    """50 reads of 4 KiB at random offsets of the big file (opened first, with
    the kernel's read-ahead off for it: POSIX_FADV_RANDOM)."""
    offsets = [i * READ for i in random.Random(26).sample(range(1, s.big // READ), RANDOM_READS)]
    with tool.mount("random") as m:
        fd = os.open(m.path / BIG, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
            times = []
            with watching(tool) as seen:
                for offset in offsets:
                    start = time.perf_counter()
                    if len(os.pread(fd, READ, offset)) != READ:
                        raise RuntimeError(f"a short read at {offset}")
                    times.append(time.perf_counter() - start)
        finally:
            os.close(fd)
    put(Fig.RANDOM, statistics.median(times), first_s=round(times[0], 4),
        slowest_s=round(max(times), 4), **seen)
    if "bytes_down" in seen:
        put(Fig.RANDOM_BYTES, seen["bytes_down"] / RANDOM_READS)


def case_cold(tool: Tool, put, s: Sizes) -> None:
    """Cold read of the big file, ``cat > /dev/null``, from a fresh mount."""
    with tool.mount("cold") as m:
        if os.stat(m.path / BIG).st_size != s.big:
            raise RuntimeError("the big file has the wrong size")
        with watching(tool) as seen:
            seconds = timed(lambda: sh(f"cat '{m.path / BIG}' > /dev/null"))
    put(Fig.COLD, seconds, mb_s=round(s.big / 1e6 / seconds, 1), **seen)


def case_up(tool: Tool, put, s: Sizes) -> None:
    """``rsync -a`` of the small files up: until it returns, until all are on the server."""
    source = tool.rig.small_files(s.small_files)
    sizes = {p.name: p.stat().st_size for p in source.iterdir()}
    with tool.mount("up") as m, watching(tool) as seen:
        returned, done = rsync_up(source, m.path / UP, lambda: m.wait_on_server(UP, sizes, True))
    if tool.on_server(UP) != sizes:
        raise RuntimeError(f"the server holds {len(tool.on_server(UP))} of {len(sizes)} files")
    put(Fig.UP_RETURNED, returned)
    put(Fig.UP_CONFIRMED, done, **seen)


def case_down(tool: Tool, put, s: Sizes) -> None:
    """``rsync -a`` of the small files down (those ``up`` put there), fresh mount."""
    source = tool.rig.small_files(s.small_files)
    down = tool.rig.work / f"down-{tool.name}"
    with tool.mount("down") as m, watching(tool) as seen:
        seconds = timed(lambda: run("rsync", "-a", f"{m.path / UP}/", f"{down}/"))
    same_files(source, down)
    put(Fig.DOWN, seconds, **seen)


def case_write(tool: Tool, put, s: Sizes) -> None:
    """The big file written (``cp`` + ``fsync``) until it is on the server."""
    local = tool.rig.local_file
    into_page_cache(local)
    with tool.mount("write") as m, watching(tool) as seen:
        start = time.perf_counter()
        copy_synced(local, m.path / WRITTEN)
        m.wait_on_server("", {WRITTEN: s.big}, False)
        seconds = time.perf_counter() - start
    if tool.on_server("").get(WRITTEN) != s.big:
        raise RuntimeError(f"{WRITTEN} is not on the server at its full size")
    put(Fig.WRITE, seconds, **seen)


# in this order: "down" reads back what "up" wrote
CASES = {"find": case_find, "ls": case_ls, "head": case_head, "random": case_random,
         "cold": case_cold, "up": case_up, "down": case_down, "write": case_write}


# -- the rows and their targets (issue 26) ---------------------------------------------------

@dataclass
class Row:
    case: str  # the case measuring it
    key: str
    label: str
    round_trips: float  # the link's limit: round trips that cannot overlap...
    why: str  # ...counted how
    payload: Callable[[Sizes], int] = lambda s: 0  # ...plus these bytes at the link's rate
    wait: float = 0.0  # ...plus what the case waits by design (the write-back delay)
    one_stream: bool = False  # also give the limit of one connection (window/RTT)
    within_rtt: float | None = None  # target: at most this many RTTs
    within_link: float | None = None  # target: at most this times the link's time
    link_share: float | None = None  # target: at least this share of the link's speed
    within_loopback: float | None = None  # target: at most this times the same on loopback
    at_most_bytes: float | None = None  # target for a byte count
    unit: str = "s"

    def limit(self, link: LinkSettings, s: Sizes) -> float:
        return self.round_trips * link.rtt + self.payload(s) / link.rate + self.wait

    def one_stream_limit(self, link: LinkSettings, s: Sizes) -> float:
        return self.round_trips * link.rtt + self.payload(s) / (link.window / link.rtt)


def rows(s: Sizes) -> list[Row]:
    n, big = s.small_files, f"{s.big / MiB:g} MiB"
    delay = WRITE_BACK_DELAY
    return [
        Row("find", Fig.FIND, f"find over {FOLDERS} folders of {PER_FOLDER} files", 4,
            "connect; list the root, which finds the tree; the tree; its folders all together",
            within_rtt=15),
        Row("ls", Fig.LS, f"ls -l of a folder of {LS_FILES:,} files", 4,
            "connect; list the root; page 1, which gives the count; the other pages together",
            within_rtt=8),
        Row("down", Fig.DOWN, f"rsync -a down, {n} x 4 KiB", 5,
            "connect; list the root; the folder; the download links together; the GETs together",
            payload=lambda s: s.small_files * READ, within_rtt=20),
        Row("head", Fig.HEAD, "first 4 KiB of a file, head -c 4096 MNT/path (lookups included)",
            4, "connect; list the root; the download link; the GET",
            payload=lambda s: READ, within_rtt=5),
        Row("cold", Fig.COLD, f"cold read of {big} (cat)", 4,
            "connect; list the root; the download link; the first GET",
            payload=lambda s: s.big, one_stream=True, link_share=0.8),
        Row("random", Fig.RANDOM, f"random 4 KiB reads of the {big} file, each (median of "
            f"{RANDOM_READS})", 1, "one ranged GET", payload=lambda s: READ, within_rtt=1.5),
        Row("random", Fig.RANDOM_BYTES, "random 4 KiB reads: bytes fetched per read", 0,
            "the 4 KiB read (the link counts the body and the HTTP headers)",
            payload=lambda s: READ, at_most_bytes=128 * 1024, unit="B"),
        Row("up", Fig.UP_RETURNED, f"rsync -a up, {n} x 4 KiB, until rsync returns", 0,
            "nothing needs the store before rsync returns", within_loopback=1.25),
        Row("up", Fig.UP_CONFIRMED, f"rsync -a up, {n} x 4 KiB, until all are on the server", 6,
            "connect; list the root; mkdir; then create, PUT and complete, each of all the "
            "files together",
            payload=lambda s: s.small_files * READ, wait=delay, within_rtt=50),
        Row("write", Fig.WRITE, f"{big} written (cp + fsync), until it is on the server", 5,
            "connect; list the root; create; the parts together; complete",
            payload=lambda s: s.big, one_stream=True, within_link=1.4),
    ]


def key(name: str, tool: str, rtt: float) -> str:
    return f"{name}/{tool}@{rtt * 1000:g}"


def shown(value: float | None, row: Row, rtt: float) -> str:
    if value is None:
        return ""
    if row.unit == "B":
        return f"{value / 1024:,.1f} KiB"
    return f"{fmt(value)} s ({value / rtt:.1f} RTT)" if rtt else f"{fmt(value)} s"


def evaluate(row: Row, fig: Figures, link: LinkSettings, s: Sizes) -> dict:
    rtt = link.rtt
    value = fig.median(key(row.key, "vagonfs", rtt))
    rclone = fig.median(key(row.key, "rclone", rtt))
    limit = row.limit(link, s)
    loopback = fig.median(key(row.key, "vagonfs", 0)) if row.within_loopback else None
    missing = []
    bound: float | None
    if row.within_rtt is not None:
        bound, target = row.within_rtt * rtt, f"<= {row.within_rtt:g} RTT"
    elif row.within_link is not None:
        bound, target = row.within_link * limit, f"<= {row.within_link:g}x the link's time"
    elif row.link_share is not None:
        bound, target = limit / row.link_share, f">= {row.link_share:g} of the link's speed"
    elif row.within_loopback is not None:
        bound = row.within_loopback * loopback if loopback is not None else None
        target = f"<= {row.within_loopback:g}x loopback ({shown(loopback, row, 0) or '?'})"
        if loopback is None:
            missing.append("loopback")
    else:
        bound, target = row.at_most_bytes, f"<= {(row.at_most_bytes or 0) / 1024:g} KiB"
    if row.unit == "s":
        target += "; <= rclone"
        if rclone is None:
            missing.append("rclone")
    if value is None:
        missing.append("vagonfs")
    misses = []  # what a measured row misses
    if value is not None and bound is not None and not missing:
        if value > bound:
            misses.append("the target")
        if row.unit == "s" and rclone is not None and value > rclone:
            misses.append("rclone")
    met = None if value is None or bound is None or missing else not misses
    limit_text = (f"{row.payload(s) / 1024:,.1f} KiB" if row.unit == "B" else
                  shown(limit, row, rtt))
    if row.one_stream:
        one = row.one_stream_limit(link, s)
        limit_text += f"; one connection: {shown(one, row, rtt)}"
    return {"case": row.label, "rtt_ms": rtt * 1000, "value": value, "rclone": rclone,
            "limit": limit, "limit_text": limit_text, "limit_counted": row.why, "target": target, "bound": bound,
            "met": met, "misses": misses, "missing": missing, "shown": shown(value, row, rtt),
            "rclone_shown": shown(rclone, row, rtt)}


def legend(s: Sizes) -> str:
    """How the link's limit of each row is counted."""
    lines = []
    for row in rows(s):
        if row.unit == "B":
            lines.append(f"- {row.label}: {row.why}")
            continue
        parts = [f"{row.round_trips:g} RTT ({row.why})"]
        if row.payload(s):
            parts.append(f"{row.payload(s):,} bytes at the link's rate")
        if row.wait:
            parts.append(f"{row.wait:g} s of write-back delay, given to both tools")
        one = "; one connection: the same RTTs, the bytes at window/RTT" if row.one_stream else ""
        lines.append(f"- {row.label}: {' + '.join(parts)}{one}")
    return "\n".join(lines)


def table(evaluated: list[dict]) -> str:
    lines = ["| case | RTT | vagonfs | rclone | the link's limit | target | met |",
             "|---|---|---|---|---|---|---|"]
    for r in evaluated:
        value = r["shown"] or f"not measured ({', '.join(r['missing'])})"
        met = {True: "yes", False: f"**no** ({' and '.join(r['misses'])})",
               None: "**not measured**"}[r["met"]]
        lines.append(f"| {r['case']} | {r['rtt_ms']:g} ms | {value} | {r['rclone_shown']} | "
                     f"{r['limit_text']} | {r['target']} | {met} |")
    return "\n".join(lines)


# -- the run ----------------------------------------------------------------------------------

def run_tool_case(fig: Figures, name: str, tool: Tool, s: Sizes, rtt: float) -> None:
    label = f"{name}/{tool.name}@{rtt * 1000:g}ms"
    print(f"{label}: {' '.join((CASES[name].__doc__ or '').split())}", flush=True)
    start = time.perf_counter()
    try:
        CASES[name](tool, lambda k, v, **d: fig.put(key(k, tool.name, rtt), v, **d), s)
    except Exception as exc:  # one case's failure is its rows' miss, not the run's end
        traceback.print_exc()
        fig.errors[label] = f"{type(exc).__name__}: {exc}"[:300]
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def run_at(work: Path, fig: Figures, s: Sizes, link: LinkSettings | None,
           cases: list[str]) -> None:
    """The cases over one link (``None``: loopback, vagonfs alone, the rows that
    compare with it), each tool on a fresh mount in turn."""
    rtt = link.rtt if link else 0.0
    print(f"== {link.describe() if link else 'loopback (no link)'}", flush=True)
    rig = Rig(work, s.big, link=link, rclone_cache_mode="writes")
    try:
        tools: list[Tool] = [Vagonfs(rig)] + ([Rclone(rig)] if link else [])
        for tool in tools:
            tool.make_data(s.big)
        for name in cases:
            for tool in tools:
                run_tool_case(fig, name, tool, s, rtt)
    except Exception as exc:
        traceback.print_exc()
        fig.errors[f"set-up@{rtt * 1000:g}ms"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        rig.close()


def run_wan(args: argparse.Namespace) -> int:
    """``bench.py --wan``: the cases at each RTT, the table, the JSON; 1 when any
    case failed or any row lacks a figure its target needs."""
    s = Sizes(big=(args.size_mib or 256) * MiB, small_files=args.small_files or 200)
    links = [link_settings(args, parse_duration(f"{ms}ms")) for ms in args.rtt.split(",")]
    cases = list(CASES) if not args.only else [c.strip() for c in args.only.split(",")]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"bench --wan: no case {', '.join(unknown)}; cases: {', '.join(CASES)}")
    fig = Figures()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vagonfs-bench-wan-", dir=args.work) as work:
        if "up" in cases:
            (Path(work) / "loopback").mkdir()
            run_at(Path(work) / "loopback", fig, s, None, ["up"])
        for link in links:
            folder = Path(work) / f"rtt-{link.rtt * 1000:g}"
            folder.mkdir()
            run_at(folder, fig, s, link, cases)
    seconds = time.perf_counter() - start
    evaluated = [evaluate(row, fig, link, s) for link in links for row in rows(s)
                 if row.case in cases]
    head = {"when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit(),
            "machine": f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}",
            "seconds": round(seconds),
            "links": [link.describe() for link in links]}
    print(f"\n{head['when']}, commit {head['commit']}; {head['machine']}; took {seconds:.0f} s")
    print(f"links: {'; '.join(link.describe() for link in links)}; each case from a fresh "
          f"mount and an empty cache")
    for name, error in fig.errors.items():
        print(f"FAILED {name}: {error}")
    print(table(evaluated))
    print(f"\nThe link's limits, counted as:\n{legend(s)}")
    Path(args.json or "bench-wan-results.json").write_text(json.dumps({
        **head, "sizes": vars(s), "cases": cases, "rows": evaluated, "figures": fig.values,
        "details": fig.details, "errors": fig.errors}, indent=2))
    unmeasured = [r for r in evaluated if r["met"] is None]
    for r in unmeasured:
        print(f"NOT MEASURED: {r['case']} at {r['rtt_ms']:g} ms ({', '.join(r['missing'])})")
    return 1 if fig.errors or unmeasured else 0
