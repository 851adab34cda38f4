"""Signed Vagon calls and small conveniences for the emulator tests."""

from __future__ import annotations

import hashlib
import json as jsonlib
import time
import uuid

import httpx

from vagonfs.remote.signing import authorization, signature

PREFIX = "/organization-management/v1"
MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Vagon:
    """A minimal signed client of the emulator's Vagon API."""

    def __init__(self, emulator, key: str | None = None, secret: str | None = None):
        self.key = key or emulator.api_key
        self.secret = secret or emulator.api_secret
        self.http = httpx.Client(base_url=emulator.url, timeout=30)

    def headers(self, method: str, path: str, body: bytes = b"", *, nonce: str | None = None,
                timestamp: str | None = None, secret: str | None = None) -> dict:
        nonce = nonce or uuid.uuid4().hex
        timestamp = timestamp or str(int(time.time() * 1000))
        sig = signature(self.key, secret or self.secret, method, PREFIX + path, timestamp,
                        nonce, body)
        return {"Authorization": authorization(self.key, sig, nonce, timestamp),
                "Content-Type": "application/json"}

    def call(self, method: str, path: str, json=None, params=None, **sign) -> httpx.Response:
        body = jsonlib.dumps(json).encode() if json is not None else b""
        return self.http.request(method, PREFIX + path, content=body, params=params,
                                 headers=self.headers(method, path, body, **sign))

    def ok(self, method: str, path: str, json=None, params=None) -> dict:
        response = self.call(method, path, json, params)
        assert response.status_code == 200, response.text
        return response.json()

    def upload(self, name: str, data: bytes, parent_id: int = 0, chunk_mb: int = 1,
               overwrite: bool = False, machine_id=None) -> dict:
        """create → PUT every part → complete; the complete reply."""
        created = self.ok("POST", "/files", {
            "file_name": name, "object_type": "file", "parent_id": parent_id,
            "machine_id": machine_id, "content_type": "application/octet-stream",
            "size": len(data), "chunk_size": chunk_mb, "overwrite": overwrite})
        chunk = chunk_mb * MiB
        parts = []
        for number, url in enumerate(created["upload_urls"], 1):
            put = httpx.put(url, content=data[(number - 1) * chunk:number * chunk])
            assert put.status_code == 200, put.text
            parts.append({"part_number": number, "etag": put.headers["etag"]})
        return self.ok("POST", f"/files/{created['id']}/complete", {"parts": parts})

    def listing(self, parent_id: int = 0, **params) -> dict:
        return self.ok("GET", "/files", params={"parent_id": parent_id, **params})

    def find(self, name: str, parent_id: int = 0, path: str = "/files", **params) -> dict:
        items = self.ok("GET", path, params={"parent_id": parent_id, "q": name,
                                             "per_page": 100, **params})["files"]
        return next(item for item in items if item["name"] == name)
