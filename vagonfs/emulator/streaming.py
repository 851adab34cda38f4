"""Bytes in and out of blobs without holding a whole file in memory.

Downloads of 1 GiB are served in benchmarks and part uploads are up to
5 GiB: bodies stream from disk in 4 MiB reads (off the event loop: each
worker thread's trip costs CPU, so fewer and bigger reads cost a download a
third less) and into disk as they arrive. ``Range`` handling is shared by every download route.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

import anyio
from starlette.requests import Request

READ_CHUNK = 4 * 1024 * 1024
MAX_CHUNKS = 512  # below IOV_MAX (1024), the most buffers one pwritev takes


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


async def receive_part(path: Path, offset: int, request: Request, limit: int
                       ) -> tuple[int, str]:
    """(size, ETag) of a part's body, written at ``offset`` of the upload's
    object file as it arrives, so ``complete`` has nothing left to copy.

    Written READ_CHUNK at a time in a worker thread (``pwritev`` takes the
    received chunks as they are, without a join). The ETag is a fresh random
    tag, not the MD5 of the bytes: S3 says a part's ETag is opaque (under KMS
    it is no MD5), clients only hand it back, and MD5 made hashing half the
    emulator's CPU while it took a direct upload.
    """
    fd = await anyio.to_thread.run_sync(os.open, path, os.O_WRONLY | os.O_CREAT, 0o644)
    size = 0

    def store(chunks: list[bytes], at: int) -> None:
        want = sum(map(len, chunks))
        if os.pwritev(fd, chunks, at) != want:
            raise OSError(errno.ENOSPC, "short write into a part")

    try:
        chunks: list[bytes] = []
        held = 0
        async for chunk in request.stream():
            if size + held + len(chunk) > limit:
                raise BodyTooLarge(size + held + len(chunk))
            chunks.append(chunk)
            held += len(chunk)
            if held >= READ_CHUNK or len(chunks) >= MAX_CHUNKS:
                await anyio.to_thread.run_sync(store, chunks, offset + size)
                size += held
                chunks, held = [], 0
        if chunks:
            await anyio.to_thread.run_sync(store, chunks, offset + size)
            size += held
    finally:
        os.close(fd)
    return size, secrets.token_hex(16)
