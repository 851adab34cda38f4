"""The model test's machine, shared by its two runs: in-process on the core
(``tests/core/test_model.py``, many examples, with a colleague changing the
store behind the mount's back) and through a real FUSE mount
(``tests/mount/test_model.py``, a smoke test of a few).

hypothesis drives sequences of create, write at any offset, append, truncate,
read, fsync, unlink, mkdir, rmdir and rename through the subject and through
a plain local folder, the reference; after every step both trees must hold
the same names and bytes, and every operation must fail (or not) with the
same errno. The local folder gives POSIX's answers; what a store adds is
kept in :class:`StoreModel`, which changes the reference as docs/SEMANTICS.md
says a mount shows it:

- listings last ``--dir-cache-time``; the in-process run sets it to 0, so a
  colleague's change shows at the next step, as it does here once a listing
  expired;
- a file changed here and not yet uploaded shows this mount's content,
  whatever the store holds meanwhile ("data kept until the store confirms");
- an upload (``fsync``, ``vagonfs sync``) replaces the store's file only if it
  is still the version the change was made from; else this mount's content is
  kept beside it as a conflict copy and the name shows the colleague's
  version; a file deleted elsewhere meanwhile is recreated;
- a delete, mkdir, rmdir or rename reaches the store at once, but a file made
  here and never uploaded is deleted or moved here only (what a colleague
  saved under its name, this mount never showed, stays).

Conflict copies carry the time they were made in their names; trees are
compared with that time taken out (:func:`snapshot`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from local_folder import Folder, Outcome, Subject, outcome

FILES = ["a", "b.txt", "sub/c", "sub/d.bin"]
DIRS = ["sub", "other"]
payloads = st.binary(max_size=3000)
offsets = st.integers(min_value=0, max_value=5000)
# `plan (conflict 2026-12-07 101500 2).txt`: the time and number left out
_COPY = re.compile(r" \(conflict \d{4}-\d\d-\d\d \d{6}(?: \d+)?\)")

def snapshot(tree: dict[str, bytes | None]) -> list[tuple[str, bytes | None]]:
    """A tree as sorted (path, content) pairs, conflict copies' times left out."""
    return sorted(((_COPY.sub(" (conflict)", path), data) for path, data in tree.items()),
                  key=lambda pair: (pair[0], pair[1] or b""))


def copy_name(path: str, number: int) -> str:
    """A conflict copy's name (docs/SEMANTICS.md), its time a fixed one."""
    folder, _, name = path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or name.endswith("."):
        stem, dot, ext = name, "", ""
    copy = f"{stem} (conflict 2000-01-01 000000 {number}){dot}{ext}"
    return f"{folder}/{copy}" if folder else copy


class StoreModel:
    """What the store holds, and the changes here it has not confirmed, as
    this mount should know them; it moves the reference as the mount should
    show it. Versions are numbers of this model's own."""

    def __init__(self, reference: Folder):
        self.reference = reference
        self.files: dict[str, tuple[bytes, int]] = {}  # path -> (content, version)
        self.folders: set[str] = set()
        self.pending: dict[str, int | None] = {}  # path -> the version it was made from
        self._versions = 0
        self._copies = 0

    def _version(self) -> int:
        self._versions += 1
        return self._versions

    def _local(self, path: str) -> Path:
        return self.reference.root / path

    # -- this mount --------------------------------------------------------------

    def changed(self, name: str) -> None:
        """``name`` was written or truncated here: a change made from what it showed."""
        if name not in self.pending:
            shown = self.files.get(name)
            self.pending[name] = shown[1] if shown else None

    def uploaded(self, name: str) -> None:
        """An upload of ``name`` settled (fsync, sync): the check, then the store takes
        it, beside the store's file when that is not the version it was made from."""
        base = self.pending.pop(name)
        ours = self._local(name).read_bytes()
        now = self.files.get(name)
        if now is None or now[1] == base:  # new, the same version, or deleted elsewhere
            self.files[name] = (ours, self._version())
            return
        self._copies += 1
        copy = copy_name(name, self._copies)
        self.files[copy] = (ours, self._version())
        os.rename(self._local(name), self._local(copy))
        self._local(name).write_bytes(now[0])

    def _only_here(self, name: str) -> bool:
        """Made here and never uploaded: what the store holds under its name
        (a colleague's), this mount never showed."""
        return name in self.pending and self.pending[name] is None

    def _shown_base(self, name: str) -> int | None:
        """The version of what this mount shows under ``name``: a change made
        over it is made from that."""
        if name in self.pending:
            return self.pending[name]
        return self.files[name][1] if name in self.files else None

    def _show_the_stores(self, name: str) -> None:
        if name in self.files:
            self._local(name).write_bytes(self.files[name][0])

    def unlinked(self, name: str) -> None:
        """Deleted on the store at once; a file only here, only here."""
        if self._only_here(name):
            del self.pending[name]
            self._show_the_stores(name)
        else:
            self.pending.pop(name, None)
            self.files.pop(name, None)

    def renamed(self, src: str, dst: str) -> None:
        """A file on the store moves there; one only here (or changed here and
        deleted on the store) moves here, and its upload replaces what this
        mount showed under ``dst`` (an editor's save)."""
        if src == dst:
            return
        if src in self.files and not self._only_here(src):
            self.pending.pop(dst, None)
            self.files[dst] = self.files.pop(src)
            if src in self.pending:
                self.pending[dst] = self.pending.pop(src)
            return
        base = self._shown_base(dst)
        if self.pending.pop(src) is None:
            self._show_the_stores(src)
        self.pending[dst] = base

    # -- a colleague, through the store ----------------------------------------

    def colleague_wrote(self, name: str, data: bytes) -> None:
        folder = name.rpartition("/")[0]
        if folder:
            self.folders.add(folder)
        self.files[name] = (data, self._version())
        if name not in self.pending:  # a change here still shows here
            self._local(folder).mkdir(exist_ok=True)
            self._local(name).write_bytes(data)

    def colleague_deleted(self, name: str) -> None:
        del self.files[name]
        if name not in self.pending:
            self._local(name).unlink()

    def colleague_made(self, folder: str) -> None:
        self.folders.add(folder)
        self._local(folder).mkdir(exist_ok=True)

    def store_tree(self) -> dict[str, bytes | None]:
        tree: dict[str, bytes | None] = {folder: None for folder in self.folders}
        tree.update({path: data for path, (data, _) in self.files.items()})
        return tree


