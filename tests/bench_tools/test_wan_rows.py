"""The WAN bench's rows (``scripts/bench_wan.py``): a target is judged only on the
figures it needs, and a row missing one is "not measured", never met."""

from __future__ import annotations

import pytest

from bench_figures import Figures
from bench_wan import Fig, Row, Sizes, evaluate, key, rows
from wan_link import LinkSettings

LINK = LinkSettings(0.04)
SIZES = Sizes(big=256 << 20, small_files=200)


def row(name: str) -> Row:
    return next(r for r in rows(SIZES) if r.key == name)


def test_the_link_limit_is_round_trips_plus_bytes_at_the_rate():
    cold = row(Fig.COLD)
    assert cold.limit(LINK, SIZES) == pytest.approx(4 * 0.04 + (256 << 20) / 125e6)
    # one connection carries a window a round trip: 2 MiB / 40 ms
    assert cold.one_stream_limit(LINK, SIZES) == pytest.approx(4 * 0.04 + 128 * 0.04)


def test_a_row_is_met_within_its_rtts_and_no_slower_than_rclone():
    find = row(Fig.FIND)
    fig = Figures()
    fig.put(key(Fig.FIND, "vagonfs", 0.04), 0.5)  # 12.5 RTT
    fig.put(key(Fig.FIND, "rclone", 0.04), 0.6)
    assert evaluate(find, fig, LINK, SIZES)["met"] is True
    fig.put(key(Fig.FIND, "rclone", 0.04), 0.4)
    judged = evaluate(find, fig, LINK, SIZES)
    assert (judged["met"], judged["misses"]) == (False, ["rclone"])
    fig.put(key(Fig.FIND, "vagonfs", 0.04), 0.7)  # 17.5 RTT
    assert evaluate(find, fig, LINK, SIZES)["misses"] == ["the target", "rclone"]


@pytest.mark.parametrize("present, missing", [
    ({"vagonfs": 0.5}, ["rclone"]),
    ({"rclone": 0.5}, ["vagonfs"]),
    ({}, ["rclone", "vagonfs"]),
])
def test_a_row_without_a_figure_it_needs_is_not_measured(present, missing):
    fig = Figures()
    for tool, value in present.items():
        fig.put(key(Fig.LS, tool, 0.04), value)
    judged = evaluate(row(Fig.LS), fig, LINK, SIZES)
    assert (judged["met"], judged["missing"]) == (None, missing)


def test_returning_as_soon_as_on_loopback_needs_the_loopback_figure():
    returned = row(Fig.UP_RETURNED)
    fig = Figures()
    fig.put(key(Fig.UP_RETURNED, "vagonfs", 0.04), 0.3)
    fig.put(key(Fig.UP_RETURNED, "rclone", 0.04), 0.4)
    assert evaluate(returned, fig, LINK, SIZES)["missing"] == ["loopback"]
    fig.put(key(Fig.UP_RETURNED, "vagonfs", 0), 0.25)
    assert evaluate(returned, fig, LINK, SIZES)["met"] is True  # 0.3 <= 1.25 x 0.25
