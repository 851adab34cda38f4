"""The model test (``tests/fs_model.py``) in-process: the filesystem core on the
in-memory store, no kernel (``kernel.py`` stands in for it), so hundreds of
sequences run in the time a few take on a FUSE mount, with a colleague
changing the store behind its back. Sequences it found are kept below the
machine as named regressions.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from fs_model import MountModel, StoreModel
from local_folder import Folder

from .kernel import Kernel, StoreBehind
from .memory_store import MemoryStore

# the two kinds of store: a lookup lists the folder and files move on the
# store (tenant); or a name is looked up alone, a new file's upload refuses a
# taken name, and an uploaded file cannot move (Vagon: EXDEV, so no renames)
STORES = {"tenant": {"lookup_lists": True},
          "vagon": {"exclusive_create": True, "can_rename": False}}


class InProcess(MountModel):
    store_kind = "tenant"

    def __init__(self) -> None:
        super().__init__()
        self._dir = Path(tempfile.mkdtemp(prefix="vagonfs-model-"))
        (self._dir / "local").mkdir()
        store = MemoryStore(**STORES[self.store_kind])
        self.can_rename = store.capabilities.can_rename
        self.reference = Folder(self._dir / "local")
        self.kernel = Kernel(store, self._dir / "cache")
        self.subject = self.kernel
        self.behind = StoreBehind(store)
        self.model = StoreModel(self.reference)

    def sync_subject(self) -> None:
        self.kernel.sync()

    def teardown(self) -> None:
        try:
            self.kernel.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


EXAMPLES = 200  # for each kind of store: both together in about half a minute


@pytest.mark.parametrize("kind", STORES)
def test_the_core_behaves_like_a_local_folder_with_a_colleague_behind_it(kind):
    run_state_machine_as_test(
        type(f"InProcess_{kind}", (InProcess,), {"store_kind": kind}),
        settings=settings(max_examples=EXAMPLES, stateful_step_count=30, deadline=None,
                          database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck)))


# -- what the machine found, kept as named regressions ----------------------------------


def replay(*steps: tuple[str, dict], kind: str = "tenant") -> None:
    """One sequence of the machine's rules, with its checks after each step."""
    machine = type(f"InProcess_{kind}", (InProcess,), {"store_kind": kind})()
    try:
        machine.same_tree()
        for rule, args in steps:
            getattr(machine, rule)(**args)
            machine.same_tree()
    finally:
        machine.teardown()


def test_a_file_changed_here_and_deleted_elsewhere_stays_listed_until_it_is_recreated():
    """``lookup`` found such a file (changed here, not uploaded, its store copy
    deleted by a colleague) but ``readdir`` left it out: ``ls`` hid a file
    holding unsaved changes until its upload recreated it. Fixed in
    ``Namespace.entries``."""
    replay(("colleague_writes", {"name": "b.txt", "data": b""}),
           ("append", {"name": "b.txt", "payload": b"\0"}),
           ("colleague_deletes", {"name": "b.txt"}),
           ("sync", {}))


def test_a_file_changed_here_and_deleted_elsewhere_can_still_be_renamed():
    """Its rename went to the store, which no longer had it: ``ENOENT`` for a
    file ``ls`` shows. It exists only here now, so it moves here (and its
    upload makes it again under the new name). Fixed in ``Changes.rename``."""
    replay(("append", {"name": "b.txt", "payload": b""}),
           ("sync", {}),
           ("create", {"name": "b.txt", "payload": b""}),
           ("colleague_deletes", {"name": "b.txt"}),
           ("rename", {"src": "b.txt", "dst": "a"}),
           ("sync", {}))


def test_a_file_made_here_moves_here_only_and_the_colleagues_stays():
    """The model's first word on this was wrong, the filesystem's right: a
    file made here and never uploaded moves here only, and the file a
    colleague saved under its old name, never shown here, stays there."""
    replay(("append", {"name": "a", "payload": b""}),
           ("colleague_writes", {"name": "a", "data": b"theirs"}),
           ("rename", {"src": "a", "dst": "b.txt"}),
           ("sync", {}))


def test_a_save_over_a_file_made_here_is_a_conflict_with_the_colleagues():
    """A file renamed over one made here (never uploaded) is made from that
    one, so its upload does not replace what a colleague saved under the name
    meanwhile, never shown here: it is kept beside as a copy."""
    replay(("append", {"name": "b.txt", "payload": b""}),
           ("colleague_writes", {"name": "b.txt", "data": b"theirs"}),
           ("append", {"name": "a", "payload": b""}),
           ("rename", {"src": "a", "dst": "b.txt"}),
           ("sync", {}))


def test_a_folder_holding_a_change_deleted_elsewhere_is_not_empty():
    """rmdir checked the store's listing and the files made here, not a file
    changed here whose store copy a colleague deleted: the folder went, and
    with it the only place that change could be uploaded to. Fixed in
    ``Namespace.check_empty`` (``held_here``, as ``lookup`` and ``readdir``)."""
    replay(("colleague_writes", {"name": "sub/c", "data": b""}),
           ("write_at", {"name": "sub/c", "offset": 0, "payload": b"\0"}),
           ("colleague_deletes", {"name": "sub/c"}),
           ("rmdir", {"name": "sub"}),
           ("sync", {}), kind="vagon")
