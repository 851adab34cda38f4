"""The conflict copy's name (``vagonfs.core.conflict_names``): each rule its docstring states."""

from __future__ import annotations

import calendar

import pytest

from vagonfs.core.conflict_names import conflict_name

WHEN = calendar.timegm((2026, 12, 7, 10, 15, 0))  # 2026-12-07 10:15:00 UTC


@pytest.mark.parametrize("name,expected", [
    ("plan.txt", "plan (conflict 2026-12-07 101500).txt"),
    ("report.v2.docx", "report.v2 (conflict 2026-12-07 101500).docx"),
    ("Makefile", "Makefile (conflict 2026-12-07 101500)"),
    (".bashrc", ".bashrc (conflict 2026-12-07 101500)"),
    (".config.json", ".config (conflict 2026-12-07 101500).json"),
    ("odd.", "odd. (conflict 2026-12-07 101500)"),
])
def test_the_marker_goes_before_the_extension(name, expected):
    assert conflict_name(name, WHEN) == expected


def test_a_taken_name_gets_a_number():
    assert conflict_name("plan.txt", WHEN, 2) == "plan (conflict 2026-12-07 101500 2).txt"
    assert conflict_name("plan", WHEN, 13) == "plan (conflict 2026-12-07 101500 13)"


def test_a_long_name_is_cut_in_its_stem_at_a_character_boundary():
    name = "é" * 120 + ".txt"  # 244 bytes
    copy = conflict_name(name, WHEN, 12)
    assert len(copy.encode()) <= 255 and copy.endswith(" (conflict 2026-12-07 101500 12).txt")
    assert copy.startswith("é" * 10)
    assert conflict_name("a" * 255, WHEN, max_bytes=255).endswith(" (conflict 2026-12-07 101500)")


def test_an_extension_with_no_room_beside_the_marker_is_cut_as_part_of_the_stem():
    name = "a." + "x" * 240
    copy = conflict_name(name, WHEN)
    assert len(copy.encode()) == 255 and copy.endswith("x (conflict 2026-12-07 101500)")
