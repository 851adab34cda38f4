"""The admin API (``/_admin``): health, stats, faults, bad input, link expiry, bulk set-up.

For tests, benchmarks and curious users. Everything but ``health`` needs the
API key as a bearer token; admin calls are never counted in the stats.
"""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from vagonfs.emulator import tenant
from vagonfs.emulator.bad_input import BadInputError
from vagonfs.emulator.context import bearer_ok, of
from vagonfs.emulator.faults import FaultError
from vagonfs.emulator.storage import EMPTY_BLOB, generated
from vagonfs.emulator.vagon import model


class AdminError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def admin_route(handler):
    async def endpoint(request: Request):
        if not bearer_ok(request, of(request).api_key):
            return JSONResponse({"error": "unauthorized"}, 401)
        try:
            return await handler(request)
        except (AdminError, tenant.TenantError) as exc:
            return JSONResponse({"error": exc.message}, exc.status)
    endpoint.__name__ = handler.__name__
    return endpoint


async def _json(request: Request) -> dict:
    body = await request.body()
    if not body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise AdminError(400, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise AdminError(400, "body must be a JSON object")
    return data


async def health(_request: Request):
    return JSONResponse({"ok": True})


@admin_route
async def stats(request: Request):
    return JSONResponse(of(request).stats.snapshot())


@admin_route
async def stats_reset(request: Request):
    of(request).stats.reset()
    return JSONResponse({"ok": True})


@admin_route
async def faults(request: Request):
    emu = of(request)
    if request.method == "PUT":
        try:
            emu.faults.replace(await _json(request))
        except FaultError as exc:
            raise AdminError(400, str(exc)) from None
    elif request.method == "DELETE":
        emu.faults.clear()
    return JSONResponse(emu.faults.snapshot())


@admin_route
async def bad_input(request: Request):
    emu = of(request)
    if request.method == "PUT":
        try:
            emu.bad_input.replace(await _json(request))
        except BadInputError as exc:
            raise AdminError(400, str(exc)) from None
    elif request.method == "DELETE":
        emu.bad_input.replace({})
    return JSONResponse(emu.bad_input.snapshot())


@admin_route
async def expire_links(request: Request):
    of(request).links.expire_all()
    return JSONResponse({"ok": True})


def _int(data: dict, name: str, default: int | None) -> int | None:
    value = data.get(name, default)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AdminError(400, f"{name} must be an integer") from None


def _count_args(data: dict) -> tuple[int, str, int]:
    count, size = _int(data, "count", 1), _int(data, "size", 0)
    prefix = data.get("prefix", "f")
    if count is None or size is None or count < 0 or size < 0 or not isinstance(prefix, str):
        raise AdminError(400, "count and size must be >= 0, prefix a string")
    return count, prefix, size


def _populate_vagon(storage, data: dict) -> dict:
    """``count`` items in ``parent_id``, or with ``folders``: that many new folders
    there, each holding ``count`` items (a tree of a million entries in seconds)."""
    count, prefix, size = _count_args(data)
    machine_id = _int(data, "machine_id", None)
    scope = model.SHARED if machine_id is None else model.machine_scope(machine_id)
    if machine_id is not None and not storage.one("SELECT 1 FROM machines WHERE id = ?",
                                                  (machine_id,)):
        raise AdminError(404, "Machine not found")
    parent_id = _int(data, "parent_id", 0) or 0
    if parent_id:
        parent = model.get(storage, parent_id)
        if parent is None or parent["scope"] != scope or parent["object_type"] != "directory":
            raise AdminError(404, "Parent folder not found")
    folders = _int(data, "folders", None)
    folder_prefix = data.get("folder_prefix", "d")
    if folders is not None and (folders < 0 or not isinstance(folder_prefix, str)):
        raise AdminError(400, "folders must be >= 0, folder_prefix a string")
    is_dir = data.get("object_type", "file") == "directory"
    names = [f"{prefix}{i:06d}" for i in range(count)]
    top = names if folders is None else [f"{folder_prefix}{j:06d}" for j in range(folders)]
    taken = _taken(storage, scope, parent_id, top)
    if taken:
        raise AdminError(409, f"File already exists: {taken}")
    parents = [parent_id]
    if folders is not None:
        parents = model.add_many(storage, scope, [parent_id], top, is_dir=True,
                                 machine_id=machine_id)
    blobs = () if is_dir else _blobs(storage, scope, parents, names, size)
    # the six digits end every name, so one guess gives every name's type
    ids = model.add_many(storage, scope, parents, names, is_dir=is_dir,
                         content_type=model.guess_type(names[0]) if names else None,
                         machine_id=machine_id, blobs=blobs)
    if folders is not None:
        return {"created": len(parents) + len(ids), "parent_id": parent_id, "ids": parents}
    return {"created": count, "parent_id": parent_id, "ids": ids}


def _taken(storage, scope: str, parent_id: int, names: list[str]) -> str | None:
    """The first of ``names`` already in the folder, in one query."""
    if not names:
        return None
    wanted = set(names)
    for row in storage.all("SELECT name FROM vfiles WHERE scope = ? AND parent_id = ? "
                           "AND name BETWEEN ? AND ? ORDER BY name",
                           (scope, parent_id, min(names), max(names))):
        if row["name"] in wanted:
            return row["name"]
    return None


def _blobs(storage, scope: str, parents: list[int], names: list[str], size: int):
    """(blob, size) of each file to make, parent by parent: empty files share one blob,
    others hold their own deterministic bytes."""
    for parent_id in parents:
        for name in names:
            if size == 0:
                yield EMPTY_BLOB, 0
            else:
                yield storage.write_blob(generated(f"populate/{scope}/{parent_id}/{name}",
                                                   size))


def _populate_tenant(storage, data: dict) -> dict:
    count, prefix, size = _count_args(data)
    folder = tenant.check_path(data.get("path", ""), allow_empty=True)
    tenant.make_dirs(storage, folder)
    for i in range(count):
        path = f"{folder}/{prefix}{i:06d}" if folder else f"{prefix}{i:06d}"
        if data.get("is_dir"):
            tenant.make_dirs(storage, path)
        else:
            blob, written = storage.write_blob(generated(f"populate/tenant/{path}", size))
            tenant.put_file(storage, path, blob, written)
    return {"created": count, "path": folder}


@admin_route
async def populate(request: Request):
    data = await _json(request)
    storage = of(request).storage
    store = data.get("store")
    if store == "vagon":
        fill = _populate_vagon
    elif store == "tenant":
        fill = _populate_tenant
    else:
        raise AdminError(400, "store must be \"vagon\" or \"tenant\"")

    def fill_at_once():  # one transaction: 10,000 items in a moment, and all or none
        with storage.tx():
            return fill(storage, data)

    return JSONResponse(await anyio.to_thread.run_sync(fill_at_once))


@admin_route
async def machine_status(request: Request):
    storage = of(request).storage
    status = (await _json(request)).get("friendly_status")
    if not isinstance(status, str) or not status:
        raise AdminError(400, "friendly_status is required (e.g. \"running\", \"off\")")
    machine_id = request.path_params["machine_id"]
    if not storage.one("SELECT 1 FROM machines WHERE id = ?", (machine_id,)):
        raise AdminError(404, "Machine not found")
    storage.run("UPDATE machines SET friendly_status = ? WHERE id = ?", (status, machine_id))
    return JSONResponse({"id": machine_id, "friendly_status": status})


def routes() -> list[Route]:
    return [
        Route("/_admin/health", health, methods=["GET"], name="admin.health"),
        Route("/_admin/stats", stats, methods=["GET"], name="admin.stats"),
        Route("/_admin/stats/reset", stats_reset, methods=["POST"], name="admin.stats_reset"),
        Route("/_admin/faults", faults, methods=["GET", "PUT", "DELETE"], name="admin.faults"),
        Route("/_admin/bad-input", bad_input, methods=["GET", "PUT", "DELETE"],
              name="admin.bad_input"),
        Route("/_admin/expire-links", expire_links, methods=["POST"],
              name="admin.expire_links"),
        Route("/_admin/populate", populate, methods=["POST"], name="admin.populate"),
        Route("/_admin/vagon/machines/{machine_id:int}/status", machine_status,
              methods=["POST"], name="admin.machine_status"),
    ]
