"""Attributes the stores cannot hold (mtime set by ``utimens``, permission
bits set by ``chmod``), kept in a small SQLite file in the cache dir.

A record is filed under the store's cache key of the file (``Store.cache_key``:
its store, remote and fields, never a class's ``repr``) and holds the version
it was set on, so it applies exactly to that content: when the file changes
remotely, the store's own mtime shows again. This is what lets a second
``rsync -a`` find sizes and times equal and transfer nothing.

A file has one record at most: setting one on a new version replaces the
record of the version before, an unlink forgets it and a rename moves it with
the file (on a path-based store, with a folder too). So the file, loaded whole
at start, holds what the mount's files carry, not every version ever uploaded.

Records of earlier vagonfs versions, keyed by ``repr()`` of the store key, are
carried over (rewritten under the cache key) the first time their file is
asked for, so an upgrade does not make ``rsync -a`` send every file again; a
mount that has none pays nothing for this.

A record the database cannot take (the cache disk is full) still holds in
memory for the life of the mount, with one log line: a ``touch`` must not fail
for want of a few bytes of cache.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable, Hashable
from pathlib import Path

log = logging.getLogger("vagonfs.attrs")

Record = tuple[float | None, int | None]  # (mtime, mode); None: not set here
_CACHE_KEY = re.compile(r"[a-z]+/\d+@")  # what every Store.cache_key begins with


class LocalAttrs:
    def __init__(self, path: Path, cache_key: Callable[[Hashable], str]):
        self._cache_key = cache_key
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # (key, version) is the key of the table vagonfs 0.x made, which kept a
        # row per version; the rows of the versions before a key's newest are
        # dropped here, once
        self._db.execute("CREATE TABLE IF NOT EXISTS attrs (key TEXT, version TEXT, "
                         "mtime REAL, mode INTEGER, PRIMARY KEY (key, version))")
        self._cache: dict[str, tuple[str, Record]] = {}  # name: (version, record)
        self._earlier: dict[tuple[str, str], Record] = {}  # keyed by repr(key) (module doc)
        self._failing = False  # told once in the log until a write succeeds again
        superseded = []
        for key, version, mtime, mode in self._db.execute(
                "SELECT key, version, mtime, mode FROM attrs ORDER BY rowid"):
            if not _CACHE_KEY.match(key):
                self._earlier[key, version] = (mtime, mode)
                continue
            if key in self._cache:  # INSERT OR REPLACE gave the newest the last rowid
                superseded.append((key, self._cache[key][0]))
            self._cache[key] = (version, (mtime, mode))
        for key, version in superseded:
            self._write("DELETE FROM attrs WHERE key = ? AND version = ?", (key, version))

    def get(self, key: Hashable, version: str) -> Record:
        """(mtime, mode) set locally on this version, or (None, None)."""
        if not self._cache and not self._earlier:  # nothing was ever set: no key to make
            return None, None
        name = self._cache_key(key)
        held = self._cache.get(name)
        if held is not None and held[0] == version:
            return held[1]
        if self._earlier:
            record = self._carry_over(key, name, version)
            if record is not None:
                return record
        return None, None

    def set(self, key: Hashable, version: str, *, mtime: float | None = None,
            mode: int | None = None) -> None:
        old_mtime, old_mode = self.get(key, version)
        record = (mtime if mtime is not None else old_mtime,
                  mode if mode is not None else old_mode)
        self._save(self._cache_key(key), version, record)

    def forget(self, key: Hashable) -> None:
        """The file is gone, or its content was replaced with nothing set on it."""
        name = self._cache_key(key)
        if self._cache.pop(name, None) is not None:
            self._write("DELETE FROM attrs WHERE key = ?", (name,))

    def moved(self, old: Hashable, old_version: str, new: Hashable, version: str) -> None:
        """A rename on the store: the file at ``old`` is now ``new`` under
        ``version``, its content unchanged, so what was set on it still holds."""
        record = self.get(old, old_version)
        old_name, new_name = self._cache_key(old), self._cache_key(new)
        if old_name != new_name:
            self.forget(new)  # what the rename replaced
            self.forget(old)
        if record != (None, None):
            self._save(new_name, version, record)

    def folder_moved(self, old: Hashable, new: Hashable) -> None:
        """A folder renamed on a store whose keys are paths (the one kind that
        renames folders): what is below moves with it, each under its version."""
        old_prefix, new_prefix = self._cache_key(old) + "/", self._cache_key(new) + "/"
        for name in [name for name in self._cache if name.startswith(old_prefix)]:
            version, record = self._cache.pop(name)
            self._write("DELETE FROM attrs WHERE key = ?", (name,))
            self._save(new_prefix + name[len(old_prefix):], version, record)

    def _carry_over(self, key: Hashable, name: str, version: str) -> Record | None:
        earlier = repr(key)
        record = self._earlier.pop((earlier, version), None)
        if record is not None:
            self._save(name, version, record)
            self._write("DELETE FROM attrs WHERE key = ? AND version = ?", (earlier, version))
        return record

    def _save(self, name: str, version: str, record: Record) -> None:
        held = self._cache.get(name)
        self._cache[name] = (version, record)
        if held is not None and held[0] != version:
            self._write("DELETE FROM attrs WHERE key = ?", (name,))
        self._write("INSERT OR REPLACE INTO attrs VALUES (?, ?, ?, ?)", (name, version, *record))

    def _write(self, statement: str, values: tuple) -> None:
        try:
            self._db.execute(statement, values)
        except sqlite3.Error as exc:
            if not self._failing:
                log.warning("local times and modes cannot be saved (%s); kept in memory "
                            "until unmount", exc)
            self._failing = True
        else:
            self._failing = False

    def close(self) -> None:
        self._db.close()
