"""Big folders and trees on a real mount cost exactly their list pages, once.

Counted by the emulator, never timed (the times are rows of scripts/bench.py).
"""

from __future__ import annotations

from .conftest import sh, vagon_folder
from .test_api_calls import calls_since

PER_PAGE = 100  # the emulator's cap in these tests: pages of 100


def test_ls_l_of_20000_entries_costs_its_200_pages_then_nothing(mount_factory,
                                                                emulator_factory):
    emulator = emulator_factory("--per-page-cap", str(PER_PAGE))
    vagon_folder(emulator, "big", count=20_000, prefix="f")
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    before = mount.calls()
    sh(f"ls {mount.path}")  # lists big000000 ahead; the next ls waits for that
    listed = sh(f"ls -l {mount.path}/big000000", timeout=600).splitlines()
    assert len(listed) == 1 + 20_000 and listed[-1].endswith(" f019999")
    assert calls_since(mount, before) == {"vagon.files": 1 + 20_000 // PER_PAGE}
    before = mount.calls()
    assert len(sh(f"ls -l {mount.path}/big000000", timeout=600).splitlines()) == 1 + 20_000
    assert calls_since(mount, before) == {}


def test_find_over_a_tree_lists_each_folder_once(mount_factory, emulator_factory):
    emulator = emulator_factory("--per-page-cap", str(PER_PAGE))
    vagon_folder(emulator, "tree", folders=20, count=500, prefix="f")
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    before = mount.calls()
    sh(f"ls {mount.path}")  # lists tree000000 ahead
    found = sh(f"find {mount.path}/tree000000", timeout=600).splitlines()
    assert len(found) == 1 + 20 + 20 * 500
    # the mount's top folder, the tree in one page, each of the 20 folders in
    # its 5, listed ahead or not (find's statfs adds the capacity, asked once:
    # not a listing)
    spent = calls_since(mount, before)
    assert spent.pop("vagon.files") == 1 + 1 + 20 * 5 and set(spent) <= {"vagon.capacity"}
    before = mount.calls()
    assert len(sh(f"find {mount.path}/tree000000", timeout=600).splitlines()) == 1 + 20 + 20 * 500
    assert calls_since(mount, before) == {}
