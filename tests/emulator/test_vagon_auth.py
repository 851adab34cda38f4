"""The Vagon HMAC check: what is refused with 401, and the envelope it comes in."""

from __future__ import annotations

import time


def _refused(response, words: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["client_code"] == 401 and words in body["message"]
    assert body["timestamp"].endswith("Z")


def test_a_signed_request_passes_and_carries_the_envelope(vagon):
    body = vagon.ok("GET", "/files")
    assert (body["client_code"], body["message"]) == (200, "OK")
    assert body["timestamp"].endswith("Z")


def test_bad_signature_wrong_key_and_missing_header(vagon, emulator):
    _refused(vagon.call("GET", "/files", secret="not-the-secret"), "signature")
    headers = vagon.headers("GET", "/files")
    headers["Authorization"] = headers["Authorization"].replace(emulator.api_key, "other", 1)
    _refused(vagon.http.get("/organization-management/v1/files", headers=headers), "API key")
    _refused(vagon.http.get("/organization-management/v1/files"), "Missing")
    _refused(vagon.http.get("/organization-management/v1/files",
                            headers={"Authorization": "HMAC nonsense"}), "Malformed")


def test_the_body_and_path_are_signed(vagon):
    headers = vagon.headers("POST", "/files", b'{"a": 1}')
    response = vagon.http.post("/organization-management/v1/files", content=b'{"a": 2}',
                               headers=headers)
    _refused(response, "signature")


def test_a_replayed_nonce_is_refused(vagon):
    assert vagon.call("GET", "/files", nonce="once-only").status_code == 200
    _refused(vagon.call("GET", "/files", nonce="once-only"), "Nonce")


def test_clock_skew_over_300_seconds_is_refused(vagon):
    _refused(vagon.call("GET", "/files", timestamp=str(int((time.time() - 301) * 1000))),
             "clock")
    _refused(vagon.call("GET", "/files", timestamp=str(int((time.time() + 400) * 1000))),
             "clock")
    assert vagon.call("GET", "/files",
                      timestamp=str(int((time.time() - 200) * 1000))).status_code == 200
