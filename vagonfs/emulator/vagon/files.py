"""Vagon Files routes: listings, create/upload/complete, delete, links, capacity.

Uploads follow docs/EMULATOR.md: ``POST /files`` opens a multipart upload
(one presigned part URL per chunk), parts go to ``/_s3/parts``, and
``complete`` checks every part, assembles the blob and swaps it in. A new
file is listed as ``uploading`` until then; an overwrite keeps serving the
old content (and keeps its id) until the new upload completes.
"""

from __future__ import annotations

import asyncio
import json
import math
import os

from starlette.requests import Request
from starlette.routing import Route

from vagonfs.emulator.context import of
from vagonfs.emulator.storage import MiB, iso, new_uid
from vagonfs.emulator.vagon import model
from vagonfs.emulator.vagon.wire import (PREFIX, VagonError, check_name, file_item, int_param,
                                         page_args, page_reply, reply, vagon_route)


def _machine(request: Request, machine_id) -> int:
    number = int_param(machine_id, "machine_id")
    if of(request).storage.one("SELECT 1 FROM machines WHERE id = ?", (number,)) is None:
        raise VagonError(404, "Machine not found")
    return number


def _parent(request: Request, scope: str, parent_id):
    """The folder row for ``parent_id`` in ``scope`` (None for the root), else 404."""
    number = int_param(parent_id, "parent_id", 0)
    if not number:
        return None
    row = model.get(of(request).storage, number)
    if row is None or row["scope"] != scope or row["object_type"] != "directory":
        raise VagonError(404, "Parent folder not found")
    return row


def _listing(request: Request, scope: str, extra_sql: str = "", extra_args=()) -> dict:
    emu = of(request)
    q = request.query_params
    page, per_page = page_args(request)
    parent = _parent(request, scope, q.get("parent_id"))
    parent_id = parent["id"] if parent else 0
    where = "scope = ? AND parent_id = ?" + extra_sql
    args = [scope, parent_id, *extra_args]
    if q.get("q"):
        where += " AND instr(casefold(name), casefold(?)) > 0"
        args.append(q["q"])
    rows, count = emu.pages.page(emu.storage, scope, parent_id, where, args, page, per_page)
    wrapped = emu.settings.vagon_items == "wrapped"
    return page_reply("files", [file_item(r, wrapped) for r in rows], count, page, per_page,
                      current=file_item(parent, wrapped) if parent else None)


@vagon_route
async def list_files(request: Request, _data):
    emu = of(request)
    listing = _listing(request, model.SHARED)
    parent_id = int_param(request.query_params.get("parent_id"), "parent_id", 0)
    wrapped = emu.settings.vagon_items == "wrapped"

    def bad_item(fields: dict) -> dict:  # an entry that exists only in this listing
        return file_item({"uid": f"bad{fields['id']}", "object_type": "file", "size": 7,
                          "content_type": "text/plain", "parent_id": parent_id,
                          "machine_id": None, "status": "completed", "created_at": iso(),
                          "updated_at": iso(), **fields}, wrapped)

    envelope = dict(listing, client_code=200, message="OK", timestamp=iso())
    return emu.bad_input.vagon_listing(envelope, parent_id, bad_item) or reply(listing)


@vagon_route
async def list_machine_files(request: Request, _data):
    machine_id = _machine(request, request.path_params["machine_id"])
    scope = model.machine_scope(machine_id)
    task_id = request.query_params.get("task_id")
    if task_id in (None, ""):
        return reply(_listing(request, scope))
    task = of(request).storage.one("SELECT * FROM tasks WHERE id = ? AND machine_id = ?",
                                   (int_param(task_id, "task_id"), machine_id))
    if task is None:
        raise VagonError(404, "Task not found")
    if int_param(request.query_params.get("parent_id"), "parent_id", 0):
        return reply(_listing(request, scope, " AND object_type = 'directory'"))
    return reply(_listing(request, scope, " AND id = ?", (task["folder_id"],)))


@vagon_route
async def list_recordings(request: Request, _data):
    machine_id = request.query_params.get("machine_id")
    if machine_id in (None, ""):
        return reply(_listing(request, model.RECORDINGS))
    number = _machine(request, machine_id)
    return reply(_listing(request, model.RECORDINGS, " AND machine_id = ?", (number,)))


