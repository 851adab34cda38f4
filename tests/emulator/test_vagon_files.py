"""Vagon Files over real HTTP: pages, uploads with parts, links, errors, archives."""

from __future__ import annotations

import io
import os
import zipfile

import httpx
import pytest

from support import populate, wait_until

from .helpers import MiB, sha256


def _folder(vagon, name: str, parent_id: int = 0) -> int:
    return vagon.ok("POST", "/files", {"file_name": name, "object_type": "directory",
                                       "parent_id": parent_id})["id"]


def test_pages_count_clamp_and_order_folders_first(vagon, emulator):
    folder = _folder(vagon, "paged")
    populate(emulator, parent_id=folder, count=120, prefix="f", size=3)
    made = populate(emulator, parent_id=folder, count=2, prefix="zdir", object_type="directory")
    assert made["created"] == 2 and made["parent_id"] == folder and len(made["ids"]) == 2
    first = vagon.listing(folder)
    assert (first["count"], first["page"], first["next_page"]) == (122, 1, 2)
    assert len(first["files"]) == 20  # the default per_page
    assert [f["name"] for f in first["files"][:3]] == ["zdir000000", "zdir000001", "f000000"]
    assert first["current"]["id"] == folder
    clamped = vagon.listing(folder, per_page=1000, page=3)  # cap is 50 here
    assert len(clamped["files"]) == 22 and clamped["next_page"] is None
    assert clamped["files"][-1]["name"] == "f000119"
    assert vagon.listing(folder, q="F00011")["count"] == 10
    bad = vagon.call("GET", "/files", params={"page": "x"})
    assert bad.status_code == 400 and "page" in bad.json()["message"]
    assert vagon.call("GET", "/files", params={"parent_id": 999999}).json()["message"] == \
        "Parent folder not found"


