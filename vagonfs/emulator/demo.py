"""The demo data set (``--seed-demo``): a bit of everything, the same bytes every run.

Enough to try each view of a mount: nested folders, a listing longer than two
pages, media files large enough to watch read-ahead (64 MiB and 16 MiB, made
by ``generated`` in milliseconds), machines with tasks and their root
folders, session recordings, a tenant tree and two Shannon sessions with text
and binary files.
"""

from __future__ import annotations

import mimetypes

from vagonfs.emulator import tenant
from vagonfs.emulator.storage import MiB, Storage, generated
from vagonfs.emulator.vagon import model
from vagonfs.emulator.vagon.machines import add_machine, add_task

CREATED = "2026-02-05T10:10:22Z"
_PNG = b"\x89PNG\r\n\x1a\n"


def _text(*lines: str) -> list[bytes]:
    return ["\n".join(lines).encode() + b"\n"]


def _png(seed: str, size: int) -> list[bytes]:
    return [_PNG + b"".join(generated(seed, size - len(_PNG)))]


def _tree(storage: Storage, scope: str, parent: int, tree: dict, machine_id=None) -> None:
    """Folders (dict values) and files (byte-chunk lists) under ``parent``."""
    for name, content in tree.items():
        if isinstance(content, dict):
            folder = model.add_dir(storage, scope, parent, name, machine_id)
            _tree(storage, scope, folder, content, machine_id)
        else:
            model.add_file(storage, scope, parent, name, content, machine_id=machine_id)


def _vagon(storage: Storage) -> None:
    shared = {
        "Projects": {
            "Alpha": {
                "design.txt": _text("Alpha design", "============", "",
                                    "Three render passes, one compositing step."),
                "notes.md": _text("# Alpha notes", "", "- review on Friday",
                                  "- export at 4K"),
                "assets": {f"texture-{i:02d}.png": _png(f"demo/alpha/texture-{i}", 48_000 + i)
                           for i in range(1, 5)},
            },
            "Beta": {"level-1": {"level-2": {"level-3": {
                "deep.txt": _text("Three folders down.")}}}},
        },
        "Docs": {"README.txt": _text("Vagon Files demo data.",
                                     "Everything here lives in the vagonfs emulator.")},
        "Media": {
            "sample-video.bin": generated("demo/media/sample-video", 64 * MiB),
            "large-dataset.bin": generated("demo/media/large-dataset", 16 * MiB),
        },
        "Big folder": {f"item-{i:03d}.txt": _text(f"small file number {i}")
                       for i in range(250)},
    }
    _tree(storage, model.SHARED, 0, shared)

    add_machine(storage, 100, "Computer #100", "running", 25, CREATED)
    add_machine(storage, 101, "Computer #101", "off", 250, CREATED)
    alpha = add_task(storage, 100, "Project-Alpha", "active", CREATED)
    _tree(storage, model.machine_scope(100), alpha, {
        "scene.blend": generated("demo/m100/scene", 300_000),
        "renders": {f"frame-{i:04d}.png": _png(f"demo/m100/frame-{i}", 20_000)
                    for i in range(1, 4)}}, 100)
    outputs = add_task(storage, 101, "Outputs", "inactive", CREATED)
    _tree(storage, model.machine_scope(101), outputs, {
        "summary.csv": _text("frame,seconds", "1,12.5", "2,11.9")}, 101)
    render = add_task(storage, 101, "Render-01", "inactive", CREATED)
    _tree(storage, model.machine_scope(101), render, {
        "render-01.exr": generated("demo/m101/render-01", 200_000)}, 101)
    for machine_id in (100, 101):
        _tree(storage, model.machine_scope(machine_id), 0, {
            "Personal": {"todo.txt": _text(f"things to do on machine {machine_id}")}},
            machine_id)
        folder = model.add_dir(storage, model.RECORDINGS, 0, f"Computer #{machine_id}",
                               machine_id)
        _tree(storage, model.RECORDINGS, folder, {
            f"session-2026-02-0{i}.mp4": generated(f"demo/rec/{machine_id}/{i}", 250_000)
            for i in range(1, 4)}, machine_id)


def _tenant(storage: Storage) -> None:
    files = {
        "README.md": b"# Tenant store\n\nDemo files of the vagonfs emulator.\n",
        "docs/reports/report.pdf": b"%PDF-1.4\n" + b"".join(generated("demo/t/report", 40_000)),
        "docs/reports/images/chart.png": _png("demo/t/chart", 12_000)[0],
        "data/sales.csv": b"month,amount\n2026-01,1200\n2026-02,1350\n",
        "data/customers.csv": b"id,name\n1,Ada\n2,Grace\n3,Linus\n",
    }
    for path, content in files.items():
        blob, size = storage.write_blob([content])
        tenant.put_file(storage, path, blob, size)


def _shannon(storage: Storage) -> None:
    for n, title in ((1, "Quarterly sales analysis"), (2, "Log anomaly scan")):
        session_id = f"sess-demo-{n:04d}"
        storage.run("INSERT INTO sessions (id, title, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?)", (session_id, title, CREATED, CREATED))
        files = {
            "analysis.py": f"# session {n}\nimport csv\nprint('analysis {n}')\n".encode(),
            "notes.md": f"# {title}\n\nNotes written by the agent.\n".encode(),
            "output/results.csv": f"metric,value\nrows,{100 * n}\nscore,0.{n}7\n".encode(),
            "output/chart.png": _png(f"demo/shannon/{n}/chart", 9_000)[0],
        }
        folders = {"output"}
        for folder in sorted(folders):
            storage.run("INSERT INTO sfiles (session_id, path, parent, name, is_dir, "
                        "modified_at) VALUES (?, ?, '', ?, 1, ?)",
                        (session_id, folder, folder, CREATED))
        for path, content in files.items():
            blob, size = storage.write_blob([content])
            parent, _, name = path.rpartition("/")
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            storage.run("INSERT INTO sfiles (session_id, path, parent, name, is_dir, size, "
                        "blob, content_type, modified_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)",
                        (session_id, path, parent, name, size, blob, kind, CREATED))


def seed(storage: Storage) -> None:
    _vagon(storage)
    _tenant(storage)
    _shannon(storage)