@vagon_route
async def create(request: Request, data: dict):
    emu = of(request)
    name = check_name(data.get("file_name"))
    kind = data.get("object_type")
    if kind not in ("file", "directory"):
        raise VagonError(400, "object_type must be \"file\" or \"directory\"")
    machine_id = None
    scope = model.SHARED
    if data.get("machine_id") not in (None, ""):
        machine_id = _machine(request, data["machine_id"])
        scope = model.machine_scope(machine_id)
    parent = _parent(request, scope, data.get("parent_id"))
    parent_id = parent["id"] if parent else 0
    existing = model.child(emu.storage, scope, parent_id, name)
    if kind == "directory":
        if existing:
            raise VagonError(409, "File already exists")
        new_id = model.add_dir(emu.storage, scope, parent_id, name, machine_id)
        wrapped = emu.settings.vagon_items == "wrapped"
        return reply(file_item(model.get(emu.storage, new_id), wrapped))

    size = int_param(data.get("size"), "size", minimum=0)
    if size is None:
        raise VagonError(400, "size (bytes) is required for a file")
    content_type = data.get("content_type")
    if not isinstance(content_type, str) or not content_type:
        raise VagonError(400, "content_type is required for a file")
    chunk_mb = int_param(data.get("chunk_size"), "chunk_size", 250)
    if not 1 <= chunk_mb <= 5120:
        raise VagonError(400, "chunk_size must be a whole number of MB from 1 to 5120")
    overwrite = data.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise VagonError(400, "overwrite must be true or false")
    if existing and (existing["object_type"] == "directory" or not overwrite):
        raise VagonError(409, "File already exists")
    replaced = existing["size"] if existing and existing["status"] == "completed" else 0
    if model.in_use(emu.storage) - replaced + size > emu.settings.vagon_quota:
        raise VagonError(507, "Storage full")

    chunk = chunk_mb * MiB
    nparts = max(1, math.ceil(size / chunk))
    uid = new_uid()
    now = iso()
    with emu.storage.tx() as db:
        if existing:
            file_id = existing["id"]
        else:
            model.changed(emu.storage, scope, parent_id)
            file_id = db.execute(
                "INSERT INTO vfiles (uid, scope, parent_id, name, object_type, size, "
                "content_type, status, machine_id, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'file', ?, ?, 'uploading', ?, ?, ?)",
                (uid, scope, parent_id, name, size, content_type, machine_id, now,
                 now)).lastrowid
        db.execute("INSERT INTO uploads (uid, file_id, size, chunk, nparts, content_type, "
                   "state) VALUES (?, ?, ?, ?, ?, ?, 'open')",
                   (uid, file_id, size, chunk, nparts, content_type))
    urls = [emu.links.url(emu.public_url, f"/_s3/parts/{uid}/{n}", "PUT")[0]
            for n in range(1, nparts + 1)]
    return reply({"id": file_id, "uid": uid, "chunk_size": chunk_mb, "upload_urls": urls})


def _parts_key(parts) -> str:
    """The parts list of a complete, normalised, to recognise a repeated complete."""
    if not isinstance(parts, list) or not parts:
        raise VagonError(400, "parts must be a non-empty list of {part_number, etag}")
    key = []
    for part in parts:
        if (not isinstance(part, dict) or not isinstance(part.get("etag"), str)
                or part.get("part_number") is None):
            raise VagonError(400, "Invalid part")
        key.append((int_param(part["part_number"], "part_number"),
                    part["etag"].strip().strip('"')))
    return json.dumps(sorted(key))


@vagon_route
async def complete(request: Request, data: dict):
    """One complete per file at a time: a retried complete waits for the first one,
    then answers its reply."""
    emu = of(request)
    file_id = request.path_params["file_id"]
    key = _parts_key(data.get("parts"))
    lock = emu.completing.setdefault(file_id, asyncio.Lock())
    try:
        async with lock:
            return await _complete(emu, file_id, key)
    finally:
        if not lock.locked():
            emu.completing.pop(file_id, None)


async def _complete(emu, file_id: int, key: str):
    entry = model.get(emu.storage, file_id)
    upload = emu.storage.one("SELECT * FROM uploads WHERE file_id = ? AND state != 'aborted' "
                             "ORDER BY rowid DESC LIMIT 1", (file_id,))
    if entry is None or upload is None:
        raise VagonError(404, "File not found")
    if upload["state"] == "completed":
        if key == upload["parts_key"]:
            return reply(json.loads(upload["reply"]))
        raise VagonError(400, "Invalid part")
    stored = emu.storage.all("SELECT * FROM parts WHERE upload_uid = ? ORDER BY part_number",
                             (upload["uid"],))
    have = {(p["part_number"], p["etag"].strip('"')) for p in stored}
    wanted = json.loads(key)
    numbers = [n for n, _ in wanted]
    if (sorted(numbers) != list(range(1, upload["nparts"] + 1))
            or any(tuple(w) not in have for w in wanted)):
        raise VagonError(400, "Invalid part")
    sizes = [p["size"] for p in stored]
    if sum(sizes) != upload["size"] or any(s != upload["chunk"] for s in sizes[:-1]):
        raise VagonError(400, "File size mismatch")
    replaced = entry["size"] if entry["status"] == "completed" else 0
    if model.in_use(emu.storage) - replaced + upload["size"] > emu.settings.vagon_quota:
        raise VagonError(507, "Storage limit exceeded")

    blob = emu.storage.upload_blob(upload["uid"])
    # a last part PUT too long, then again right, left bytes past the end; on the
    # event loop (a no-op mostly), so no part PUT starts between the checks and the commit
    os.truncate(emu.storage.blob_path(blob), upload["size"])
    url = emu.links.url(emu.public_url, f"/_s3/objects/{blob}", "GET")[0]
    answer = {"id": entry["id"], "uid": upload["uid"], "download_url": url,
              "size": upload["size"], "name": entry["name"]}
    with emu.storage.tx() as db:
        db.execute("UPDATE vfiles SET uid = ?, size = ?, content_type = ?, status = "
                   "'completed', blob = ?, updated_at = ? WHERE id = ?",
                   (upload["uid"], upload["size"], upload["content_type"], blob, iso(),
                    file_id))
        db.execute("UPDATE uploads SET state = 'completed', reply = ?, parts_key = ? "
                   "WHERE uid = ?", (json.dumps(answer), key, upload["uid"]))
    if entry["blob"] != blob:
        emu.storage.drop_blob(entry["blob"])
    return reply(answer)


