"""Store.cache_key: the lasting name of a file in the block cache and the
local attribute store. The strings pinned here are an on-disk format: a test
that must change means the store's format number must go up with it.

LocalAttrs files a record per file under it: what the mount's files carry,
not every version ever uploaded (the file is loaded whole at start)."""

from __future__ import annotations

import sqlite3
from typing import NamedTuple, cast

from vagonfs.cache.blocks import object_id
from vagonfs.core.attrs import LocalAttrs
from vagonfs.remote.http import HttpClient
from vagonfs.remote.shannon import ShannonStore
from vagonfs.remote.tenant import TenantStore
from vagonfs.remote.vagon.api import VagonApi
from vagonfs.remote.vagon.store import VagonKey, VagonStore

URL, OTHER_URL = "http://127.0.0.1:8080", "http://127.0.0.1:8081"
# the stores here only compute cache keys, which never send a request
NO_HTTP = cast(HttpClient, None)


def stores(url: str = URL):
    return (VagonStore(VagonApi(NO_HTTP, url, "key", "secret")), TenantStore(NO_HTTP, url, "key"),
            ShannonStore(NO_HTTP, url, "key"))


KEY = stores()[1].cache_key  # the tenant store's


class RenamedKey(NamedTuple):
    """VagonKey as it would be after a rename of its class."""

    scope: str
    machine_id: int | None = None
    id: int | str | None = None


def test_keys_are_explicit_versioned_strings():
    vagon, tenant, shannon = stores()
    assert vagon.cache_key(VagonKey("org", None, 6731)) == "vagon/1@d30a576c:org::6731"
    assert vagon.cache_key(VagonKey("files", 12, 40)) == "vagon/1@d30a576c:files:12:40"
    assert vagon.cache_key(VagonKey("root")) == "vagon/1@d30a576c:root::"
    assert tenant.cache_key("docs/a:b.txt") == "tenant/1@d30a576c:docs/a:b.txt"
    assert shannon.cache_key(("sess-1", "out/r.csv")) == "shannon/1@d30a576c:sess-1:out/r.csv"


def test_a_key_does_not_depend_on_its_class_name_or_repr():
    vagon = stores()[0]
    key, renamed = VagonKey("files", 12, 40), RenamedKey("files", 12, 40)
    assert repr(key) != repr(renamed)
    assert vagon.cache_key(renamed) == vagon.cache_key(key)
    assert object_id(vagon.cache_key(renamed), "uid-1") == object_id(vagon.cache_key(key),
                                                                     "uid-1")


def test_stores_and_remotes_never_share_a_key():
    here, there = stores(URL), stores(OTHER_URL)
    keys = [vagon.cache_key(VagonKey("org", None, 1)) for vagon in (here[0], there[0])]
    for tenant, shannon in ((here[1], here[2]), (there[1], there[2])):
        keys += [tenant.cache_key("s/1"), tenant.cache_key("s:1"), shannon.cache_key(("s", "1")),
                 shannon.cache_key(("s:1", "")), shannon.cache_key(("s", ":1"))]
    assert len(set(keys)) == len(keys), keys
    assert len({object_id(key, "v") for key in keys}) == len(keys)
    # one server written two ways is one remote
    assert TenantStore(NO_HTTP, URL + "/", "other key").cache_key("a") == here[1].cache_key("a")


def test_local_times_survive_a_rename_of_the_key_class_and_a_remount(tmp_path):
    vagon = stores()[0]
    attrs = LocalAttrs(tmp_path / "attrs.sqlite3", vagon.cache_key)
    attrs.set(VagonKey("org", None, 5), "uid-1", mtime=1000.0)
    attrs.close()
    again = LocalAttrs(tmp_path / "attrs.sqlite3", vagon.cache_key)
    assert again.get(RenamedKey("org", None, 5), "uid-1") == (1000.0, None)
    assert again.get(RenamedKey("org", None, 5), "uid-2") == (None, None)  # a new content


def test_local_times_of_one_remote_are_not_another_ones(tmp_path):
    attrs = LocalAttrs(tmp_path / "attrs.sqlite3", stores(URL)[1].cache_key)
    attrs.set("a.txt", "4@t", mtime=1000.0, mode=0o600)
    attrs.close()
    other = LocalAttrs(tmp_path / "attrs.sqlite3", stores(OTHER_URL)[1].cache_key)
    assert other.get("a.txt", "4@t") == (None, None)


def attrs_file_of_earlier_versions(path, records: list[tuple]) -> None:
    """The table as vagonfs 0.x made it: a row per (key, version)."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE attrs (key TEXT, version TEXT, mtime REAL, mode INTEGER, "
                   "PRIMARY KEY (key, version))")
        db.executemany("INSERT OR REPLACE INTO attrs VALUES (?, ?, ?, ?)", records)
    db.close()


def rows(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        found = sorted(db.execute("SELECT key, version, mtime, mode FROM attrs"))
    db.close()
    return found


def test_records_keyed_by_repr_are_carried_over_once(tmp_path):
    """A cache dir of the versions that keyed records by repr(key)."""
    path = tmp_path / "attrs.sqlite3"
    attrs_file_of_earlier_versions(path, [
        (repr(VagonKey("org", None, 5)), "uid-1", 1000.0, None),
        (repr("docs/a.txt"), "4@t", 2000.0, 0o600)])
    vagon, tenant, _ = stores()
    attrs = LocalAttrs(path, vagon.cache_key)
    assert attrs.get(VagonKey("org", None, 5), "uid-1") == (1000.0, None)
    attrs.close()
    assert rows(path) == [("'docs/a.txt'", "4@t", 2000.0, 0o600),
                          ("vagon/1@d30a576c:org::5", "uid-1", 1000.0, None)]
    assert LocalAttrs(path, tenant.cache_key).get("docs/a.txt", "4@t") == (2000.0, 0o600)


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
    attrs_file_of_earlier_versions(path, [
        (KEY("a.txt"), "2@t", 2.0, None), (KEY("b.txt"), "1@t", 10.0, None),
        (KEY("a.txt"), "1@t", 1.0, None), (KEY("a.txt"), "3@t", 3.0, 0o600)])
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
