"""The model test (``tests/fs_model.py``) through a real FUSE mount: a smoke
test of the same machine the core runs in-process with hundreds of examples
(``tests/core/test_model.py``), here a few sequences with a remount among
the rules, so the kernel, the daemon and the journal are in the path.

No colleague changes the store here (the in-process run does that). The
tenant store is the subject that can rename; the Vagon run leaves renames out
(they are EXDEV there by design, see docs/SEMANTICS.md). Sequences found are
kept as named regressions in ``tests/core/test_model.py``, where they run in
milliseconds.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import rule, run_state_machine_as_test

from fs_model import MountModel, StoreModel
from local_folder import Folder

EXAMPLES = 3  # a smoke test: the in-process run is where the examples are


def machine_for(mount, local, can_rename: bool) -> type[MountModel]:
    class ThroughFuse(MountModel):
        def __init__(self) -> None:
            super().__init__()
            self.can_rename = can_rename
            self.subject = Folder(mount.path)
            self.reference = Folder(local)
            self.model = StoreModel(self.reference)

        @rule()
        def remount(self):
            mount.remount()

        def teardown(self):
            # the next example starts from empty folders on both sides
            for folder in (self.subject, self.reference):
                assert isinstance(folder, Folder)
                folder.empty()

    return ThroughFuse


@pytest.mark.parametrize("store,subpath,can_rename",
                         [("tenant", "", True), ("vagon", "shared", False)])
def test_mount_behaves_like_a_local_folder(mount_factory, tmp_path, store, subpath, can_rename):
    mount = mount_factory(store, subpath=subpath)
    local = tmp_path / "local"
    local.mkdir()
    run_state_machine_as_test(
        machine_for(mount, local, can_rename),
        settings=settings(max_examples=EXAMPLES, stateful_step_count=25, deadline=None,
                          database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck)))
