"""The figures a benchmark run measured, and how they are shown: shared by the
loopback cases (``bench.py``) and the WAN cases (``bench_wan.py``)."""

from __future__ import annotations

import statistics
import subprocess

from bench_rig import ROOT, run


class Figures:
    """What the cases measured, by key and round, with the details that go into
    the JSON. Every case but the once-only ones runs once per round, beside
    the baselines of that round: this machine's speed moves by 2x within
    minutes, so a baseline measured once, at the start, made ratios of when
    it was measured."""

    def __init__(self):
        self.round = 0  # the round the cases are measuring now
        self.values: dict[str, dict[int, float]] = {}
        self.details: dict[str, dict[int, dict]] = {}
        self.errors: dict[str, str] = {}  # case -> why (some of) its figures are missing

    def put(self, key: str, value: float, **details) -> None:
        self.values.setdefault(key, {})[self.round] = value
        self.details.setdefault(key, {})[self.round] = details
        shown = ", ".join(f"{k}={v}" for k, v in details.items())
        print(f"  {key:<24} {value:12.3f}  {shown}", flush=True)

    def median(self, key: str) -> float | None:
        rounds = self.values.get(key)
        return statistics.median(rounds.values()) if rounds else None


def fmt(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.3g}"


def commit() -> str:
    try:
        head = run("git", "-C", ROOT, "rev-parse", "--short", "HEAD").stdout.strip()
        dirty = run("git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no").stdout
        return head + (" + uncommitted changes" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
