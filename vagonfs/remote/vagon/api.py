"""The Vagon Teams API call by call: signing, envelopes, errors.

Nothing here knows about folders as a filesystem sees them (that is
``vagon.py``); this module speaks the wire format of ``docs/EMULATOR.md`` and
API-NOTES and returns plain dicts, with JSON:API objects flattened so callers
see one item shape.

Signing: every request carries ``Authorization: HMAC key:signature:nonce:timestamp``
over the exact body bytes sent. The body is serialized here, once, and the
signature is computed per attempt (an httpx auth flow), so a retried request
gets a fresh nonce and timestamp as the server demands.

Lists come page by page through ``paging``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from pathlib import Path

import httpx
import trio

from vagonfs.errors import PermissionDenied, RemoteIOError, StoreError, error_for_status
from vagonfs.remote import signing
from vagonfs.remote.failures import describe
from vagonfs.remote.http import HttpClient
from vagonfs.remote.transports import Transport
from vagonfs.remote.vagon import paging
from vagonfs.remote.vagon.paging import flatten
from vagonfs.runtime import threads

log = logging.getLogger("vagonfs.vagon")

BASE_PATH = "/organization-management/v1"

# client_code -> error, checked before the HTTP status (API-NOTES, EMULATOR.md).
_BY_CODE: dict[int, type[StoreError]] = {
    4710: PermissionDenied,  # permission required
    450: PermissionDenied,  # a root folder cannot be deleted
    4201: RemoteIOError,  # machine not ready
    4204: RemoteIOError,  # machine not running
    4206: RemoteIOError,  # machine running
}


class HmacAuth(httpx.Auth):
    """Signs each attempt anew: fresh nonce, current timestamp, exact body."""

    requires_request_body = True

    def __init__(self, api_key: str, api_secret: str):
        self._key = api_key
        self._secret = api_secret

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        timestamp = str(int(time.time() * 1000))
        nonce = str(uuid.uuid4())
        digest = signing.signature(self._key, self._secret, request.method, request.url.path,
                                   timestamp, nonce, request.content)
        request.headers["Authorization"] = signing.authorization(self._key, digest, nonce,
                                                                 timestamp)
        yield request

    def __repr__(self) -> str:
        return "HmacAuth()"


def vagon_error(response: httpx.Response) -> StoreError:
    """Map by ``client_code`` first, then by HTTP status."""
    code = None
    try:
        data = response.json()
        code = int(data["client_code"])
    except (ValueError, KeyError, TypeError):
        pass
    cls = _BY_CODE.get(code) if code is not None else None
    if cls is not None:
        return cls(describe(response), status=response.status_code, code=code)
    return error_for_status(response.status_code, describe(response), code=code)


class VagonApi:
    """The Teams API of one organization; every method is one documented call."""

    def __init__(self, http: HttpClient, url: str, api_key: str, api_secret: str):
        self.http = http
        self.base_url = url.rstrip("/")
        self._base = self.base_url + BASE_PATH
        self._auth = HmacAuth(api_key, api_secret)

    async def _page(self, path: str, params: dict) -> dict:
        """One page of a list, over the worker-thread connections (``paging``)."""
        return await self.call("GET", path, params=params, via=self.http.worker)

    async def call(self, method: str, path: str, *, params: dict | None = None,
                   body: dict | None = None, idempotent: bool = True,
                   via: Transport | None = None) -> dict:
        """One signed request; the reply's JSON object (envelope included).
        ``via``: see ``HttpClient.request``."""
        content = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if content is not None else None
        params = {k: v for k, v in (params or {}).items() if v is not None}
        response = await self.http.request(method, self._base + path, params=params or None,
                                           headers=headers, content=content, auth=self._auth,
                                           idempotent=idempotent, errors=vagon_error,
                                           via=via)
        if not response.content:
            return {}
        try:
            data = response.json()
        except ValueError:
            raise RemoteIOError(f"{method} {path}: the server's reply is not JSON") from None
        if not isinstance(data, dict):
            raise RemoteIOError(f"{method} {path}: unexpected reply shape")
        return data

    # -- files -------------------------------------------------------------------

    def files(self, parent_id: int = 0, *, q: str | None = None) -> AsyncGenerator[list[dict], None]:
        """The organization's shared files in one folder (0 = root)."""
        return paging.pages(self._page, "/files", "files",
                                  {"parent_id": parent_id or None, "q": q})

    def machine_files(self, machine_id: int, parent_id: int = 0, *, q: str | None = None,
                      task_id=None) -> AsyncGenerator[list[dict], None]:
        """One machine's files; with ``task_id`` only that task's folders."""
        return paging.pages(self._page, f"/machines/{machine_id}/files", "files",
                                  {"parent_id": parent_id or None, "q": q, "task_id": task_id})

    def recordings(self, parent_id: int = 0, *, q: str | None = None,
                   machine_id: int | None = None) -> AsyncGenerator[list[dict], None]:
        return paging.pages(self._page, "/session-recordings", "files",
                                  {"parent_id": parent_id or None, "q": q,
                                   "machine_id": machine_id})

    async def create_directory(self, name: str, parent_id: int, *,
                               machine_id: int | None = None) -> dict:
        body = {"file_name": name, "object_type": "directory", "parent_id": parent_id}
        if machine_id is not None:
            body["machine_id"] = machine_id
        # on the pool lookups use: a new connection would cost its handshake
        return flatten(await self.call("POST", "/files", body=body, idempotent=False,
                                       via=self.http.worker))

    async def create_upload(self, name: str, parent_id: int, *, size: int, content_type: str,
                            chunk_mb: int, machine_id: int | None = None,
                            overwrite: bool = True) -> dict:
        """Open a multipart upload that replaces a same-named file on completion
        (``overwrite``; without it a taken name is refused with 409).

        Answers ``{id, uid, chunk_size, upload_urls}``.
        """
        body = {"file_name": name, "object_type": "file", "parent_id": parent_id,
                "content_type": content_type, "size": size, "chunk_size": chunk_mb,
                "overwrite": overwrite}
        if machine_id is not None:
            body["machine_id"] = machine_id
        return await self.call("POST", "/files", body=body, idempotent=False,
                               via=self.http.worker)

    async def put_part(self, url: str, body: bytes | Callable[[], AsyncIterator[bytes]],
                       length: int) -> str:
        """PUT one part to its presigned URL (no credentials: the URL is the
        permission); answers the part's ETag. Idempotent: a part PUT again
        replaces itself, so each attempt sends ``body`` (bytes, a small part:
        from a worker thread) or streams ``body()`` anew."""
        small = isinstance(body, bytes)
        response = await self.http.request("PUT", url, content=body,
                                           headers={"Content-Type": "application/octet-stream",
                                                    "Content-Length": str(length)},
                                           via=self.http.worker if small else None)
        etag = response.headers.get("ETag")
        if not etag:
            raise RemoteIOError("the object store answered a part upload without an ETag")
        return etag

    async def complete(self, file_id: int, etags: list[str]) -> dict:
        """Finish an upload. The server answers a repeated complete with the
        same reply, so a complete whose answer was lost is simply sent again."""
        parts = [{"part_number": n, "etag": etag} for n, etag in enumerate(etags, 1)]
        return await self.call("POST", f"/files/{file_id}/complete", body={"parts": parts},
                               via=self.http.worker)

    async def delete(self, file_id: int) -> None:
        """Delete a file, or a folder with everything in it."""
        await self.call("DELETE", f"/files/{file_id}", via=self.http.worker)

    async def download_link(self, file_id: int) -> dict:
        """``{url, size, name, content_type, expires_at}``; the URL is presigned."""
        return await self.call("GET", f"/files/{file_id}/download", via=self.http.worker)

    async def capacity(self, machine_id: int | None = None) -> dict:
        return await self.call("GET", "/files/capacity", params={"machine_id": machine_id},
                               via=self.http.worker)  # the pool the reads use (paging)

    # -- machines ----------------------------------------------------------------

    def machines(self, *, q: str | None = None) -> AsyncGenerator[list[dict], None]:
        return paging.pages(self._page, "/machines", "machines", {"q": q})

    def tasks(self, machine_id: int) -> AsyncGenerator[list[dict], None]:
        return paging.pages(self._page, f"/machines/{machine_id}/tasks", "tasks")

    async def list_content(self, machine_id: int, path: str) -> list[dict]:
        """A running machine's own disk, names only (400/4204 when it is off)."""
        reply = await self.call("POST", f"/machines/{machine_id}/list-content",
                                body={"path": path})
        return [flatten(i) for i in reply.get("content") or []]

    # -- archive downloads ---------------------------------------------------------

    async def archive_start(self, file_ids: list[int], *, machine_id: int | None = None
                            ) -> dict:
        """Ask for a zip of files and folders; answers ``download_id`` at once."""
        body: dict = {"file_ids": list(file_ids)}
        if machine_id is not None:
            body["machine_id"] = machine_id
        return await self.call("POST", "/files/download", body=body, idempotent=False)

    async def archive_status(self, download_id) -> dict:
        """``status`` processing | completed | failed | aborted, and ``url`` once ready."""
        return flatten(await self.call("GET", f"/files/download/{download_id}"))

    async def archive_abort(self, download_id) -> None:
        await self.call("DELETE", f"/files/download/{download_id}")

    async def archive_fetch(self, download_id, dest: Path, *, poll_interval: float = 1.0,
                            progress: Callable[[str, int, int | None], None] | None = None
                            ) -> dict:
        """Wait for the archive, then stream it into ``dest``; answers the final status.

        The link is asked again whenever the download needs a fresh one, and a
        cut transfer resumes where it stopped. ``progress(phase, done, total)``
        hears each poll ("preparing") and each chunk ("downloading").
        """
        report = progress or (lambda phase, done, total: None)
        status = await self._archive_ready(download_id, poll_interval, report)

        async def locate(fresh: bool) -> str:
            nonlocal status
            if fresh:
                status = await self.archive_status(download_id)
            return status["url"]

        out = await threads.run_sync(open, dest, "wb")
        done, total = 0, status.get("size")
        try:
            async for chunk in self.http.stream_range(locate):
                await threads.run_sync(out.write, chunk)
                done += len(chunk)
                report("downloading", done, total)
        finally:
            await threads.run_sync(out.close)
        return status

    async def _archive_ready(self, download_id, poll_interval: float, report) -> dict:
        started = time.monotonic()
        while True:
            status = await self.archive_status(download_id)
            report("preparing", int(time.monotonic() - started), None)
            state = status.get("status")
            if state == "completed" and status.get("url"):
                return status
            if state in ("failed", "aborted"):
                raise RemoteIOError(f"archive {download_id} {state}: "
                                    f"{status.get('message') or 'no reason given'}")
            await trio.sleep(poll_interval)
