"""The bad-input switch: bad entries in listings, declared sizes, links on another host."""

from __future__ import annotations

import httpx
import pytest

from vagonfs.emulator.process import EmulatorError

from support import populate

from .helpers import Vagon


@pytest.fixture
def bad(emulator):
    """Set the switch; cleared after the test."""
    def switch(config: dict) -> dict:
        return emulator.admin("PUT", "/_admin/bad-input", json=config)
    yield switch
    emulator.admin("DELETE", "/_admin/bad-input")


def _folder(vagon: Vagon, name: str) -> int:
    return vagon.ok("POST", "/files", {"file_name": name, "object_type": "directory",
                                       "parent_id": 0})["id"]


def test_bad_names_go_on_the_last_page_of_the_chosen_folder(vagon, emulator, bad):
    folder = _folder(vagon, "bad-names")
    populate(emulator, parent_id=folder, count=60, prefix="g")
    assert bad({"vagon": [folder]})["vagon"] == [folder]
    first = vagon.listing(folder, per_page=50)
    assert [i["name"] for i in first["files"]] == [f"g{i:06d}" for i in range(50)]
    assert first["count"] == 60 and first["next_page"] == 2
    last = vagon.call("GET", "/files", params={"parent_id": folder, "page": 2, "per_page": 50})
    assert "sur\\ud800rogate.txt" in last.text  # a lone surrogate, as a bad server sends it
    names = [i["name"] for i in last.json()["files"]][10:]
    assert names == ["bad/slash.txt", ".", "..", "nul\x00name.txt", "ctl\x01\x1bname.txt",
                     "sur\ud800rogate.txt", "", None, "L" * 300, "M" * 1100,
                     "negative-size.bin", "huge-size.bin", "malformed.bin", "g000050"]
    fake = last.json()["files"][10]
    assert fake["id"] >= 2_000_000_000 and fake["status"] == "completed"
    assert vagon.call("GET", f"/files/{fake['id']}/download").status_code == 404
    assert "bad/slash.txt" not in str(vagon.listing(0)["files"])  # other folders stay clean
    emulator.admin("DELETE", "/_admin/bad-input")
    clean = vagon.call("GET", "/files", params={"parent_id": folder, "page": 2, "per_page": 50})
    assert len(clean.json()["files"]) == 10


def test_declared_size_and_link_host(vagon, emulator, bad):
    data = b"x" * 5000
    done = vagon.upload("declared.bin", data)
    bad({"size_delta": {"declared.bin": 1000}, "link_host": "localhost"})
    assert vagon.find("declared.bin")["size"] == 6000
    link = vagon.ok("GET", f"/files/{done['id']}/download")
    assert link["size"] == 6000
    port = emulator.url.rsplit(":", 1)[1]
    assert link["url"].startswith(f"http://localhost:{port}/_s3/objects/")
    got = httpx.get(link["url"])
    assert got.content == data and got.headers["content-length"] == "5000"  # the real bytes
    httpx.get(link["url"], headers={"Authorization": "Bearer leaked"})
    seen = emulator.admin("GET", "/_admin/bad-input")
    assert seen["credentials_seen"] == 1 and f"localhost:{port}" in seen["hosts_seen"]
    bad({"size_delta": {"declared.bin": -6000}, "unsized": True})
    assert vagon.find("declared.bin")["size"] == 0  # never below zero
    url = vagon.ok("GET", f"/files/{done['id']}/download")["url"]
    whole = httpx.get(url)
    assert whole.content == data and "content-length" not in whole.headers  # chunked
    part = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.headers["content-range"] == "bytes 10-19/*"


def test_tenant_listing_and_refused_configs(emulator, bad):
    tenant = httpx.Client(base_url=emulator.url, timeout=30,
                          headers={"Authorization": f"Bearer {emulator.api_key}"})
    populate(emulator, "tenant", path="tb", count=2, prefix="t", size=10)
    bad({"tenant": ["tb"], "kinds": ["dotdot", "duplicate"], "size_delta": {"t000001": 5}})
    files = tenant.get("/api/v1/files", params={"path": "tb"}).json()["files"]
    assert [(f["name"], f["path"], f["size"]) for f in files] == [
        ("t000000", "tb/t000000", 10), ("t000001", "tb/t000001", 15),
        ("..", "tb/..", 7), ("t000000", "tb/t000000", 8)]
    for config in ({"bogus": 1}, {"kinds": ["nope"]}, {"vagon": "x"}, [1]):
        with pytest.raises(EmulatorError, match="400"):
            emulator.admin("PUT", "/_admin/bad-input", json=config)


def test_bad_input_from_the_command_line(emulator_factory):
    emulator = emulator_factory("--bad-input", '{"tenant": [""], "kinds": ["empty"]}')
    files = httpx.get(f"{emulator.url}/api/v1/files",
                      headers={"Authorization": f"Bearer {emulator.api_key}"}).json()["files"]
    assert [f["name"] for f in files] == [""]
