"""Bytes in and out of blobs without holding a whole file in memory.

Downloads of 1 GiB are served in benchmarks and part uploads are up to
5 GiB: bodies stream from disk in 4 MiB reads (off the event loop: a worker
thread's trip costs ~0.3 ms of CPU on a small VM, so fewer and bigger reads
took a 1 GiB download from 0.8-1.0 to 0.6-0.7 s of CPU) and into disk as
they arrive. ``Range`` handling is shared by every download route.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import anyio
from starlette.requests import Request

READ_CHUNK = 4 * 1024 * 1024


class BodyTooLarge(Exception):
    """The request body went over the route's limit (the blob was discarded)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """(first, last) inclusive for a single ``bytes=`` range, None to serve the
    whole body (no header, or a form we do not split, e.g. several ranges),
    or ``"unsatisfiable"``."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first_s, sep, last_s = header[6:].strip().partition("-")
    if not sep:
        return None
    try:
        if first_s == "":
            length = int(last_s)
            if length <= 0:
                return "unsatisfiable"
            return max(0, size - length), size - 1
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first >= size or last < first:
        return "unsatisfiable"
    return first, min(last, size - 1)


class BlobResponse:
    """An ASGI response streaming ``path`` (or its byte range), honouring HEAD."""

    def __init__(self, path: Path | None, size: int, range_header: str | None,
                 content_type: str = "application/octet-stream", honour_range: bool = True,
                 headers: dict[str, str] | None = None):
        self.path = path
        self.headers = {"content-type": content_type, **(headers or {})}
        span = parse_range(range_header, size) if honour_range else None
        if honour_range:
            self.headers["accept-ranges"] = "bytes"
        self.status = 200
        self.first, self.length = 0, size
        if span == "unsatisfiable":
            self.status, self.length = 416, 0
            self.headers["content-range"] = f"bytes */{size}"
        elif isinstance(span, tuple):
            first, last = span
            self.status, self.first, self.length = 206, first, last - first + 1
            self.headers["content-range"] = f"bytes {first}-{last}/{size}"
        self.headers["content-length"] = str(self.length)

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(k.encode(), v.encode()) for k, v in self.headers.items()]})
        if scope["method"] == "HEAD" or self.length == 0 or self.path is None:
            await send({"type": "http.response.body", "body": b""})
            return
        with open(self.path, "rb") as fh:
            fh.seek(self.first)
            left = self.length
            while left > 0:
                chunk = await anyio.to_thread.run_sync(fh.read, min(READ_CHUNK, left))
                if not chunk:  # the blob shrank under us: end short, the client sees it
                    raise OSError(f"blob {self.path.name} ended early")
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk,
                            "more_body": left > 0})


async def receive_to_blob(storage, request: Request, limit: int | None = None
                          ) -> tuple[str, int, str]:
    """(blob id, size, md5 hex) of the request body, written to disk as it
    arrives: hashed and written READ_CHUNK at a time in a worker thread
    (both release the GIL), where on the event loop MD5 alone took half the
    emulator's CPU while a 1 GiB upload came in."""
    md5 = hashlib.md5()
    size = 0
    with storage.blob_writer() as (blob, fh):

        def store(chunks: list[bytes]) -> None:
            data = b"".join(chunks)
            md5.update(data)
            fh.write(data)

        chunks: list[bytes] = []
        held = 0
        async for chunk in request.stream():
            size += len(chunk)
            if limit is not None and size > limit:
                raise BodyTooLarge(size)
            chunks.append(chunk)
            held += len(chunk)
            if held >= READ_CHUNK:
                await anyio.to_thread.run_sync(store, chunks)
                chunks, held = [], 0
        await anyio.to_thread.run_sync(store, chunks)
    return blob, size, md5.hexdigest()


def concatenate(storage, blobs: list[str]) -> str:
    """A new blob holding ``blobs`` one after another (runs in a worker thread)."""
    with storage.blob_writer() as (blob, out):
        for part in blobs:
            with open(storage.blob_path(part), "rb") as src:
                _copy(src, out)
    return blob


def _copy(src, out) -> None:
    """Append ``src`` to ``out`` in the kernel when it can (no trip through Python)."""
    out.flush()
    try:
        while os.copy_file_range(src.fileno(), out.fileno(), 64 * READ_CHUNK):
            pass
        return
    except OSError:  # e.g. EXDEV or an old kernel: the portable way, from where it stopped
        out.seek(0, os.SEEK_END)
    while chunk := src.read(READ_CHUNK * 4):
        out.write(chunk)
