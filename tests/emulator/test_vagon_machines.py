"""The demo data set through Vagon: machines, tasks, task folders, recordings."""

from __future__ import annotations

import httpx

from .helpers import MiB, Vagon, sha256


def _machine_names(vagon) -> dict:
    machines = vagon.ok("GET", "/machines")["machines"]
    return {m["attributes"]["name"]: m for m in machines}


def test_machines_and_tasks_are_json_api(demo_emulator):
    vagon = Vagon(demo_emulator)
    machines = _machine_names(vagon)
    running = machines["Computer #100"]
    assert running["id"] == "100" and running["type"] == "machine"
    assert running["attributes"]["friendly_status"] == "running"
    assert running["attributes"]["task"]["uid"] == "Project-Alpha"
    assert machines["Computer #101"]["attributes"]["task"] is None
    tasks = vagon.ok("GET", "/machines/101/tasks")
    assert tasks["count"] == 2 and tasks["next_page"] is None
    uids = [t["attributes"]["uid"] for t in tasks["tasks"]]
    assert uids == ["Outputs", "Render-01"]
    assert tasks["tasks"][0]["attributes"]["snapshot_destination"] == "V:\\Outputs"
    missing = vagon.call("GET", "/machines/7/tasks")
    assert (missing.status_code, missing.json()["message"]) == (404, "Machine not found")


def test_task_folders_live_in_the_machine_files_and_cannot_be_deleted(demo_emulator):
    vagon = Vagon(demo_emulator)
    task = vagon.ok("GET", "/machines/101/tasks")["tasks"][1]
    only = vagon.ok("GET", "/machines/101/files", params={"task_id": task["id"]})
    assert [f["name"] for f in only["files"]] == ["Render-01"]
    folder = only["files"][0]
    everything = vagon.ok("GET", "/machines/101/files")
    assert {f["name"] for f in everything["files"]} == {"Outputs", "Render-01", "Personal"}
    inside = vagon.ok("GET", "/machines/101/files", params={"parent_id": folder["id"]})
    assert [f["name"] for f in inside["files"]] == ["render-01.exr"]
    root = vagon.call("DELETE", f"/files/{folder['id']}")
    assert (root.status_code, root.json()["client_code"], root.json()["message"]) == \
        (400, 450, "Root folder cannot be deleted")
    shared = vagon.call("GET", "/files", params={"parent_id": folder["id"]})
    assert shared.status_code == 404  # another scope's folder


def test_list_content_needs_a_running_machine(demo_emulator):
    vagon = Vagon(demo_emulator)
    off = vagon.call("POST", "/machines/101/list-content", {"path": "C:\\Users"})
    assert (off.status_code, off.json()["client_code"], off.json()["message"]) == \
        (400, 4204, "Machine is not running")
    content = vagon.ok("POST", "/machines/100/list-content", {"path": "C:\\Users"})["content"]
    assert {"path": "C:\\Users\\Administrator", "name": "Administrator",
            "is_directory": True} in content


def test_shared_demo_files_recordings_and_capacity(demo_emulator):
    vagon = Vagon(demo_emulator)
    root = vagon.ok("GET", "/files")
    assert [f["name"] for f in root["files"]] == ["Big folder", "Docs", "Media", "Projects"]
    big = vagon.find("Big folder")
    assert vagon.listing(big["id"])["count"] == 250
    media = vagon.find("Media")
    video = vagon.find("sample-video.bin", media["id"])
    assert video["size"] == 64 * MiB
    link = vagon.ok("GET", f"/files/{video['id']}/download")
    first = httpx.get(link["url"], headers={"Range": f"bytes=0-{MiB - 1}"}).content
    assert len(first) == MiB
    recordings = vagon.ok("GET", "/session-recordings", params={"machine_id": 100})
    assert [f["name"] for f in recordings["files"]] == ["Computer #100"]
    inside = vagon.ok("GET", "/session-recordings",
                      params={"parent_id": recordings["files"][0]["id"]})
    assert all(f["name"].endswith(".mp4") for f in inside["files"])
    read_only = vagon.call("DELETE", f"/files/{inside['files'][0]['id']}")
    assert read_only.json()["client_code"] == 4710
    capacity = vagon.ok("GET", "/files/capacity", params={"machine_id": 100})
    assert capacity["total"] == 25 * 1024 ** 3 and capacity["team"]["in_use"] > 80 * MiB


def test_demo_bytes_are_the_same_every_run(demo_emulator, emulator_factory):
    other = emulator_factory("--seed-demo")
    hashes = []
    for emu in (demo_emulator, other):
        vagon = Vagon(emu)
        docs = vagon.find("Docs")
        readme = vagon.find("README.txt", docs["id"])
        link = vagon.ok("GET", f"/files/{readme['id']}/download")
        media = vagon.find("Media")
        data = vagon.find("large-dataset.bin", media["id"])
        big = vagon.ok("GET", f"/files/{data['id']}/download")
        hashes.append((sha256(httpx.get(link["url"]).content),
                       sha256(httpx.get(big["url"]).content)))
    assert hashes[0] == hashes[1]


def test_wrapped_items(emulator_factory):
    emulator = emulator_factory("--vagon-items", "wrapped", "--seed-demo")
    vagon = Vagon(emulator)
    item = vagon.ok("GET", "/files")["files"][0]
    assert item["type"] == "directory" and isinstance(item["id"], str)
    assert item["attributes"]["name"] == "Big folder"
