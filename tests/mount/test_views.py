"""What each store's mount shows, and what its read-only parts refuse."""

from __future__ import annotations

import errno
import os

import pytest

from .conftest import sh


@pytest.fixture
def demo_vagon(mount_factory, demo_emulator):
    return mount_factory("vagon", emulator=demo_emulator)


def test_vagon_tree_shows_shared_machines_tasks_and_recordings(demo_vagon):
    root = demo_vagon.path
    assert sorted(os.listdir(root)) == ["machines", "recordings", "shared"]
    machines = sorted(os.listdir(root / "machines"))
    assert machines == ["Computer #100", "Computer #101"]
    assert sorted(os.listdir(root / "machines/Computer #100")) == ["files", "tasks"]
    assert "Project-Alpha" in os.listdir(root / "machines/Computer #100/tasks")
    assert sorted(os.listdir(root / "machines/Computer #101/tasks")) == ["Outputs", "Render-01"]
    assert os.listdir(root / "recordings")
    found = sh(f"find '{root}/shared/Projects' -type f")
    assert "design.txt" in found


def test_vagon_read_only_views_refuse_changes_with_erofs(demo_vagon):
    root = demo_vagon.path
    for path in (root / "newfile", root / "recordings/x", root / "machines/x"):
        with pytest.raises(OSError) as exc:
            open(path, "w")
        assert exc.value.errno == errno.EROFS, path
    with pytest.raises(OSError) as exc:
        os.mkdir(root / "machines/new")
    assert exc.value.errno == errno.EROFS


def test_vagon_reserved_characters_are_refused_not_altered(vagon_mount):
    for name in ("a:b", "what?", "x|y", 'q"t'):
        with pytest.raises(OSError) as exc:
            open(vagon_mount.path / "shared" / name, "w")
        assert exc.value.errno == errno.EINVAL, name
    assert os.listdir(vagon_mount.path / "shared") == []


def test_vagon_large_demo_file_reads_back_like_the_api_serves_it(demo_vagon, tmp_path):
    path = demo_vagon.path / "shared/Media/large-dataset.bin"
    assert path.stat().st_size == 16 * 1024 * 1024
    sh(f"cp '{path}' {tmp_path}/copy.bin")
    sh(f"cmp '{path}' {tmp_path}/copy.bin")  # the second read comes from the cache


@pytest.mark.parametrize("form", ["deployed", "documented"])
def test_shannon_sessions_are_read_only_folders(mount_factory, emulator_factory, form):
    emulator = emulator_factory("--seed-demo", "--shannon-form", form)
    mount = mount_factory("shannon", emulator=emulator)
    sessions = sorted(os.listdir(mount.path))
    assert len(sessions) == 2
    first = mount.path / sessions[0]
    assert "analysis.py" in os.listdir(first)
    assert (first / "analysis.py").read_text().strip()
    png = (first / "output/chart.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert len(png) == (first / "output/chart.png").stat().st_size
    with pytest.raises(OSError) as exc:
        open(first / "new.txt", "w")
    assert exc.value.errno == errno.EROFS
