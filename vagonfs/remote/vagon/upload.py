"""Vagon's multipart upload: create, parts in parallel, complete.

It starts only once the file is closed (or synced), never while it is still
being written, though the parts could travel during the copy: ``create``
must state the final ``size`` and ``file_name``, ``complete`` refuses parts
that do not add up to that size (``File size mismatch``), and no call
appends to or renames an upload. A writer's final size is known only at
``close`` (``cp`` and ``rsync`` announce none), and an upload begun under
rsync's temporary name could not take the final one, so starting early
would mean guessing a size, or leaving an abandoned ``uploading`` item
visible to every other client, and would give up the write-back rules (a
rename or delete before the upload costs nothing). What is done instead:
the file is spooled at disk speed, and ``fsync`` starts its upload at once
with the parts in parallel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO

from vagonfs.errors import RemoteIOError
from vagonfs.remote.base import ProgressFn, task_group
from vagonfs.remote.file_bodies import FILE_CHUNK, file_range
from vagonfs.remote.replies import reply_shape
from vagonfs.remote.vagon.api import VagonApi

MiB = 1024 * 1024
PART_PARALLELISM = 8  # one connection carries 2 MiB a round trip: 4 left a 1 Gbit/s link at 0.86 of its rate at 40 ms
MAX_PARTS = 10_000


def part_size_mb(size: int) -> int:
    """Parts of 8 to 64 MiB (at most 1000 of them), bigger only past 64 GB."""
    for mb in (8, 16, 32, 64):
        if size <= mb * MiB * 1000:
            return mb
    return min(5120, max(64, math.ceil(size / (MAX_PARTS * MiB))))


async def upload(api: VagonApi, name: str, parent_id: int, machine_id: int | None,
                 source: BinaryIO, size: int, *, content_type: str,
                 progress: ProgressFn | None, parallelism: int,
                 overwrite: bool = True) -> tuple[int, str, dict]:
    """Store ``size`` bytes of ``source``; returns the file's id and uid, and
    the complete's reply (its ``download_url`` is a link to the new content)."""
    reply = await api.create_upload(name, parent_id, size=size, chunk_mb=part_size_mb(size),
                                    content_type=content_type, machine_id=machine_id,
                                    overwrite=overwrite)
    with reply_shape("Vagon upload"):
        file_id = int(reply["id"])
        chunk = int(reply.get("chunk_size") or part_size_mb(size)) * MiB
        urls = [str(url) for url in reply.get("upload_urls") or []]
    if len(urls) != max(1, math.ceil(size / chunk)):
        raise RemoteIOError(f"Vagon offered {len(urls)} part URLs for {size} bytes "
                            f"in parts of {chunk} bytes")
    etags = await _put_parts(api, source.fileno(), size, chunk, urls, progress, parallelism)
    done = await api.complete(file_id, etags)
    with reply_shape("Vagon complete"):
        return file_id, str(done.get("uid") or reply.get("uid")), done


async def _put_parts(api: VagonApi, fd: int, size: int, chunk: int, urls: list[str],
                     progress: ProgressFn | None, parallelism: int) -> list[str]:
    """PUT the parts, ``parallelism`` at a time, each streamed from the file
    (a retry reads it again), so memory holds chunks, not parts."""
    etags = [""] * len(urls)
    todo = iter(enumerate(urls))
    done = 0

    async def worker() -> None:
        nonlocal done
        for index, url in todo:
            offset = index * chunk
            length = min(chunk, size - offset)
            body: bytes | Callable[[], AsyncIterator[bytes]]
            if length <= FILE_CHUNK:  # one chunk, read whole either way (one worker trip)
                body = b"".join([chunk async for chunk in file_range(fd, offset, length)])
            else:
                body = functools.partial(file_range, fd, offset, length)
            etags[index] = await api.put_part(url, body, length)
            done += length
            if progress is not None:
                progress(done)

    async with task_group() as nursery:
        for _ in range(min(parallelism, len(urls))):
            nursery.start_soon(worker)
    return etags