def test_upload_complete_link_and_ranged_get_round_trip(vagon):
    data = os.urandom(2 * MiB + 12345)
    done = vagon.upload("round.bin", data)
    assert done["size"] == len(data) and done["name"] == "round.bin"
    item = vagon.find("round.bin")
    assert item["status"] == "completed" and item["size"] == len(data)
    link = vagon.ok("GET", f"/files/{done['id']}/download")
    assert link["expires_at"].endswith("Z") and link["size"] == len(data)
    assert sha256(httpx.get(link["url"]).content) == sha256(data)
    part = httpx.get(link["url"], headers={"Range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == data[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    tail = httpx.get(link["url"], headers={"Range": "bytes=-10"})
    assert tail.content == data[-10:]
    assert httpx.get(link["url"], headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    head = httpx.head(link["url"])
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
    # the complete's own link works too, and a repeated complete answers the same
    assert sha256(httpx.get(done["download_url"]).content) == sha256(data)


def test_empty_file_has_one_part(vagon):
    done = vagon.upload("empty.txt", b"")
    assert done["size"] == 0
    link = vagon.ok("GET", f"/files/{done['id']}/download")
    assert httpx.get(link["url"]).content == b""


def test_overwrite_keeps_id_changes_uid_and_old_content_stays_readable(vagon):
    first = vagon.upload("over.txt", b"old content")
    before = vagon.find("over.txt")
    created = vagon.ok("POST", "/files", {
        "file_name": "over.txt", "object_type": "file", "parent_id": 0, "size": 11,
        "content_type": "text/plain", "chunk_size": 1, "overwrite": True})
    assert created["id"] == first["id"] and created["uid"] != first["uid"]
    link = vagon.ok("GET", f"/files/{first['id']}/download")
    assert httpx.get(link["url"]).content == b"old content"  # until complete
    put = httpx.put(created["upload_urls"][0], content=b"new content")
    parts = {"parts": [{"part_number": 1, "etag": put.headers["etag"]}]}
    done = vagon.ok("POST", f"/files/{created['id']}/complete", parts)
    assert done["id"] == first["id"] and done["uid"] == created["uid"]
    again = vagon.ok("POST", f"/files/{created['id']}/complete", parts)  # a lost reply
    assert again["uid"] == done["uid"]
    after = vagon.find("over.txt")
    assert after["id"] == before["id"] and after["uid"] != before["uid"]
    link = vagon.ok("GET", f"/files/{first['id']}/download")
    assert httpx.get(link["url"]).content == b"new content"
    taken = vagon.call("POST", "/files", {"file_name": "over.txt", "object_type": "file",
                                          "parent_id": 0, "size": 1,
                                          "content_type": "text/plain"})
    assert (taken.status_code, taken.json()["message"]) == (409, "File already exists")


def test_complete_checks_parts_and_sizes(vagon):
    created = vagon.ok("POST", "/files", {
        "file_name": "parts.bin", "object_type": "file", "parent_id": 0,
        "size": MiB + 10, "content_type": "application/octet-stream", "chunk_size": 1})
    assert len(created["upload_urls"]) == 2
    listed = vagon.find("parts.bin")
    assert listed["status"] == "uploading"
    not_ready = vagon.call("GET", f"/files/{created['id']}/download")
    assert (not_ready.status_code, not_ready.json()["message"]) == (400, "File is not ready")
    one = httpx.put(created["upload_urls"][0], content=b"x" * MiB)
    assert one.headers["etag"].startswith('"') and one.headers["etag"].endswith('"')
    complete = f"/files/{created['id']}/complete"
    missing = vagon.call("POST", complete, {"parts": [
        {"part_number": 1, "etag": one.headers["etag"]}]})
    assert (missing.status_code, missing.json()["message"]) == (400, "Invalid part")
    two = httpx.put(created["upload_urls"][1], content=b"y" * 9)  # one byte short
    wrong_etag = vagon.call("POST", complete, {"parts": [
        {"part_number": 1, "etag": one.headers["etag"]}, {"part_number": 2, "etag": '"0"'}]})
    assert wrong_etag.json()["message"] == "Invalid part"
    parts = {"parts": [{"part_number": 1, "etag": one.headers["etag"]},
                       {"part_number": 2, "etag": two.headers["etag"]}]}
    short = vagon.call("POST", complete, parts)
    assert (short.status_code, short.json()["message"]) == (400, "File size mismatch")
    two = httpx.put(created["upload_urls"][1], content=b"y" * 10)  # a PUT again replaces
    parts["parts"][1]["etag"] = two.headers["etag"]
    assert vagon.call("POST", complete, parts).status_code == 200


def test_parts_land_at_their_offsets_and_a_changed_part_needs_its_new_etag(vagon, emulator):
    """Parts go straight into the upload's object, part n at (n - 1) x chunk: PUT
    out of order they still read back in order; a part PUT again, or cut short,
    takes its earlier ETag with it; a last part too long is cut off at complete."""
    data = os.urandom(2 * MiB + 777)
    created = vagon.ok("POST", "/files", {
        "file_name": "offsets.bin", "object_type": "file", "parent_id": 0,
        "size": len(data), "content_type": "application/octet-stream", "chunk_size": 1})
    urls = created["upload_urls"]
    pieces = [data[i * MiB:(i + 1) * MiB] for i in range(3)]
    etags = [""] * 3
    for i in (2, 0, 1):
        etags[i] = httpx.put(urls[i], content=pieces[i] + (b"!" * 5 if i == 2 else b"")
                             ).headers["etag"]
    old_first = etags[0]
    emulator.set_faults({"rules": [{"route": "s3.part_put", "cut_after": 1000, "times": 1}]})
    with pytest.raises(httpx.TransportError):
        httpx.put(urls[0], content=b"z" * MiB)
    complete = f"/files/{created['id']}/complete"

    def parts(tags):
        return {"parts": [{"part_number": n, "etag": t} for n, t in enumerate(tags, 1)]}

    stale = vagon.call("POST", complete, parts(etags))
    assert (stale.status_code, stale.json()["message"]) == (400, "Invalid part")
    assert vagon.call("POST", complete, parts(etags[:2] + ['"x"'])).status_code == 400
    etags[0] = httpx.put(urls[0], content=pieces[0]).headers["etag"]
    assert etags[0] != old_first
    assert vagon.call("POST", complete, parts(etags)).json()["message"] == \
        "File size mismatch"  # the last part is 5 bytes too long
    etags[2] = httpx.put(urls[2], content=pieces[2]).headers["etag"]
    done = vagon.ok("POST", complete, parts(etags))
    link = vagon.ok("GET", f"/files/{done['id']}/download")["url"]
    assert sha256(httpx.get(link).content) == sha256(data)
    late = httpx.put(urls[1], content=pieces[1])
    assert late.status_code == 404 and "NoSuchUpload" in late.text


def test_quota_is_checked_at_create_and_at_complete(emulator_factory):
    from .helpers import Vagon

    emulator = emulator_factory("--vagon-quota", "100")
    vagon = Vagon(emulator)
    spec = {"object_type": "file", "parent_id": 0, "content_type": "text/plain", "size": 60}
    full = vagon.call("POST", "/files", {**spec, "file_name": "big", "size": 101})
    assert (full.status_code, full.json()["client_code"], full.json()["message"]) == \
        (507, 507, "Storage full")
    a = vagon.ok("POST", "/files", {**spec, "file_name": "a"})
    b = vagon.ok("POST", "/files", {**spec, "file_name": "b"})
    etags = [httpx.put(x["upload_urls"][0], content=b"z" * 60).headers["etag"] for x in (a, b)]
    vagon.ok("POST", f"/files/{a['id']}/complete",
             {"parts": [{"part_number": 1, "etag": etags[0]}]})
    over = vagon.call("POST", f"/files/{b['id']}/complete",
                      {"parts": [{"part_number": 1, "etag": etags[1]}]})
    assert (over.status_code, over.json()["message"]) == (507, "Storage limit exceeded")
    capacity = vagon.ok("GET", "/files/capacity")
    assert (capacity["total"], capacity["in_use"]) == (100, 60)
    assert capacity["team"] == {"total": 100, "in_use": 60}


@pytest.mark.parametrize("name", ["", "a/b", "a:b", "x" * 256, "tab\there", 'q"'])
def test_invalid_names(vagon, name):
    response = vagon.call("POST", "/files", {"file_name": name, "object_type": "directory",
                                             "parent_id": 0})
    assert (response.status_code, response.json()["message"]) == (400, "Invalid file name")


def test_expired_and_tampered_links_are_403(vagon, emulator):
    done = vagon.upload("linked.txt", b"hello")
    url = vagon.ok("GET", f"/files/{done['id']}/download")["url"]
    tampered = url.replace("X-Amz-Expires=60", "X-Amz-Expires=6000")
    refused = httpx.get(tampered)
    assert refused.status_code == 403 and "<Code>SignatureDoesNotMatch</Code>" in refused.text
    emulator.expire_links()
    expired = httpx.get(url)
    assert expired.status_code == 403
    assert "<Code>AccessDenied</Code><Message>Request has expired</Message>" in expired.text
    fresh = vagon.ok("GET", f"/files/{done['id']}/download")["url"]
    assert httpx.get(fresh).content == b"hello"


def test_delete_is_recursive(vagon):
    top = _folder(vagon, "doomed")
    inner = _folder(vagon, "inner", top)
    vagon.upload("leaf.txt", b"leaf", parent_id=inner)
    vagon.ok("DELETE", f"/files/{top}")
    gone = vagon.call("GET", "/files", params={"parent_id": inner})
    assert (gone.status_code, gone.json()["message"]) == (404, "Parent folder not found")
    assert vagon.call("DELETE", f"/files/{top}").json()["message"] == "File not found"


def test_archive_job_builds_a_zip_with_relative_paths(vagon):
    top = _folder(vagon, "zipme")
    sub = _folder(vagon, "sub", top)
    vagon.upload("a.txt", b"AAA", parent_id=top)
    vagon.upload("b.txt", b"BBB", parent_id=sub)
    loose = vagon.upload("loose.txt", b"L")
    job = vagon.ok("POST", "/files/download", {"file_ids": [top, loose["id"]]})
    assert job["status"] == "processing" and job["url"] is None
    def finished() -> dict:
        status = vagon.ok("GET", f"/files/download/{job['download_id']}")
        return {} if status["status"] == "processing" else status

    status = wait_until(finished, 10, message="the archive is still processing")
    assert status["status"] == "completed" and status["name"] == "project-files.zip"
    archive = zipfile.ZipFile(io.BytesIO(httpx.get(status["url"]).content))
    assert sorted(archive.namelist()) == ["loose.txt", "zipme/a.txt", "zipme/sub/b.txt"]
    assert archive.read("zipme/sub/b.txt") == b"BBB"
    late = vagon.call("DELETE", f"/files/download/{job['download_id']}")
    assert (late.status_code, late.json()["message"]) == (400, "Download cannot be aborted")
    empty = _folder(vagon, "nothing")
    refused = vagon.call("POST", "/files/download", {"file_ids": [empty]})
    assert refused.json()["message"] == "Directory is empty or has no completed files"
    assert vagon.call("POST", "/files/download", {"file_ids": []}).json()["message"] == \
        "No files or directory provided for download"
    assert vagon.call("POST", "/files/download", {"file_ids": [987654]}).status_code == 404
    assert vagon.call("GET", "/files/download/nope").status_code == 404


def test_q_is_case_insensitive_beyond_ascii(vagon):
    top = _folder(vagon, "unicode")
    _folder(vagon, "Ärger im Büro", top)
    _folder(vagon, "other", top)
    assert [f["name"] for f in vagon.listing(top, q="äRGER")["files"]] == ["Ärger im Büro"]
