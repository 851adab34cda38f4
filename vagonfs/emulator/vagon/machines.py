"""Vagon machines, their tasks and a running machine's own disk (seed 001 shapes).

Machines and tasks come as JSON:API objects, as the real API sends them.
Each task owns a root folder (named after its uid) in its machine's files;
``list-content`` answers from a small fixed Windows-like tree, and only while
the machine is running.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from vagonfs.emulator.context import of
from vagonfs.emulator.vagon import model
from vagonfs.emulator.vagon.wire import (PREFIX, VagonError, page_args, page_reply, reply,
                                         vagon_route)

# what list-content shows of a running machine's disk
_DISK = {
    "C:\\": ["Program Files", "Users", "Windows"],
    "C:\\Users": ["Administrator", "Public"],
    "C:\\Users\\Administrator": ["Desktop", "Documents", "Downloads"],
    "C:\\Users\\Administrator\\Desktop": ["Outputs", "notes.txt"],
    "C:\\Users\\Administrator\\Desktop\\Outputs": ["render-0001.png", "render-0002.png"],
    "C:\\Users\\Administrator\\Documents": ["project.blend"],
    "C:\\Users\\Administrator\\Downloads": [],
    "C:\\Users\\Public": [],
    "C:\\Program Files": [],
    "C:\\Windows": [],
}


def add_machine(storage, machine_id: int, name: str, status: str, storage_gb: int,
                created_at: str) -> None:
    storage.run("INSERT INTO machines (id, name, friendly_status, file_storage_size, "
                "created_at) VALUES (?, ?, ?, ?, ?)",
                (machine_id, name, status, storage_gb, created_at))


def add_task(storage, machine_id: int, uid: str, status: str, created_at: str) -> int:
    """A task and its root folder in the machine's files; the folder's id."""
    task_id = storage.run("INSERT INTO tasks (machine_id, uid, status, created_at) "
                          "VALUES (?, ?, ?, ?)", (machine_id, uid, status, created_at))
    folder = model.add_dir(storage, model.machine_scope(machine_id), 0, uid, machine_id,
                           is_root=True, task_id=task_id)
    storage.run("UPDATE tasks SET folder_id = ? WHERE id = ?", (folder, task_id))
    return folder


def _task_attributes(storage, task) -> dict:
    size = sum(row["size"] for row in model.subtree(storage, task["folder_id"])
               if row["object_type"] == "file" and row["status"] == "completed")
    return {"uid": task["uid"], "created_at": task["created_at"], "status": task["status"],
            "source_path": f"C:\\Users\\Administrator\\Desktop\\{task['uid']}",
            "snapshot_destination": f"V:\\{task['uid']}", "folder_size": size}


def _machine_object(storage, row) -> dict:
    active = storage.one("SELECT * FROM tasks WHERE machine_id = ? AND status = 'active'",
                         (row["id"],))
    return {"id": str(row["id"]), "type": "machine", "attributes": {
        "name": row["name"], "last_session_start_at": None, "auto_stop_threshold": 900,
        "file_storage_size": row["file_storage_size"], "disk_size": 75,
        "network_credit": 10737418240, "assigned_image_id": row["id"],
        "assigned_image_name": f"Template #{row['id']}", "region": "dublin",
        "machine_type": "Planet", "remaining_usage": 0, "deposited_usage": 0, "user": None,
        "friendly_status": row["friendly_status"],
        "permissions": {"public_internet_access": True,
                        "can_download_from_vagon_workstation": True,
                        "can_upload_to_workstation": True,
                        "analytics_collection_enabled": False, "clipboard_enabled": True,
                        "screen_recording_enabled": False, "input_recording_enabled": False},
        "task": ({"id": active["id"], "uid": active["uid"], "created_at": active["created_at"]}
                 if active else None),
        "latest_image_status": "ready"}}


def _machine_row(request: Request):
    try:
        machine_id = int(request.path_params["machine_id"])
    except ValueError:
        raise VagonError(400, "machine id must be an integer") from None
    row = of(request).storage.one("SELECT * FROM machines WHERE id = ?", (machine_id,))
    if row is None:
        raise VagonError(404, "Machine not found")
    return row


@vagon_route
async def machines(request: Request, _data):
    storage = of(request).storage
    page, per_page = page_args(request)
    where, args = "1", []
    if request.query_params.get("q"):
        where, args = "instr(casefold(name), casefold(?)) > 0", [request.query_params["q"]]
    count = storage.number(f"SELECT COUNT(*) FROM machines WHERE {where}", args)
    rows = storage.all(f"SELECT * FROM machines WHERE {where} ORDER BY id LIMIT ? OFFSET ?",
                       [*args, per_page, (page - 1) * per_page])
    return reply(page_reply("machines", [_machine_object(storage, r) for r in rows], count,
                            page, per_page))


@vagon_route
async def tasks(request: Request, _data):
    storage = of(request).storage
    machine = _machine_row(request)
    page, per_page = page_args(request)
    count = storage.number("SELECT COUNT(*) FROM tasks WHERE machine_id = ?", (machine["id"],))
    rows = storage.all("SELECT * FROM tasks WHERE machine_id = ? ORDER BY id LIMIT ? OFFSET ?",
                       (machine["id"], per_page, (page - 1) * per_page))
    items = [{"id": str(t["id"]), "type": "task", "attributes": _task_attributes(storage, t)}
             for t in rows]
    return reply(page_reply("tasks", items, count, page, per_page))


@vagon_route
async def list_content(request: Request, data: dict):
    machine = _machine_row(request)
    if machine["friendly_status"] != "running":
        raise VagonError(400, "Machine is not running", 4204)
    path = data.get("path")
    if not isinstance(path, str) or not path:
        raise VagonError(400, "path is required (e.g. \"C:\\\\Users\")")
    key = path if path.endswith(":\\") else path.rstrip("\\")
    if key not in _DISK:
        raise VagonError(404, "Path not found")
    base = key if key.endswith("\\") else key + "\\"
    content = [{"path": base + name, "name": name, "is_directory": base + name in _DISK}
               for name in _DISK[key]]
    return reply({"content": content})


def routes() -> list[Route]:
    p = PREFIX
    return [
        Route(f"{p}/machines", machines, methods=["GET"], name="vagon.machines"),
        Route(f"{p}/machines/{{machine_id}}/tasks", tasks, methods=["GET"], name="vagon.tasks"),
        Route(f"{p}/machines/{{machine_id}}/list-content", list_content, methods=["POST"],
              name="vagon.list_content"),
    ]
