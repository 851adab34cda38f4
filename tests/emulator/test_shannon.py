"""Shannon sessions in both wire forms (deployed, the default, and documented)."""

from __future__ import annotations

import base64

import httpx
import pytest


def _client(emulator) -> httpx.Client:
    return httpx.Client(base_url=emulator.url, headers={"X-API-Key": emulator.api_key})


def test_deployed_form(demo_emulator):
    with _client(demo_emulator) as shannon:
        sessions = shannon.get("/api/v1/sessions").json()
        assert sessions["total_count"] == 2
        sid = sessions["sessions"][0]["session_id"]
        assert shannon.get("/api/v1/sessions", params={"limit": 1, "offset": 1}).json()[
            "sessions"][0]["session_id"] != sid
        listing = shannon.get(f"/api/v1/sessions/{sid}/files").json()
        assert listing["success"] is True
        assert {f["name"]: f["is_dir"] for f in listing["files"]} == {
            "analysis.py": False, "notes.md": False, "output": True}
        inner = shannon.get(f"/api/v1/sessions/{sid}/files",
                            params={"path": "output", "recursive": "true"}).json()["files"]
        assert {f["path"] for f in inner} == {"output/chart.png", "output/results.csv"}
        text = shannon.get(f"/api/v1/sessions/{sid}/files/output/results.csv").json()
        assert text["content"].startswith("metric,value") and text["success"] is True
        png = shannon.get(f"/api/v1/sessions/{sid}/files/output/chart.png").json()
        assert base64.b64decode(png["content"]).startswith(b"\x89PNG")
        assert png["size_bytes"] == len(base64.b64decode(png["content"]))
        missing = shannon.get(f"/api/v1/sessions/{sid}/files/nope.txt")
        assert missing.status_code == 404 and missing.json()["success"] is False
        assert shannon.get("/api/v1/sessions/nope/files").status_code == 404
        bad = shannon.get(f"/api/v1/sessions/{sid}/files", params={"path": "../x"})
        assert bad.status_code == 400
        assert shannon.get(f"/api/v1/sessions/{sid}/files",
                           params={"path": "/etc"}).status_code == 400


def test_documented_form(emulator_factory):
    emulator = emulator_factory("--seed-demo", "--shannon-form", "documented")
    with _client(emulator) as shannon:
        sid = shannon.get("/api/v1/sessions").json()["sessions"][0]["session_id"]
        listing = shannon.get(f"/api/v1/sessions/{sid}/files",
                              params={"recursive": "true"}).json()
        assert listing["session_id"] == sid and listing["path"] == "/"
        assert "/output/chart.png" in {f["path"] for f in listing["files"]}
        assert all("modified_at" in f and "size" in f for f in listing["files"])
        raw = shannon.get(f"/api/v1/sessions/{sid}/files/output/chart.png")
        assert raw.headers["content-type"] == "image/png"
        assert raw.content.startswith(b"\x89PNG")
        missing = shannon.get(f"/api/v1/sessions/{sid}/files/nope.txt")
        assert missing.json() == {"error": "file not found: nope.txt"}


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}])
def test_api_key_is_required(demo_emulator, headers):
    response = httpx.get(f"{demo_emulator.url}/api/v1/sessions", headers=headers)
    assert (response.status_code, response.json()) == (401, {"error": "unauthorized"})
