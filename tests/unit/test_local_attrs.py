"""LocalAttrs keeps one record per file: what the mount's files carry, not
every version ever uploaded (the file is loaded whole at start)."""

from __future__ import annotations

import sqlite3

from vagonfs.core.attrs import LocalAttrs
from vagonfs.remote.tenant import TenantStore

URL = "http://127.0.0.1:8080"
KEY = TenantStore(None, URL, "key").cache_key


def rows(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        found = sorted(db.execute("SELECT key, version, mtime, mode FROM attrs"))
    db.close()
    return found


def test_a_record_set_on_a_new_version_replaces_the_one_before(tmp_path):
    path = tmp_path / "attrs.sqlite3"
    attrs = LocalAttrs(path, KEY)
    for version in range(5):
        attrs.set("a.txt", f"{version}@t", mtime=1000.0 + version)
    attrs.set("a.txt", "4@t", mode=0o700)
    assert attrs.get("a.txt", "4@t") == (1004.0, 0o700)
    assert attrs.get("a.txt", "3@t") == (None, None)
    attrs.close()
    assert rows(path) == [(KEY("a.txt"), "4@t", 1004.0, 0o700)]
    assert LocalAttrs(path, KEY).get("a.txt", "4@t") == (1004.0, 0o700)


def test_a_file_of_the_versions_that_kept_every_row_keeps_each_keys_newest(tmp_path):
    path = tmp_path / "attrs.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE attrs (key TEXT, version TEXT, mtime REAL, mode INTEGER, "
                   "PRIMARY KEY (key, version))")
        db.executemany("INSERT OR REPLACE INTO attrs VALUES (?, ?, ?, ?)", [
            (KEY("a.txt"), "2@t", 2.0, None), (KEY("b.txt"), "1@t", 10.0, None),
            (KEY("a.txt"), "1@t", 1.0, None), (KEY("a.txt"), "3@t", 3.0, 0o600)])
    db.close()
    attrs = LocalAttrs(path, KEY)
    assert attrs.get("a.txt", "3@t") == (3.0, 0o600)
    assert attrs.get("a.txt", "1@t") == (None, None)
    assert attrs.get("b.txt", "1@t") == (10.0, None)
    attrs.close()
    assert rows(path) == [(KEY("a.txt"), "3@t", 3.0, 0o600), (KEY("b.txt"), "1@t", 10.0, None)]


def test_forget_moved_and_folder_moved_carry_or_drop_the_record(tmp_path):
    path = tmp_path / "attrs.sqlite3"
    attrs = LocalAttrs(path, KEY)
    attrs.set("d/a.txt", "1@t", mtime=1.0)
    attrs.set("d/e/b.txt", "2@t", mode=0o755)
    attrs.set("dd/c.txt", "3@t", mtime=3.0)  # a sibling whose name begins the same
    attrs.set("target.txt", "4@t", mtime=4.0)
    attrs.set("gone.txt", "5@t", mtime=5.0)

    attrs.forget("gone.txt")
    attrs.moved("d/a.txt", "1@t", "target.txt", "1@u")  # over a file that had its own
    attrs.folder_moved("d", "x/y")
    assert attrs.get("dd/c.txt", "3@t") == (3.0, None)
    attrs.moved("dd/c.txt", "an older version", "c.txt", "3@t")  # moot: not carried

    assert attrs.get("target.txt", "1@u") == (1.0, None)
    assert attrs.get("x/y/e/b.txt", "2@t") == (None, 0o755)
    assert attrs.get("d/e/b.txt", "2@t") == (None, None)
    assert attrs.get("c.txt", "3@t") == (None, None)
    attrs.close()
    assert rows(path) == [(KEY("target.txt"), "1@u", 1.0, None),
                          (KEY("x/y/e/b.txt"), "2@t", None, 0o755)]
