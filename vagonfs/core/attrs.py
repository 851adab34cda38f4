"""Attributes the stores cannot hold (mtime set by ``utimens``, permission
bits set by ``chmod``), kept in a small SQLite file in the cache dir.

Records are keyed by the store key *and* version of the file, so they apply
exactly to the content they were set on: when the file changes remotely, the
store's own mtime shows again. This is what lets a second ``rsync -a`` find
sizes and times equal and transfer nothing.

A record the database cannot take (the cache disk is full) still holds in
memory for the life of the mount, with one log line: a ``touch`` must not fail
for want of a few bytes of cache.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Hashable
from pathlib import Path

log = logging.getLogger("vagonfs.attrs")


class LocalAttrs:
    def __init__(self, path: Path):
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS attrs (key TEXT, version TEXT, "
                         "mtime REAL, mode INTEGER, PRIMARY KEY (key, version))")
        self._cache: dict[tuple[str, str], tuple[float | None, int | None]] = {
            (k, v): (m, md) for k, v, m, md in self._db.execute("SELECT * FROM attrs")}
        self._failing = False  # told once in the log until a write succeeds again

    def get(self, key: Hashable, version: str) -> tuple[float | None, int | None]:
        """(mtime, mode) set locally on this version, or (None, None)."""
        return self._cache.get((repr(key), version), (None, None))

    def set(self, key: Hashable, version: str, *, mtime: float | None = None,
            mode: int | None = None) -> None:
        old_mtime, old_mode = self.get(key, version)
        record = (mtime if mtime is not None else old_mtime,
                  mode if mode is not None else old_mode)
        self._cache[(repr(key), version)] = record
        try:
            self._db.execute("INSERT OR REPLACE INTO attrs VALUES (?, ?, ?, ?)",
                             (repr(key), version, *record))
        except sqlite3.Error as exc:
            if not self._failing:
                log.warning("local times and modes cannot be saved (%s); kept in memory "
                            "until unmount", exc)
            self._failing = True
        else:
            self._failing = False

    def close(self) -> None:
        self._db.close()
