"""Vagon Files as rows: scopes, folders, completed files, subtrees.

Shared by the HTTP handlers, the demo data set and admin ``populate``, so
all three make items the same way. A scope is ``shared``, ``m<machine id>``
or ``recordings``; ``parent_id`` 0 is a scope's root. Whatever inserts or
deletes an item calls :func:`changed` on its folder, which is what keeps
``pages``'s page keys honest.
"""

from __future__ import annotations

import mimetypes
import sqlite3
from collections.abc import Iterable, Sequence

from vagonfs.emulator.storage import Storage, iso, new_uid, new_uids
from vagonfs.emulator.vagon.pages import folder_key

SHARED = "shared"
RECORDINGS = "recordings"


def machine_scope(machine_id: int) -> str:
    return f"m{machine_id}"


def guess_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def changed(storage: Storage, scope: str, parent_id: int) -> None:
    """An item was added to or removed from this folder."""
    storage.touch(folder_key(scope, parent_id))


def get(storage: Storage, file_id: int):
    return storage.one("SELECT * FROM vfiles WHERE id = ?", (file_id,))


def child(storage: Storage, scope: str, parent_id: int, name: str):
    return storage.one("SELECT * FROM vfiles WHERE scope = ? AND parent_id = ? AND name = ?",
                       (scope, parent_id, name))


def add_dir(storage: Storage, scope: str, parent_id: int, name: str,
            machine_id: int | None = None, is_root: bool = False,
            task_id: int | None = None) -> int:
    now = iso()
    changed(storage, scope, parent_id)
    return storage.run(
        "INSERT INTO vfiles (uid, scope, parent_id, name, object_type, size, status, "
        "machine_id, task_id, is_root, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, 'directory', 0, 'completed', ?, ?, ?, ?, ?)",
        (new_uid(), scope, parent_id, name, machine_id, task_id, int(is_root), now, now))


def add_file(storage: Storage, scope: str, parent_id: int, name: str,
             chunks: Iterable[bytes], content_type: str | None = None,
             machine_id: int | None = None) -> int:
    """A completed file holding ``chunks``."""
    blob, size = storage.write_blob(chunks)
    now = iso()
    changed(storage, scope, parent_id)
    return storage.run(
        "INSERT INTO vfiles (uid, scope, parent_id, name, object_type, size, content_type, "
        "status, blob, machine_id, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, 'file', ?, ?, 'completed', ?, ?, ?, ?)",
        (new_uid(), scope, parent_id, name, size, content_type or guess_type(name), blob,
         machine_id, now, now))


def add_many(storage: Storage, scope: str, parent_ids: Sequence[int], names: Sequence[str],
             *, is_dir: bool, content_type: str | None = None,
             machine_id: int | None = None, blobs: Iterable[tuple[str, int]] = ()
             ) -> list[int]:
    """Every name in ``names`` under each folder of ``parent_ids``, in one statement:
    a million items in seconds. ``blobs`` gives (blob, size) of each file in that
    order. One transaction (joining the caller's); the new ids in order."""
    count = len(parent_ids) * len(names)
    uids, blobs, now = iter(new_uids(count)), iter(blobs), iso()
    kind = "directory" if is_dir else "file"

    def rows():
        for parent_id in parent_ids:
            for name in names:
                blob, size = (None, 0) if is_dir else next(blobs)
                yield (next(uids), scope, parent_id, name, kind, size,
                       None if is_dir else content_type, blob, machine_id, now, now)

    with storage.tx() as db:
        first = db.execute("SELECT COALESCE(MAX(id), 0) AS n FROM vfiles").fetchone()["n"]
        db.executemany(
            "INSERT INTO vfiles (uid, scope, parent_id, name, object_type, size, content_type, "
            "status, blob, machine_id, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'completed', ?, ?, ?, ?)", rows())
        for parent_id in parent_ids:
            changed(storage, scope, parent_id)
        # AUTOINCREMENT ids only grow, and the transaction holds the storage lock
        return [row[0] for row in db.execute("SELECT id FROM vfiles WHERE id > ? ORDER BY id",
                                             (first,))]


def subtree(storage: Storage, file_id: int) -> list:
    """The item and everything under it, parents before children."""
    root = get(storage, file_id)
    if root is None:
        return []
    found, pending = [root], [root]
    while pending:
        folder = pending.pop()
        if folder["object_type"] != "directory":
            continue
        kids = storage.all("SELECT * FROM vfiles WHERE scope = ? AND parent_id = ? "
                           "ORDER BY name", (folder["scope"], folder["id"]))
        found.extend(kids)
        pending.extend(kids)
    return found


def in_use(storage: Storage, scope: str | None = None) -> int:
    sql = "SELECT COALESCE(SUM(size), 0) FROM vfiles WHERE object_type = 'file' " \
          "AND status = 'completed'"
    return storage.number(sql + " AND scope = ?", (scope,)) if scope else storage.number(sql)


def relative_paths(storage: Storage, file_id: int) -> list[tuple[str, sqlite3.Row]]:
    """(path inside an archive, row) of every completed file at or under ``file_id``."""
    rows = subtree(storage, file_id)
    if not rows:
        return []
    names = {rows[0]["id"]: rows[0]["name"]}
    out = []
    for row in rows[1:]:
        names[row["id"]] = f"{names[row['parent_id']]}/{row['name']}"
    for row in rows:
        if row["object_type"] == "file" and row["status"] == "completed":
            out.append((names[row["id"]], row))
    return out
