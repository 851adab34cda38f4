"""What operations cost in API calls, counted by the emulator: deterministic,
unlike timings, and the figure that decides how a mount feels on a real link."""

from __future__ import annotations

import math

import pytest

from support import populate

from .conftest import sh, vagon_folder

LIST_ROUTES = ("vagon.files", "tenant.list")


def calls_since(mount, before: dict) -> dict:
    after = mount.calls()
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_vagon_ls_l_of_1000_entries_costs_its_list_pages_then_nothing(mount_factory,
                                                                      emulator_factory):
    emulator = emulator_factory("--per-page-cap", "100")
    vagon_folder(emulator, "big", count=1000, prefix="f", size=10)
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    before = mount.calls()
    sh(f"ls -l {mount.path}")  # lists big000000 ahead; the next ls waits for that
    out = sh(f"ls -l {mount.path}/big000000")
    assert out.count("\n") == 1001  # "total" plus one line per file
    assert calls_since(mount, before) == {"vagon.files": 1 + math.ceil(1000 / 100)}
    before = mount.calls()
    sh(f"ls -l {mount.path}/big000000")
    assert calls_since(mount, before) == {}


def test_tenant_ls_l_costs_one_listing_then_nothing(mount_factory, emulator_factory):
    emulator = emulator_factory()
    populate(emulator, "tenant", path="big", count=1000, prefix="f", size=10)
    mount = mount_factory("tenant", emulator=emulator)
    before = mount.calls()
    sh(f"ls -l {mount.path}")  # lists big ahead; the next ls waits for that
    assert sh(f"ls -l {mount.path}/big").count("\n") == 1001
    assert calls_since(mount, before) == {"tenant.list": 1 + 1}
    before = mount.calls()
    sh(f"ls -l {mount.path}/big")
    assert calls_since(mount, before) == {}


def test_rsync_of_100_new_files_costs_exactly_100_uploads(mount_factory, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(100):
        (src / f"f{i:03d}.txt").write_text(f"file {i}\n")
    # Vagon: a create and a complete per file, plus the create of dst/ itself
    for store, subpath, expected in (("vagon", "shared", {"vagon.create": 101,
                                                           "vagon.complete": 100}),
                                     ("tenant", "", {"tenant.upload": 100})):
        # the default write-back delay: rsync renames each temp file well within it
        mount = mount_factory(store, subpath=subpath, options=("--write-back-delay", "2s"))
        before = mount.calls()
        sh(f"rsync -a {src}/ {mount.path}/dst/")
        mount.wait_uploaded()
        spent = calls_since(mount, before)
        assert {route: spent.get(route) for route in expected} == expected, (store, spent)
        # dst/ is new, so known empty: rsync's many lookups in it cost no listing.
        # The tenant API cannot look up one name nor say a new file's time but in
        # a listing: the conflict checks before the uploads share the listings
        # under way, and the listings after them are batched, so at most one
        # listing per upload (23 of them measured here)
        listings = spent.get("vagon.files", 0) + spent.get("tenant.list", 0)
        assert listings <= (2 if store == "vagon" else 102), spent


def test_vagon_lookup_in_a_folder_not_listed_is_kept_like_a_listing(mount_factory,
                                                                    emulator_factory):
    emulator = emulator_factory()
    vagon_folder(emulator, "big")
    # the kernel trusts an entry 10 ms, then asks again at every stat
    mount = mount_factory("vagon", emulator=emulator, subpath="shared",
                          options=("--attr-timeout", "0.01s"))
    before = mount.calls()
    sh(f"stat {mount.path}/big000000")
    assert calls_since(mount, before) == {"vagon.files": 1}  # one lookup by name
    before = mount.calls()
    for _ in range(5):
        sh(f"sleep 0.05; stat {mount.path}/big000000")
    assert calls_since(mount, before) == {}


@pytest.mark.parametrize("store,subpath,check", [("vagon", "shared", "vagon.files"),
                                                 ("tenant", "", "tenant.list")])
def test_the_conflict_check_costs_one_request_per_upload_that_replaces_a_file(
        mount_factory, store, subpath, check):
    """Vagon: a lookup by name before the create of an upload that replaces a
    file; a file new here costs none (its create, with ``overwrite`` off, is
    the check). Tenant: one listing of the folder before every upload (the API
    can neither look up one name nor refuse to replace), beside the listing
    after it that says the new version."""
    mount = mount_factory(store, subpath=subpath)
    sh(f"ls {mount.path}")
    upload = ({"vagon.create": 1, "s3.part_put": 1, "vagon.complete": 1} if store == "vagon"
              else {"tenant.upload": 1, "tenant.list": 1})
    before = mount.calls()
    sh(f"echo new > {mount.path}/f.txt")
    mount.wait_uploaded()
    assert calls_since(mount, before) == \
        (upload if store == "vagon" else {**upload, check: upload[check] + 1})
    for content in ("replaced", "again"):
        before = mount.calls()
        sh(f"echo {content} > {mount.path}/f.txt")
        mount.wait_uploaded()
        assert calls_since(mount, before) == {**upload, check: upload.get(check, 0) + 1}
    assert mount.status()["conflicts"] == []