class Behind(Protocol):
    """The store under the subject, changed as another client would."""

    def put(self, path: str, data: bytes) -> None: ...
    def remove(self, path: str) -> None: ...
    def mkdirs(self, path: str) -> None: ...
    def tree(self) -> dict[str, bytes | None]: ...


class MountModel(RuleBasedStateMachine):
    """Subclasses set ``subject`` and ``reference`` (``Folder``) in ``__init__``;
    ``behind`` (the store, for a colleague's changes) and ``sync`` where the
    run can reach them; ``can_rename`` is the store's."""

    can_rename = True

    def __init__(self) -> None:
        super().__init__()
        self.subject: Subject
        self.reference: Folder
        self.behind: Behind | None = None
        self.model: StoreModel

    def both(self, op: str, *args) -> Outcome:
        expected = outcome(getattr(self.reference, op), *args)
        got = outcome(getattr(self.subject, op), *args)
        assert got == expected, f"{op}{args}: subject {got}, local {expected}"
        return got

    @rule(name=st.sampled_from(FILES), payload=payloads)
    def create(self, name, payload):
        if self.both("create", name, payload)[0] == "ok":
            self.model.changed(name)

    @rule(name=st.sampled_from(FILES), offset=offsets, payload=payloads)
    def write_at(self, name, offset, payload):
        if self.both("write_at", name, offset, payload)[0] == "ok" and payload:
            self.model.changed(name)

    @rule(name=st.sampled_from(FILES), payload=payloads)
    def append(self, name, payload):
        existed = name in self.reference.tree()
        if self.both("append", name, payload)[0] == "ok" and (payload or not existed):
            self.model.changed(name)

    @rule(name=st.sampled_from(FILES), size=offsets)
    def truncate(self, name, size):
        if self.both("truncate", name, size)[0] == "ok":
            self.model.changed(name)

    @rule(name=st.sampled_from(FILES))
    def read(self, name):
        self.both("read", name)

    @rule(name=st.sampled_from(FILES))
    def fsync(self, name):
        if self.both("fsync", name)[0] == "ok" and name in self.model.pending:
            self.model.uploaded(name)

    @rule(name=st.sampled_from(FILES))
    def unlink(self, name):
        if self.both("unlink", name)[0] == "ok":
            self.model.unlinked(name)

    @rule(name=st.sampled_from(DIRS))
    def mkdir(self, name):
        if self.both("mkdir", name)[0] == "ok":
            self.model.folders.add(name)

    @rule(name=st.sampled_from(DIRS))
    def rmdir(self, name):
        if self.both("rmdir", name)[0] == "ok":
            self.model.folders.discard(name)

    @precondition(lambda self: self.can_rename)
    @rule(src=st.sampled_from(FILES), dst=st.sampled_from(FILES))
    def rename(self, src, dst):
        if self.both("rename", src, dst)[0] == "ok":
            self.model.renamed(src, dst)

    # -- a colleague, on another machine -------------------------------------

    @precondition(lambda self: self.behind is not None)
    @rule(name=st.sampled_from(FILES), data=payloads)
    def colleague_writes(self, name, data):
        """A colleague saves a file (new, or over what is there)."""
        assert self.behind is not None
        self.behind.put(name, data)
        self.model.colleague_wrote(name, data)

    @precondition(lambda self: self.behind is not None)
    @rule(name=st.sampled_from(FILES))
    def colleague_deletes(self, name):
        if name not in self.model.files:
            return
        assert self.behind is not None
        self.behind.remove(name)
        self.model.colleague_deleted(name)

    @precondition(lambda self: self.behind is not None)
    @rule(name=st.sampled_from(DIRS))
    def colleague_makes_a_folder(self, name):
        if name in self.model.folders:
            return
        assert self.behind is not None
        self.behind.mkdirs(name)
        self.model.colleague_made(name)

    @precondition(lambda self: self.behind is not None)
    @rule()
    def sync(self):
        """``vagonfs sync``: every pending change uploaded; the store then holds
        what the mount shows."""
        self.sync_subject()
        for name in sorted(self.model.pending):
            self.model.uploaded(name)
        assert self.behind is not None
        assert snapshot(self.behind.tree()) == snapshot(self.model.store_tree())
        assert snapshot(self.behind.tree()) == snapshot(self.reference.tree())

    def sync_subject(self) -> None:
        raise NotImplementedError  # only runs that have ``behind`` sync

    @invariant()
    def same_tree(self):
        got, expected = snapshot(self.subject.tree()), snapshot(self.reference.tree())
        assert got == expected, f"subject {got}, local {expected}"
