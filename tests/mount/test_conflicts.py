"""Two machines, one folder: two mounts of one emulator store (the second
mount of the same store is the colleague's machine) never lose a version
silently (docs/SEMANTICS.md, "Concurrent writers"). What the store holds is
read through a third, fresh mount."""

from __future__ import annotations

import os
import re
import signal

import pytest

from .conftest import Mount, sh, vagonfs

STORES = [("vagon", "shared"), ("tenant", "")]
CONFLICT = r"WARNING vagonfs\.conflicts: plan\.txt changed on the store since this mount's " \
           r"copy was made from it; this mount's content is kept beside it as " \
           r"plan \(conflict \d{4}-\d\d-\d\d \d{6}\)\.txt"
COPY = re.compile(r"plan \(conflict \d{4}-\d\d-\d\d \d{6}\)\.txt")


def stored(mount_factory, emulator, store: str, subpath: str) -> dict[str, str]:
    """Every file of the folder as the store holds it now, by name."""
    fresh = mount_factory(store, emulator=emulator, subpath=subpath)
    return {name: (fresh.path / name).read_text() for name in sorted(os.listdir(fresh.path))}


def two_mounts(mount_factory, emulator_factory, store: str, subpath: str,
               *options: str) -> tuple[Mount, Mount, object]:
    """Ours (with ``options``) and a colleague's mount of one store, holding
    ``plan.txt`` as the colleague saved it; both have seen it."""
    emulator = emulator_factory()
    colleague = mount_factory(store, emulator=emulator, subpath=subpath)
    ours = mount_factory(store, emulator=emulator, subpath=subpath, options=options)
    (colleague.path / "plan.txt").write_text("base\n")
    colleague.wait_uploaded()
    assert (ours.path / "plan.txt").read_text() == "base\n"
    return ours, colleague, emulator


@pytest.mark.parametrize("store,subpath", STORES)
def test_both_edit_one_file_and_both_versions_are_kept(mount_factory, emulator_factory,
                                                       store, subpath):
    ours, colleague, emulator = two_mounts(mount_factory, emulator_factory, store, subpath)
    with open(ours.path / "plan.txt", "r+") as editing:  # opened on the base version
        sh(f"echo 'colleague' > {colleague.path}/plan.txt")  # saved meanwhile elsewhere
        colleague.wait_uploaded()
        editing.write("ours\n")
    ours.wait_uploaded()
    ours.expect_log(CONFLICT)
    # the name shows the store's file at once (the kernel's entry for it dropped)
    assert (ours.path / "plan.txt").read_text() == "colleague\n"

    files = stored(mount_factory, emulator, store, subpath)
    [copy] = [name for name in files if COPY.fullmatch(name)]
    assert files == {"plan.txt": "colleague\n", copy: "ours\n"}
    assert (ours.path / copy).read_text() == "ours\n"
    [conflict] = ours.status()["conflicts"]
    assert (conflict["path"], conflict["kept_as"]) == ("plan.txt", copy)
    text = vagonfs("status", str(ours.path)).stdout
    assert "conflicts kept since the mount started: 1" in text and copy in text
    assert colleague.status()["conflicts"] == []
    assert sorted(os.listdir(ours.path)) == sorted(["plan.txt", copy])


@pytest.mark.parametrize("store,subpath", STORES)
def test_a_file_deleted_elsewhere_while_edited_here_is_recreated(mount_factory,
                                                                 emulator_factory, store,
                                                                 subpath):
    ours, colleague, emulator = two_mounts(mount_factory, emulator_factory, store, subpath)
    with open(ours.path / "plan.txt", "r+") as editing:
        os.unlink(colleague.path / "plan.txt")
        editing.write("ours\n")
    ours.wait_uploaded()
    ours.expect_log(r"WARNING vagonfs\.conflicts: plan\.txt was deleted on the store while "
                    r"it was changed here; recreated with this mount's content")
    assert stored(mount_factory, emulator, store, subpath) == {"plan.txt": "ours\n"}
    assert ours.status()["conflicts"] == []


@pytest.mark.parametrize("store,subpath", STORES)
def test_a_journal_replay_whose_base_changed_meanwhile_keeps_both(mount_factory,
                                                                  emulator_factory, store,
                                                                  subpath):
    """Our save is journaled, the daemon killed before its upload; the
    colleague saves; the next mount replays our upload against the base the
    journal kept."""
    ours, colleague, emulator = two_mounts(mount_factory, emulator_factory, store, subpath,
                                           "--write-back-delay", "60s")
    sh(f"echo 'ours' > {ours.path}/plan.txt")  # closed: journaled, not uploaded
    ours.kill(signal.SIGKILL)
    sh(f"echo 'colleague' > {colleague.path}/plan.txt")
    colleague.wait_uploaded()
    ours.options = ()
    ours.start()
    ours.wait_uploaded()
    ours.expect_log(CONFLICT)

    files = stored(mount_factory, emulator, store, subpath)
    [copy] = [name for name in files if COPY.fullmatch(name)]
    assert files == {"plan.txt": "colleague\n", copy: "ours\n"}
    assert [c["kept_as"] for c in ours.status()["conflicts"]] == [copy]


@pytest.mark.parametrize("store,subpath", STORES)
def test_edit_save_edit_save_on_one_mount_is_no_conflict(mount_factory, emulator_factory,
                                                         store, subpath):
    """In place, editor-style (a new file renamed over the old one, within
    the write-back delay: a rename here, not on the store), with and without
    waiting for each upload, while a second mount of the store looks on."""
    ours, colleague, emulator = two_mounts(mount_factory, emulator_factory, store, subpath,
                                           "--write-back-delay", "1s")
    for round_ in range(3):
        sh(f"echo 'in place {round_}' > {ours.path}/plan.txt")
        sh(f"echo 'editor {round_}' > {ours.path}/.plan.txt.new && "
           f"mv {ours.path}/.plan.txt.new {ours.path}/plan.txt")
        if round_ == 1:
            ours.wait_uploaded()
    ours.wait_uploaded()
    sh(f"echo 'appended' >> {ours.path}/plan.txt")
    ours.wait_uploaded()
    assert ours.status()["conflicts"] == []
    assert stored(mount_factory, emulator, store, subpath) == \
        {"plan.txt": "editor 2\nappended\n"}
    assert colleague.status()["conflicts"] == []


def test_a_new_file_retried_after_a_failed_upload_is_no_conflict_with_its_first_try(
        mount_factory, emulator_factory):
    """Vagon: the first try's create (``overwrite`` off) left an upload that
    never completed under the name; the retry's create is refused (409) for
    it, and the name holds nothing anyone can read, so the retry replaces it."""
    emulator = emulator_factory()
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    emulator.set_faults({"rules": [{"route": "vagon.complete", "status": 404, "times": 1}]})
    (mount.path / "new.txt").write_text("mine\n")
    mount.wait_uploaded()
    mount.expect_log(r"WARNING vagonfs\.upload: upload of new\.txt failed .*; retrying")
    assert mount.calls()["vagon.create"] == 3  # the first try, the refused one, the retry
    assert mount.status()["conflicts"] == []
    assert stored(mount_factory, emulator, "vagon", "shared") == {"new.txt": "mine\n"}
