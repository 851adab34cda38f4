"""Big Vagon folders: every page is exactly what the wire contract says, whether it
is asked in order (served from the previous page's key) or out of order, before
and after the folder changes; populate builds big folders and trees in one call."""

from __future__ import annotations

import httpx
import pytest

from vagonfs.emulator.process import EmulatorError
from support import populate

FILES, FOLDERS = 5000, 70  # page 2 starts among the folders and ends among the files
PER_PAGE = 50  # the module emulator's cap


def _folder(vagon, name: str, parent_id: int = 0) -> int:
    return vagon.ok("POST", "/files", {"file_name": name, "object_type": "directory",
                                       "parent_id": parent_id})["id"]


def _big(vagon, emulator, name: str) -> int:
    folder = _folder(vagon, name)
    populate(emulator, parent_id=folder, count=FILES, prefix="f")
    populate(emulator, parent_id=folder, count=FOLDERS, prefix="sub", object_type="directory")
    return folder


def _all_names() -> list[str]:
    """What ``_big`` made, in the contract's order: folders first, then by name."""
    return [f"sub{i:06d}" for i in range(FOLDERS)] + [f"f{i:06d}" for i in range(FILES)]


def _expected(names: list[str], page: int) -> list[str]:
    return names[(page - 1) * PER_PAGE:page * PER_PAGE]


def _names(vagon, folder: int, page: int, **params) -> tuple[list[str], dict]:
    reply = vagon.listing(folder, page=page, per_page=PER_PAGE, **params)
    return [f["name"] for f in reply["files"]], reply


def test_pages_in_order_and_out_of_order_are_the_contract_pages(vagon, emulator):
    folder = _big(vagon, emulator, "large")
    names = _all_names()
    last = -(-len(names) // PER_PAGE)
    seen = []
    page = 1
    while page:  # the way a client walks: each page after the one before
        got, reply = _names(vagon, folder, page)
        assert got == _expected(names, page), page
        assert reply["count"] == len(names) and reply["page"] == page
        seen += got
        page = reply["next_page"]
    assert seen == names
    # asked out of order: the start, the middle (folders to files), the end
    for page in (last, 1, last // 2, 2, last - 1):
        got, reply = _names(vagon, folder, page)
        assert got == _expected(names, page), page
        assert reply["next_page"] == (page + 1 if page < last else None)
    assert _names(vagon, folder, last + 1)[0] == []


def test_pages_after_a_change_show_the_change(vagon, emulator):
    folder = _big(vagon, emulator, "changing")
    names = _all_names()
    for page in (1, 2, 3):  # keys of these pages are known now
        assert _names(vagon, folder, page)[0] == _expected(names, page)
    # one name removed from page 1 and one added to page 2: page 3 moves by neither
    gone = vagon.find("f000010", parent_id=folder)
    assert vagon.call("DELETE", f"/files/{gone['id']}").status_code == 200
    _folder(vagon, "sub000000x", folder)  # a folder: sorts among the folders
    names.remove("f000010")
    names.insert(FOLDERS, "sub000000x")
    names.sort(key=lambda n: (not n.startswith("sub"), n))
    for page in (3, 2, 4, 1, 100):
        assert _names(vagon, folder, page)[0] == _expected(names, page), page
    assert _names(vagon, folder, 1)[1]["count"] == len(names)


def test_filtered_pages_walk_in_order(vagon, emulator):
    folder = _big(vagon, emulator, "filtered")
    matching = [n for n in _all_names() if "12" in n]
    seen, page = [], 1
    while page:
        got, reply = _names(vagon, folder, page, q="12")
        assert reply["count"] == len(matching)
        seen += got
        page = reply["next_page"]
    assert seen == matching


def test_populate_a_tree_in_one_call(vagon, emulator):
    top = _folder(vagon, "tree")
    made = populate(emulator, parent_id=top, folders=4, count=120, prefix="f",
                    folder_prefix="d", size=0)
    assert made["created"] == 4 + 4 * 120 and len(made["ids"]) == 4
    listed = vagon.listing(top, per_page=PER_PAGE)
    assert [(f["name"], f["id"]) for f in listed["files"]] == \
        [(f"d{j:06d}", made["ids"][j]) for j in range(4)]
    inner = vagon.listing(made["ids"][3], page=3, per_page=PER_PAGE)
    assert inner["count"] == 120 and inner["next_page"] is None
    assert [f["name"] for f in inner["files"]] == [f"f{i:06d}" for i in range(100, 120)]
    empty = inner["files"][0]
    assert empty["status"] == "completed" and empty["size"] == 0
    link = vagon.ok("GET", f"/files/{empty['id']}/download")["url"]
    assert httpx.get(link).content == b""
    # empty files share one blob: deleting one leaves the others readable
    assert vagon.call("DELETE", f"/files/{made['ids'][3]}").status_code == 200
    other = vagon.listing(made["ids"][0], per_page=1)["files"][0]
    assert httpx.get(vagon.ok("GET", f"/files/{other['id']}/download")["url"]).content == b""
    with pytest.raises(EmulatorError, match="409.*d000000"):  # names taken: nothing made
        populate(emulator, parent_id=top, folders=5, count=1, folder_prefix="d")
    assert vagon.listing(top)["count"] == 3


def test_populated_files_hold_their_deterministic_bytes(vagon, emulator):
    top = _folder(vagon, "sized")
    made = populate(emulator, parent_id=top, count=3, prefix="s", size=1000)
    assert made["created"] == 3 and len(made["ids"]) == 3
    contents = [httpx.get(vagon.ok("GET", f"/files/{i}/download")["url"]).content
                for i in made["ids"]]
    assert [len(c) for c in contents] == [1000] * 3 and len(set(contents)) == 3
