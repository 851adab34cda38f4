"""The loopback bench's rows (``scripts/bench_targets.py``): a row of a case that
ran without a figure it needs fails the run, naming the figure, where it used to
say "not measured" and pass."""

from __future__ import annotations

from bench_figures import Figures
from bench_targets import Key, Settings, judged

SETTINGS = Settings(size=256 << 20, big=256 << 20, small_files=200, rounds=1,
                    ls_entries=10_000, walk_entries=15_000, tree_entries=30_000)
# what the small case and its baseline case put, in files/s
SMALL = {Key.SMALL_UP_RETURNED: 900.0, Key.SMALL_UP_CONFIRMED: 230.0, Key.SMALL_DOWN: 540.0,
         Key.RCLONE_UP_RETURNED: 570.0, Key.RCLONE_UP_CONFIRMED: 30.0, Key.RCLONE_DOWN: 90.0}


def figures(values: dict[str, float]) -> Figures:
    fig = Figures()
    for key, value in values.items():
        fig.put(key, value)
    return fig


def test_rows_with_every_figure_they_need_are_judged_and_nothing_is_missing():
    rows, missing = judged(SETTINGS, ["rclone-small", "small"], figures(SMALL))
    assert missing == []
    assert [(r["case"], r["met"]) for r in rows] == [
        ("rsync -a up 200 x 4 KiB, until rsync returns", True),
        ("rsync -a up 200 x 4 KiB, until all are on the server", True),
        ("rsync -a down 200 x 4 KiB, fresh mount, empty cache", True)]


def test_a_case_that_ran_without_a_figure_its_row_shows_is_named():
    fig = figures({k: v for k, v in SMALL.items() if k != Key.SMALL_DOWN})
    rows, missing = judged(SETTINGS, ["rclone-small", "small"], fig)
    assert missing == ["small_down (rsync -a down 200 x 4 KiB, fresh mount, empty cache)"]
    down = rows[-1]
    assert (down["met"], down["error"]) == (False, "no figure small_down")


def test_a_missing_baseline_is_named_too():
    fig = figures({k: v for k, v in SMALL.items() if k != Key.RCLONE_UP_CONFIRMED})
    _, missing = judged(SETTINGS, ["rclone-small", "small"], fig)
    assert missing == ["rclone_up_confirmed (rsync -a up 200 x 4 KiB, until all are on the "
                       "server)"]


def test_the_read_rows_need_the_figures_the_read_case_puts_by_the_same_names():
    """Every read row needs a figure named by ``Key.read``/``Key.reads`` (what
    the read case puts) or a baseline of the cases run beside it."""
    fig = Figures()
    for temp in ("cold", "warm", "hot"):
        for who in ("root", "user"):
            for store_ahead in (True, False):
                read = Key.read(temp, who, store_ahead)
                fig.put(read, 1000.0)
                fig.put(Key.reads(read), 1024.0)
    for kb in (128, 1024):
        for store_ahead in (False, True):
            fig.put(Key.zero(kb, store_ahead), 2000.0)
            fig.put(Key.reads(Key.zero(kb, store_ahead)), 1024.0)
    for key in (Key.CURL, Key.RCLONE_READ, Key.CACHE_DISK):
        fig.put(key, 2000.0)
    cases = ["zero", "curl", "rclone-read", "read"]
    rows, missing = judged(SETTINGS, cases, fig)
    assert missing == []
    # 5 with targets, 2 of the zero-work filesystem storing ahead, 18
    # store-ahead rows, 2 with the cache's file in memory, the cache's disk
    assert len(rows) == 28
    fig.values.pop(Key.read("warm", "user", store_ahead=False))
    _, missing = judged(SETTINGS, cases, fig)
    assert missing == ["warm_user_nostore (warm read 256 MiB, user, 128 KiB requests, "
                       "--no-store-ahead)"]


def test_rows_of_cases_that_did_not_run_are_left_out_not_missing():
    rows, missing = judged(SETTINGS, ["write"], figures({Key.WRITE: 300.0,
                                                         Key.DIRECT_UPLOAD: 1000.0}))
    assert (len(rows), missing) == (1, [])
    assert rows[0]["ratio"] == 0.3 and rows[0]["met"] is False
