"""Folder names for Vagon's machines and tasks: unique, valid, the same on every mount.

Machines and tasks are not files: their names come from the server as free
text (a machine's name, a task's uid) and may clash, hold ``/`` or be
empty. The rule: ``/`` is replaced by ``∕`` (U+2215 DIVISION SLASH) and NUL
and other control characters by ``_``; an empty name, ``.`` or ``..``
becomes ``machine <id>``; names are cut to 240 bytes. When several end up
with one name, each of them gets `` (<id>)`` appended, repeated until all
names differ. The rule depends only on the set of (id, name) pairs, so every
mount shows the same names.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import TypeVar

Id = TypeVar("Id", bound=Hashable)


def local_names(named: Iterable[tuple[Id, str]]) -> dict[Id, str]:
    """Unique valid Linux names for (id, server name) pairs (module doc)."""
    names = {ident: _clean(ident, name) for ident, name in named}
    while True:
        counts = Counter(names.values())
        clashing = [ident for ident, name in names.items() if counts[name] > 1]
        if not clashing:
            return names
        for ident in clashing:
            names[ident] = f"{names[ident]} ({ident})"


def _clean(ident: object, name: str) -> str:
    name = "".join("∕" if c == "/" else "_" if unicodedata.category(c) == "Cc" else c
                   for c in name or "")
    name = name.encode("utf-8")[:240].decode("utf-8", "ignore")
    return name if name not in ("", ".", "..") else f"machine {ident}"
