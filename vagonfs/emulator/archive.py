"""Vagon's bulk download: a zip of chosen files and folders, built in the background.

``POST /files/download`` snapshots which blobs go in (with their paths
relative to the chosen items) and starts a thread that writes the zip into a
new blob; status polls see ``processing`` until it is ``completed`` (with a
presigned link), ``failed`` or ``aborted``. Jobs live in SQLite, so a finished
archive survives a restart; one that was still building is marked failed.
"""

from __future__ import annotations

import threading
import time
import uuid
import zipfile

from starlette.requests import Request
from starlette.routing import Route

from vagonfs.emulator.context import of
from vagonfs.emulator.vagon import model
from vagonfs.emulator.vagon.wire import PREFIX, VagonError, int_param, reply, vagon_route

NAME = "project-files.zip"
CONTENT_TYPE = "application/zip"


def fail_interrupted(storage) -> None:
    """Jobs that were building when the last process stopped can never finish."""
    storage.run("UPDATE archives SET status = 'failed', error = 'interrupted by a restart' "
                "WHERE status = 'processing'")


def _build(emu, job_id: str, members: list[tuple[str, str]]) -> None:
    storage = emu.storage
    time.sleep(emu.faults.archive_delay_ms / 1000)
    try:
        with storage.blob_writer() as (blob, fh):
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED) as zf:
                for path, source in members:
                    zf.write(storage.blob_path(source), path)
            size = fh.tell()
    except OSError as exc:
        storage.run("UPDATE archives SET status = 'failed', error = ? WHERE id = ?",
                    (f"reading a file failed: {exc.strerror}", job_id))
        return
    with storage.tx() as db:
        row = db.execute("SELECT status FROM archives WHERE id = ?", (job_id,)).fetchone()
        if row and row["status"] == "processing":
            db.execute("UPDATE archives SET status = 'completed', blob = ?, size = ? "
                       "WHERE id = ?", (blob, size, job_id))
            return
    storage.drop_blob(blob)  # aborted meanwhile


@vagon_route
async def start(request: Request, data: dict):
    emu = of(request)
    ids = data.get("file_ids")
    if not isinstance(ids, list) or not ids:
        raise VagonError(400, "No files or directory provided for download")
    members: list[tuple[str, str]] = []
    for raw in ids:
        file_id = int_param(raw, "file_ids[]")
        if model.get(emu.storage, file_id) is None:
            raise VagonError(404, "File or directory not found")
        members.extend((path, row["blob"])
                       for path, row in model.relative_paths(emu.storage, file_id))
    if not members:
        raise VagonError(400, "Directory is empty or has no completed files")
    job_id = uuid.uuid4().hex
    emu.storage.run("INSERT INTO archives (id, status) VALUES (?, 'processing')", (job_id,))
    threading.Thread(target=_build, args=(emu, job_id, members), daemon=True,
                     name=f"archive-{job_id[:8]}").start()
    return reply({"download_id": job_id, "url": None, "status": "processing", "name": NAME,
                  "content_type": CONTENT_TYPE, "size": None})


def _job(request: Request):
    row = of(request).storage.one("SELECT * FROM archives WHERE id = ?",
                                  (request.path_params["download_id"],))
    if row is None:
        raise VagonError(404, "Download not found")
    return row


@vagon_route
async def status(request: Request, _data):
    emu = of(request)
    job = _job(request)
    url = None
    if job["status"] == "completed":
        url = emu.links.url(emu.public_url, f"/_s3/objects/{job['blob']}", "GET")[0]
    return reply({"id": job["id"], "type": "download", "status": job["status"], "url": url,
                  "size": job["size"], "name": NAME, "content_type": CONTENT_TYPE})


@vagon_route
async def abort(request: Request, _data):
    job = _job(request)
    if job["status"] in ("completed", "failed"):
        raise VagonError(400, "Download cannot be aborted")
    of(request).storage.run("UPDATE archives SET status = 'aborted' WHERE id = ?", (job["id"],))
    return reply()


def routes() -> list[Route]:
    p = PREFIX
    return [
        Route(f"{p}/files/download", start, methods=["POST"], name="vagon.archive_start"),
        Route(f"{p}/files/download/{{download_id}}", status, methods=["GET"],
              name="vagon.archive_status"),
        Route(f"{p}/files/download/{{download_id}}", abort, methods=["DELETE"],
              name="vagon.archive_abort"),
    ]
