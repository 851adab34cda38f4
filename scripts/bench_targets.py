"""The loopback benchmark's figures and the rows that judge them (``bench.py``).

Each figure is named once, here, for the case that puts it and the rows that
show it: a name spelled twice drifted apart unseen (its row said "not
measured" and the run still passed). A row whose case ran without a figure it
needs now fails the run, naming the figure.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bench_figures import Figures, fmt


class Key:
    """The figures of the cases, by the case that puts them."""

    ZERO_128K = "zero_128k"  # zero: the pyfuse3 ceiling at 128 KiB requests
    ZERO_1M = "zero_1m"  # ... at 1 MiB requests
    ZERO_STORE_128K = "zero_store_128k"  # ... storing ahead as vagonfs does
    ZERO_STORE_1M = "zero_store_1m"
    CURL = "curl"
    RCLONE_READ = "rclone_read"
    CACHE_DISK = "cache_disk"  # read: dd of the block cache's data file
    DIRECT_UPLOAD = "direct_upload"  # write: the client's multipart upload
    WRITE = "write"
    RCLONE_UP_RETURNED = "rclone_up_returned"
    RCLONE_UP_CONFIRMED = "rclone_up_confirmed"
    RCLONE_DOWN = "rclone_down"
    SMALL_UP_RETURNED = "small_up_returned"
    SMALL_UP_CONFIRMED = "small_up_confirmed"
    SMALL_DOWN = "small_down"
    COPY_BIG = "copy_big"
    WALK_RSS = "walk_rss"  # scale: find over the walk's entries
    TREE_RSS = "tree_rss"  # scale: find over the big tree
    RSS_WORST = "rss_worst"  # every case's mounts: the worst peak

    @staticmethod
    def zero(kb: int, store_ahead: bool) -> str:
        """The zero-work filesystem read in ``kb`` KiB requests."""
        return {(128, False): Key.ZERO_128K, (1024, False): Key.ZERO_1M,
                (128, True): Key.ZERO_STORE_128K, (1024, True): Key.ZERO_STORE_1M}[kb, store_ahead]

    @staticmethod
    def read(temp: str, who: str, store_ahead: bool = True) -> str:
        """A read of the big file: ``temp`` cold, warm (from the cache's disk) or
        hot (the cache's file in the page cache), ``who`` root or user."""
        return f"{temp}_{who}" + ("" if store_ahead else "_nostore")

    @staticmethod
    def reads(figure: str) -> str:
        """The FUSE reads per GiB made by the read measured as ``figure``."""
        return f"{figure}_reads"

    @staticmethod
    def ls(temp: str, label: str) -> str:
        """``ls -l`` of the big folder: ``temp`` cold or warm, ``label`` default or xattrs."""
        return f"ls_{temp}_{label}"


@dataclass
class Settings:
    size: int  # bytes of the big file read and written
    big: int  # bytes of the file copied for the memory case
    small_files: int
    rounds: int
    ls_entries: int
    walk_entries: int
    tree_entries: int


def mib(n: int) -> str:
    return f"{n >> 30} GiB" if n >= 1 << 30 and not n % (1 << 30) else f"{n >> 20} MiB"


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

    def needs(self) -> list[str]:
        return [self.key, *([self.baseline] if self.baseline else [])]

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
    zero_128k = (Key.ZERO_128K, "zero-work pyfuse3, 128 KiB requests")
    rclone = "rclone, the same"
    return [
        Target("read", f"cold read {size}, root, read-ahead 1 MiB (dd bs=1M)",
               Key.read("cold", "root"), "MB/s", Key.CURL, "curl of the same download link",
               at_least=0.8),
        Target("read", f"cold read {size}, user, read-ahead 128 KiB (dd bs=1M)",
               Key.read("cold", "user"), "MB/s", *zero_128k, at_least=0.8),
        Target("read", f"cold read {size}, user, read-ahead 128 KiB, vs rclone",
               Key.read("cold", "user"), "MB/s", Key.RCLONE_READ, "rclone mount, the same read",
               at_least=1.0),
        Target("read", "warm read from the block cache, 1 MiB requests", Key.read("warm", "root"),
               "MB/s", Key.ZERO_1M, "zero-work pyfuse3, 1 MiB requests", at_least=0.8),
        Target("read", "warm read from the block cache, 128 KiB requests",
               Key.read("warm", "user"), "MB/s", *zero_128k, at_least=0.8),
        *store_ahead_rows(size),
        *(Target("read", f"warm read, the cache's file in memory, {request} requests",
                 Key.read("hot", who), "MB/s", zero, f"zero-work pyfuse3, {request} requests",
                 note="no target: the warm row without the cache's disk")
          for who, zero, request in (("root", Key.ZERO_1M, "1 MiB"),
                                     ("user", Key.ZERO_128K, "128 KiB"))),
        Target("read", "warm read from the block cache, 1 MiB requests, vs the cache's disk",
               Key.read("warm", "root"), "MB/s", Key.CACHE_DISK,
               "dd of the cache's data file, page cache dropped",
               note="no target: what the disk under the cache allows"),
        Target("write", f"write {size} to confirmation (cp + fsync)", Key.WRITE, "MB/s",
               Key.DIRECT_UPLOAD, "the client's multipart upload", at_least=0.8),
        Target("small", f"rsync -a up {n}, until rsync returns", Key.SMALL_UP_RETURNED,
               "files/s", Key.RCLONE_UP_RETURNED, rclone, at_least=1.0),
        Target("small", f"rsync -a up {n}, until all are on the server", Key.SMALL_UP_CONFIRMED,
               "files/s", Key.RCLONE_UP_CONFIRMED, rclone, at_least=1.0),
        Target("small", f"rsync -a down {n}, fresh mount, empty cache", Key.SMALL_DOWN,
               "files/s", Key.RCLONE_DOWN, rclone, at_least=2.0),
        Target(None, f"memory: daemon peak RSS, every case (worst: {rss_worst})", Key.RSS_WORST,
               "MB", below=250),
        Target("scale", f"{ls}, cold, default", Key.ls("cold", "default"), "s",
               below=10 * scaled),
        Target("scale", f"{ls}, cold, --xattrs", Key.ls("cold", "xattrs"), "s",
               Key.ls("cold", "default"), "default", note="ratio: what xattrs cost"),
        Target("scale", f"{ls}, warm, default", Key.ls("warm", "default"), "s",
               below=1 * scaled),
        Target("scale", f"{ls}, warm, --xattrs", Key.ls("warm", "xattrs"), "s",
               Key.ls("warm", "default"), "default", note="ratio: what xattrs cost"),
        Target("scale", f"memory: daemon peak RSS, find over {s.walk_entries:,} entries",
               Key.WALK_RSS, "MB", below=150),
        Target("scale", f"memory: daemon peak RSS, find over a {s.tree_entries:,}-entry tree",
               Key.TREE_RSS, "MB", below=500),
    ]


def store_ahead_rows(size: str) -> list[Target]:
    """Each read row without store-ahead, and the FUSE reads per GiB each made
    beside the zero-work ceiling's at the same request size (every one of its
    reads is a FUSE read)."""
    rows = [Target("zero", f"zero-work pyfuse3 storing ahead as vagonfs does, {request} requests",
                   Key.zero(kb, True), "MB/s", Key.zero(kb, False),
                   f"zero-work pyfuse3, {request} requests",
                   note="no target: the most store-ahead gives")
            for kb, request in ((1024, "1 MiB"), (128, "128 KiB"))]
    reads = [(temp, who, zero, request) for temp in ("cold", "warm", "hot")
             for who, zero, request in (("root", Key.ZERO_1M, "1 MiB"),
                                        ("user", Key.ZERO_128K, "128 KiB"))]
    for temp, who, zero, request in reads:
        label = {"hot": "warm read, the cache's file in memory,"}.get(temp, f"{temp} read")
        what = f"{label} {size}, {who}, {request} requests"
        rows.append(Target("read", f"{what}, --no-store-ahead", Key.read(temp, who, False),
                           "MB/s", zero, f"zero-work pyfuse3, {request} requests",
                           note="no target: what store-ahead changes"))
        for store_ahead, how in ((True, "store-ahead"), (False, "--no-store-ahead")):
            rows.append(Target("read", f"{what}, {how}: FUSE reads per GiB",
                               Key.reads(Key.read(temp, who, store_ahead)), "reads/GiB",
                               Key.reads(zero), f"zero-work pyfuse3, {request} requests",
                               note="no target: fewer is better"))
    return rows


def judged(s: Settings, cases: list[str], fig: Figures) -> tuple[list[dict], list[str]]:
    """The rows of the cases that ran, and the figures they need that no case
    put (each as "figure (row)"): a run with one is a failed run, whether its
    case raised or put the figure under another name."""
    rows, missing = [], []
    worst = fig.details.get(Key.RSS_WORST, {}).get(0, {}).get("worst", "")
    for t in targets(s, worst):
        if t.by not in cases and not (t.by is None and t.key in fig.values):
            continue
        row = t.row(fig)
        lacks = [k for k in t.needs() if k not in fig.values]
        missing += [f"{k} ({t.case})" for k in lacks]
        if t.by in fig.errors:
            row["error"] = fig.errors[t.by]
        elif lacks:
            row["error"] = f"no figure {', '.join(lacks)}"
        rows.append(row)
    return rows, missing


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


