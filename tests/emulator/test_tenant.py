"""The tenant store over real HTTP: auth, paths, uploads (50 MiB limit), moves, ranges."""

from __future__ import annotations

import httpx
import pytest

from .helpers import MiB


@pytest.fixture
def tenant(emulator):
    with httpx.Client(base_url=emulator.url, timeout=60,
                      headers={"Authorization": f"Bearer {emulator.api_key}"}) as client:
        yield client


def _upload(tenant, folder: str, *files: tuple[str, bytes]) -> httpx.Response:
    return tenant.post("/api/v1/files/upload", data={"path": folder},
                       files=[("files", (name, data)) for name, data in files])


def _names(tenant, path: str = "") -> list[str]:
    response = tenant.get("/api/v1/files", params={"path": path})
    assert response.status_code == 200, response.text
    return [f["name"] for f in response.json()["files"]]


def test_bearer_is_required(emulator):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(f"{emulator.url}/api/v1/files", headers=headers)
        assert (response.status_code, response.json()) == (401, {"error": "unauthorized"})


def test_upload_list_download_range_move_delete(tenant):
    uploaded = _upload(tenant, "t1/deep", ("a.txt", b"hello world"), ("b.bin", b"\0" * 10))
    assert uploaded.json() == {"uploaded": [{"path": "t1/deep/a.txt", "size": 11},
                                            {"path": "t1/deep/b.bin", "size": 10}]}
    listing = tenant.get("/api/v1/files", params={"path": "t1"}).json()["files"]
    assert listing == [{"name": "deep", "path": "t1/deep", "is_dir": True}]
    files = tenant.get("/api/v1/files", params={"path": "t1/deep"}).json()["files"]
    assert files[0]["size"] == 11 and files[0]["updated_at"].endswith("Z")
    whole = tenant.get("/api/v1/files/download", params={"path": "t1/deep/a.txt"})
    assert whole.content == b"hello world"
    assert whole.headers["content-type"] == "application/octet-stream"
    part = tenant.get("/api/v1/files/download", params={"path": "t1/deep/a.txt"},
                      headers={"Range": "bytes=6-"})
    assert (part.status_code, part.content) == (206, b"world")
    _upload(tenant, "t1/deep", ("a.txt", b"replaced"))
    assert tenant.get("/api/v1/files/download",
                      params={"path": "t1/deep/a.txt"}).content == b"replaced"

    assert tenant.post("/api/v1/files/mkdir", json={"path": "t1/other/x"}).json() == \
        {"success": True}
    assert tenant.post("/api/v1/files/mkdir", json={"path": "t1/other"}).status_code == 409
    moved = tenant.post("/api/v1/files/move", json={"src_path": "t1/deep",
                                                    "dst_path": "t1/other/moved"})
    assert moved.json() == {"success": True}
    assert _names(tenant, "t1/other/moved") == ["a.txt", "b.bin"]
    assert tenant.get("/api/v1/files/download",
                      params={"path": "t1/other/moved/a.txt"}).content == b"replaced"
    assert tenant.post("/api/v1/files/move", json={
        "src_path": "t1/other/moved/a.txt", "dst_path": "t1/other/moved/b.bin"}).status_code \
        == 200  # replaces a file
    assert _names(tenant, "t1/other/moved") == ["b.bin"]
    assert tenant.post("/api/v1/files/move", json={
        "src_path": "t1/nope", "dst_path": "t1/x"}).status_code == 404
    assert tenant.post("/api/v1/files/move", json={
        "src_path": "t1/other/moved/b.bin", "dst_path": "t1/other/x"}).status_code == 409

    not_empty = tenant.delete("/api/v1/files", params={"path": "t1/other/moved"})
    assert (not_empty.status_code, not_empty.json()) == (409, {"error": "directory not empty"})
    assert tenant.delete("/api/v1/files",
                         params={"path": "t1/other/moved/b.bin"}).status_code == 204
    assert tenant.delete("/api/v1/files", params={"path": "t1/other/moved"}).status_code == 204
    assert tenant.delete("/api/v1/files", params={"path": "t1/other/moved"}).status_code == 404
    assert tenant.get("/api/v1/files", params={"path": "t1/nope"}).status_code == 404


@pytest.mark.parametrize("path", ["/abs", "a//b", "a/./b", "a/../b", "a\0b", "a\nb"])
def test_bad_paths_are_400(tenant, path):
    assert tenant.get("/api/v1/files", params={"path": path}).status_code == 400
    assert tenant.post("/api/v1/files/mkdir", json={"path": path}).status_code == 400


def test_upload_errors(tenant):
    assert tenant.get("/api/v1/files/download").status_code == 400
    assert tenant.post("/api/v1/files/upload", data={"path": "x"},
                       files={"other": ("f", b"1")}).status_code == 400
    tenant.post("/api/v1/files/mkdir", json={"path": "up/dir"})
    assert _upload(tenant, "up", ("dir", b"1")).status_code == 409


def test_fifty_mib_is_accepted_one_byte_more_is_413(tenant):
    exact = _upload(tenant, "limits", ("exact.bin", b"\1" * (50 * MiB)))
    assert exact.status_code == 200, exact.text
    over = _upload(tenant, "limits", ("over.bin", b"\1" * (50 * MiB + 1)))
    assert over.status_code == 413 and "50 MiB" in over.json()["error"]
    assert _names(tenant, "limits") == ["exact.bin"]


def test_quota_and_no_range_option(emulator_factory):
    emulator = emulator_factory("--tenant-quota", "100", "--no-tenant-range")
    with httpx.Client(base_url=emulator.url,
                      headers={"Authorization": f"Bearer {emulator.api_key}"}) as tenant:
        assert _upload(tenant, "", ("a", b"x" * 60)).status_code == 200
        full = _upload(tenant, "", ("b", b"x" * 60))
        assert (full.status_code, full.json()) == (507, {"error": "quota exceeded"})
        assert _upload(tenant, "", ("a", b"y" * 90)).status_code == 200  # a replacement
        whole = tenant.get("/api/v1/files/download", params={"path": "a"},
                           headers={"Range": "bytes=0-9"})
        assert (whole.status_code, len(whole.content)) == (200, 90)