def delete_tree(storage, file_id: int) -> None:
    """Remove an item with everything under it, their blobs and open uploads."""
    rows = model.subtree(storage, file_id)
    blobs = [r["blob"] for r in rows]
    with storage.tx() as db:
        for row in rows:
            model.changed(storage, row["scope"], row["parent_id"])
            db.execute("DELETE FROM vfiles WHERE id = ?", (row["id"],))
            blobs += [p["blob"] for p in db.execute(
                "SELECT parts.blob FROM parts JOIN uploads ON uploads.uid = parts.upload_uid "
                "WHERE uploads.file_id = ? AND uploads.state = 'open'", (row["id"],))]
            db.execute("UPDATE uploads SET state = 'aborted' WHERE file_id = ? "
                       "AND state = 'open'", (row["id"],))
    for blob in blobs:
        storage.drop_blob(blob)


@vagon_route
async def delete(request: Request, _data):
    storage = of(request).storage
    entry = model.get(storage, request.path_params["file_id"])
    if entry is None:
        raise VagonError(404, "File not found")
    if entry["is_root"]:
        raise VagonError(400, "Root folder cannot be deleted", 450)
    if entry["scope"] == model.RECORDINGS:
        raise VagonError(403, "Permission required: session recordings are read-only", 4710)
    delete_tree(storage, entry["id"])
    return reply()


@vagon_route
async def download_link(request: Request, _data):
    emu = of(request)
    entry = model.get(emu.storage, request.path_params["file_id"])
    if entry is None:
        raise VagonError(404, "File not found")
    if entry["object_type"] == "directory":
        raise VagonError(400, "A folder has no download link (use POST /files/download)")
    if entry["status"] != "completed":
        raise VagonError(400, "File is not ready")
    base = emu.bad_input.link_base(emu.public_url)
    url, expires = emu.links.url(base, f"/_s3/objects/{entry['blob']}", "GET")
    size = emu.bad_input.declared(entry["name"], entry["size"])
    return reply({"url": url, "size": size, "name": entry["name"],
                  "content_type": entry["content_type"], "expires_at": iso(expires)})


@vagon_route
async def capacity(request: Request, _data):
    emu = of(request)
    team = {"total": emu.settings.vagon_quota, "in_use": model.in_use(emu.storage)}
    machine_id = request.query_params.get("machine_id")
    if machine_id in (None, ""):
        return reply({**team, "team": team})
    number = _machine(request, machine_id)
    size_gb = emu.storage.number("SELECT file_storage_size FROM machines WHERE id = ?", (number,))
    return reply({"total": size_gb * 1024 ** 3,
                  "in_use": model.in_use(emu.storage, model.machine_scope(number)),
                  "team": team})


def routes() -> list[Route]:
    p = PREFIX
    return [
        Route(f"{p}/files", list_files, methods=["GET"], name="vagon.files"),
        Route(f"{p}/files", create, methods=["POST"], name="vagon.create"),
        Route(f"{p}/files/capacity", capacity, methods=["GET"], name="vagon.capacity"),
        Route(f"{p}/files/{{file_id:int}}/complete", complete, methods=["POST"],
              name="vagon.complete"),
        Route(f"{p}/files/{{file_id:int}}/download", download_link, methods=["GET"],
              name="vagon.download_link"),
        Route(f"{p}/files/{{file_id:int}}", delete, methods=["DELETE"], name="vagon.delete"),
        Route(f"{p}/machines/{{machine_id}}/files", list_machine_files, methods=["GET"],
              name="vagon.machine_files"),
        Route(f"{p}/session-recordings", list_recordings, methods=["GET"],
              name="vagon.recordings"),
    ]
