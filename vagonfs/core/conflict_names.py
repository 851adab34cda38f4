"""The name a conflict copy gets: ``plan (conflict 2026-12-07 101500).txt``.

When an upload would write over a version of a file that changed elsewhere,
this mount's content goes beside it under this name (``vagonfs.core.conflicts``
decides when). The name says what happened and when, the way the sync clients
teams use do (Nextcloud's ``plan (conflicted copy 2026-12-07 101500).txt``),
and keeps the extension, so the copy still opens in the same program:

- the marker ``(conflict YYYY-MM-DD HHMMSS)`` goes before the last extension,
  the time in UTC (copies made on machines in different time zones sort in
  the order they were made), without ``:``, which Vagon and Windows refuse;
- no extension (``Makefile``), a dotfile (``.bashrc``: its dot starts the name,
  not an extension) and a name ending in a dot: the marker goes at the end;
- a name taken as well (two conflicts in one second, or a copy already there):
  ``(conflict 2026-12-07 101500 2)``, then ``3``, and so on;
- a name that would pass the store's limit (255 bytes of UTF-8) is cut in its
  stem, at a character boundary, never in the marker; an extension too long to
  leave room for the marker is cut with the stem, as part of it.
"""

from __future__ import annotations

import time


def conflict_name(name: str, when: float, attempt: int = 1, max_bytes: int = 255) -> str:
    """The ``attempt``-th name (from 1) for a conflict copy of ``name`` made at ``when``."""
    stamp = time.strftime("%Y-%m-%d %H%M%S", time.gmtime(when))
    marker = f" (conflict {stamp}{'' if attempt == 1 else f' {attempt}'})"
    dot = name.rfind(".")
    stem, extension = (name[:dot], name[dot:]) if 0 < dot < len(name) - 1 else (name, "")
    room = max_bytes - _size(marker)
    if _size(extension) >= room:  # no room for the stem: the extension is cut as stem
        stem, extension = name, ""
    return _cut(stem, room - _size(extension)) + marker + extension


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def _cut(text: str, limit: int) -> str:
    """The longest start of ``text`` that fits in ``limit`` bytes."""
    while _size(text) > limit:
        text = text[:-1]
    return text
