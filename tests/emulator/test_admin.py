"""Faults, stats, populate, restart and the command line, through EmulatorProcess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import httpx
import pytest

from vagonfs.emulator.process import EmulatorError, EmulatorProcess

from support import populate

from .helpers import MiB, Vagon


def _tenant(emulator) -> httpx.Client:
    return httpx.Client(base_url=emulator.url, timeout=30,
                        headers={"Authorization": f"Bearer {emulator.api_key}"})


def test_status_faults_are_spent_after_times_and_carry_retry_after(vagon, emulator):
    emulator.set_faults({"rules": [{"route": "vagon.files", "status": 429, "retry_after": 2,
                                    "times": 2}]})
    for _ in range(2):
        refused = vagon.call("GET", "/files")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "2"
        assert refused.json()["client_code"] == 429  # Vagon's own error format
    assert vagon.call("GET", "/files").status_code == 200
    with _tenant(emulator) as tenant:
        emulator.set_faults({"rules": [{"route": "tenant.*", "status": 503, "times": 1}]})
        failed = tenant.get("/api/v1/files")
        assert failed.status_code == 503 and "error" in failed.json()
        assert tenant.get("/api/v1/files").status_code == 200
    emulator.set_faults({"rules": [{"route": "s3.*", "status": 500, "rate": 1.0}],
                         "seed": 3})
    created = vagon.ok("POST", "/files", {"file_name": "faulty", "object_type": "file",
                                          "parent_id": 0, "size": 1,
                                          "content_type": "text/plain"})
    put = httpx.put(created["upload_urls"][0], content=b"1")
    assert put.status_code == 500 and "<Code>InternalError</Code>" in put.text
    with pytest.raises(EmulatorError, match="unknown rule field"):
        emulator.set_faults({"rules": [{"route": "*", "bogus": 1}]})


def test_a_rule_is_not_spent_on_a_request_an_earlier_rule_already_fails(vagon, emulator):
    emulator.set_faults({"rules": [{"route": "vagon.files", "status": 503, "times": 1},
                                   {"route": "vagon.*", "status": 429, "times": 1},
                                   {"route": "vagon.files", "latency_ms": 1, "times": 2}]})
    assert [vagon.call("GET", "/files").status_code for _ in range(3)] == [503, 429, 200]
    left = [rule.get("times") for rule in emulator.admin("GET", "/_admin/faults")["rules"]]
    assert left == [0, 0, 0]  # the latency rule acted on the first two


def test_cut_after_truncates_downloads_and_part_uploads(vagon, emulator):
    data = os.urandom(3 * MiB)
    done = vagon.upload("cut.bin", data, chunk_mb=4)
    url = vagon.ok("GET", f"/files/{done['id']}/download")["url"]
    emulator.set_faults({"rules": [{"route": "s3.get_object", "cut_after": 100_000,
                                    "times": 1}]})
    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError):
        with httpx.stream("GET", url) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                received += chunk
    assert len(received) == 100_000 and bytes(received) == data[:100_000]
    assert httpx.get(url).content == data  # the rule is spent

    created = vagon.ok("POST", "/files", {"file_name": "cutpart", "object_type": "file",
                                          "parent_id": 0, "size": MiB,
                                          "content_type": "text/plain", "chunk_size": 1})
    emulator.set_faults({"rules": [{"route": "s3.part_put", "cut_after": 1000, "times": 1}]})
    with pytest.raises(httpx.TransportError):
        httpx.put(created["upload_urls"][0], content=b"p" * MiB)
    assert httpx.put(created["upload_urls"][0], content=b"p" * MiB).status_code == 200
    assert emulator.stats()["errors"]["s3.part_put"] >= 1


def test_latency_rule_delays(vagon, emulator):
    emulator.set_faults({"rules": [{"route": "vagon.capacity", "latency_ms": 300}]})
    response = vagon.call("GET", "/files/capacity")
    assert response.status_code == 200 and response.elapsed.total_seconds() >= 0.3
    assert emulator.admin("GET", "/_admin/faults")["rules"][0]["latency_ms"] == 300


def test_stats_count_by_route_and_admin_is_not_counted(vagon, emulator):
    emulator.reset_stats()
    vagon.call("GET", "/files")
    vagon.call("GET", "/files", secret="wrong")
    vagon.upload("counted.bin", b"c" * 1000)
    emulator.admin("GET", "/_admin/faults")
    stats = emulator.stats()
    assert stats["requests"] == {"vagon.files": 2, "vagon.create": 1, "s3.part_put": 1,
                                 "vagon.complete": 1}
    assert stats["errors"] == {"vagon.files": 1}
    assert stats["bytes_in"] >= 1000 and stats["bytes_out"] > 0
    emulator.reset_stats()
    assert emulator.stats()["requests"] == {}


def test_round_trips_count_a_chain_of_requests_once_and_side_by_side_ones_once(emulator):
    """Three requests one after another are three round trips; five sent
    together (each delayed, so they overlap) add one."""
    emulator.set_faults({"latency_ms": 100})
    try:
        emulator.reset_stats()
        with _tenant(emulator) as tenant:
            for _ in range(3):
                assert tenant.get("/api/v1/files").status_code == 200
            assert emulator.stats()["round_trips"] == 3

            def one() -> None:
                with _tenant(emulator) as own:
                    assert own.get("/api/v1/files").status_code == 200

            threads = [threading.Thread(target=one) for _ in range(5)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        stats = emulator.stats()
        assert stats["requests"] == {"tenant.list": 8}
        assert stats["round_trips"] == 4
        assert stats["connections"] == 6  # the first client's, then one each
        emulator.reset_stats()
        assert emulator.stats()["round_trips"] == 0
        assert emulator.stats()["connections"] == 0
    finally:
        emulator.clear_faults()


def test_admin_needs_the_key(emulator):
    assert httpx.get(f"{emulator.url}/_admin/health").json() == {"ok": True}
    assert httpx.get(f"{emulator.url}/_admin/stats").status_code == 401


def test_populate_tenant(emulator):
    made = populate(emulator, "tenant", path="pop", count=30, prefix="f", size=4096)
    assert made["created"] == 30
    populate(emulator, "tenant", path="pop", count=2, prefix="d", is_dir=True)
    with _tenant(emulator) as tenant:
        files = tenant.get("/api/v1/files", params={"path": "pop"}).json()["files"]
        assert len(files) == 32 and files[0] == {"name": "d000000", "path": "pop/d000000",
                                                 "is_dir": True}
        a = tenant.get("/api/v1/files/download", params={"path": "pop/f000001"}).content
        assert len(a) == 4096


def test_populate_refuses_a_null_count_with_400(emulator):
    with pytest.raises(EmulatorError, match="HTTP 400 .*count and size must be >= 0"):
        populate(emulator, "tenant", count=None)


def test_restart_keeps_data_and_port(emulator_factory):
    emulator = emulator_factory("--link-ttl", "600")
    vagon = Vagon(emulator)
    done = vagon.upload("kept.txt", b"still here")
    url = vagon.ok("GET", f"/files/{done['id']}/download")["url"]
    before = emulator.url
    emulator.restart()
    assert emulator.url == before
    assert httpx.get(url).content == b"still here"  # links survive: the key is on disk
    assert Vagon(emulator).find("kept.txt")["id"] == done["id"]
    assert emulator.stats()["requests"] == {"s3.get_object": 1, "vagon.files": 1}


def test_credentials_come_from_args_but_travel_in_the_environment(tmp_path):
    with EmulatorProcess(tmp_path / "d", args=("--api-key", "k-123", "--api-secret=s-456",
                                               "--store", "tenant")) as emulator:
        assert (emulator.api_key, emulator.api_secret) == ("k-123", "s-456")
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert "s-456" not in ps and "k-123" not in ps
        with _tenant(emulator) as tenant:
            assert tenant.get("/api/v1/files").status_code == 200
            assert tenant.get("/api/v1/sessions").status_code == 404  # not served


def test_sigterm_stops_cleanly_and_removes_the_temporary_dir(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "vagonfs", "emulator", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.stdout is not None  # stdout=PIPE
    line = proc.stdout.readline()
    assert line.startswith("vagonfs emulator listening on http://127.0.0.1:")
    assert [p.name[:17] for p in tmp_path.iterdir()] == ["vagonfs-emulator-"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert proc.stdout.read() == ""  # exactly one line
    assert list(tmp_path.iterdir()) == []


def test_bad_command_line_is_reported(tmp_path):
    with pytest.raises(EmulatorError, match="faults"):
        EmulatorProcess(tmp_path / "x", args=("--faults", "{nope")).start()


def test_tenant_download_cut_and_initial_faults_from_the_command_line(emulator_factory):
    emulator = emulator_factory("--faults", '{"rules": [{"route": "tenant.download", '
                                            '"cut_after": 5000, "times": 1}]}')
    with _tenant(emulator) as tenant:
        tenant.post("/api/v1/files/upload", data={"path": ""},
                    files={"files": ("f.bin", b"t" * 20000)})
        with pytest.raises(httpx.RemoteProtocolError):
            tenant.get("/api/v1/files/download", params={"path": "f.bin"})
        whole = tenant.get("/api/v1/files/download", params={"path": "f.bin"})
        assert len(whole.content) == 20000
    assert emulator.stats()["errors"] == {"tenant.download": 1}


def test_public_url_goes_into_links(emulator_factory):
    emulator = emulator_factory("--public-url", "http://files.example:9000/")
    vagon = Vagon(emulator)
    created = vagon.ok("POST", "/files", {"file_name": "p", "object_type": "file",
                                          "parent_id": 0, "size": 1,
                                          "content_type": "text/plain"})
    assert created["upload_urls"][0].startswith("http://files.example:9000/_s3/parts/")


def test_machine_status_and_archive_abort(demo_emulator):
    vagon = Vagon(demo_emulator)
    demo_emulator.admin("POST", "/_admin/vagon/machines/101/status",
                        json={"friendly_status": "running"})
    try:
        assert vagon.ok("POST", "/machines/101/list-content", {"path": "C:\\"})["content"]
    finally:
        demo_emulator.admin("POST", "/_admin/vagon/machines/101/status",
                            json={"friendly_status": "off"})
    demo_emulator.set_faults({"archive_delay_ms": 2000})
    try:
        docs = vagon.find("Docs")
        job = vagon.ok("POST", "/files/download", {"file_ids": [docs["id"]]})
        vagon.ok("DELETE", f"/files/download/{job['download_id']}")
        status = vagon.ok("GET", f"/files/download/{job['download_id']}")
        assert (status["status"], status["url"]) == ("aborted", None)
    finally:
        demo_emulator.clear_faults()
