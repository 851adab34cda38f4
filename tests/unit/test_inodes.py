"""The inode table: what the kernel forgets is released, a folder stays while a node
below it lives, and children are found through the folder, never by a scan."""

from __future__ import annotations

from vagonfs.core.inodes import ROOT_INODE, InodeTable
from vagonfs.core.listings import Listings
from vagonfs.remote.base import Entry


def table_with_listings() -> tuple[InodeTable, Listings]:
    listings = Listings(ttl=300)
    return InodeTable(Entry("", True, key=""), dropped=listings.drop), listings


def walk(table: InodeTable, listings: Listings, folders: int, files: int) -> list:
    """What ``find`` does to the table: every entry shown once (one kernel
    reference each), every folder listed."""
    shown = []
    for f in range(folders):
        folder = table.upsert(ROOT_INODE, Entry(f"d{f}", True, key=f"d{f}"))
        table.remember(folder)
        entries = {f"f{i}": Entry(f"f{i}", False, key=f"d{f}/f{i}") for i in range(files)}
        listings.put(folder.ino, entries)
        for entry in entries.values():
            node = table.upsert(folder.ino, entry)
            table.remember(node)
            shown.append(node)
        shown.append(folder)
    return shown


def test_forget_releases_every_file_shown_and_a_deleted_folder_with_its_listing():
    table, listings = table_with_listings()
    shown = walk(table, listings, folders=20, files=50)
    assert len(table) == 1 + 20 + 20 * 50
    assert (len(listings), listings.entries) == (20, 20 * 50)
    for node in shown:  # the kernel's forgets, files before their folder as it sends them
        table.forget(node.ino, 1)
    # the folders stay in place with their listings: the next walk costs no request
    assert len(table) == 1 + 20
    assert (len(listings), listings.entries) == (20, 20 * 50)
    assert all(table.children(folder.ino) == [] for folder in table.children(ROOT_INODE))
    for folder in table.children(ROOT_INODE):  # deleted: nothing holds them any more
        table.detach(folder)
    assert len(table) == 1
    assert (len(listings), listings.entries) == (0, 0)
    assert table.children(ROOT_INODE) == []


def test_a_deleted_folder_goes_with_everything_below_it_but_what_is_open():
    table, listings = table_with_listings()
    folder = table.upsert(ROOT_INODE, Entry("d", True, key="d"))
    sub = table.upsert(folder.ino, Entry("sub", True, key="d/sub"))
    done = table.upsert(sub.ino, Entry("done.txt", False, key="d/sub/done.txt"))
    local = table.add_local(sub.ino, "new.txt")  # not uploaded yet, and open
    local.open_handles = 1
    assert sub.entry is not None and done.entry is not None
    listings.put(folder.ino, {"sub": sub.entry})
    listings.put(sub.ino, {"done.txt": done.entry})
    table.remember(folder)
    table.detach(folder)
    assert table.get(folder.ino) is folder  # the kernel holds it
    assert table.get(sub.ino) is None and table.get(done.ino) is None
    assert local.unlinked and table.get(local.ino) is local
    assert (len(listings), listings.entries) == (1, 1)  # the held folder's, until forgotten
    table.forget(folder.ino, 1)
    table.release(local)
    assert len(table) == 1
    assert (len(listings), listings.entries) == (0, 0)


def test_children_and_descendants_follow_moves_and_detaches():
    table, _ = table_with_listings()
    a = table.upsert(ROOT_INODE, Entry("a", True, key="a"))
    b = table.upsert(a.ino, Entry("b", True, key="a/b"))
    for node in (a, b):
        table.remember(node)
    files = [table.upsert(b.ino, Entry(f"f{i}", False, key=f"a/b/f{i}")) for i in range(3)]
    for node in files:
        table.remember(node)
    assert {n.name for n in table.children(b.ino)} == {"f0", "f1", "f2"}
    assert {n.name for n in table.descendants(a.ino)} == {"b", "f0", "f1", "f2"}
    table.move(files[0], a.ino, "moved")
    assert table.child(a.ino, "moved") is files[0] and table.child(b.ino, "f0") is None
    assert {n.name for n in table.children(a.ino)} == {"b", "moved"}
    table.detach(files[1])
    assert {n.name for n in table.descendants(a.ino)} == {"b", "moved", "f2"}
    assert table.get(files[1].ino) is files[1]  # the kernel still holds its number
    table.forget(files[1].ino, 1)
    assert table.get(files[1].ino) is None


def test_a_refreshed_entry_keeps_its_node_and_number():
    table, _ = table_with_listings()
    first = table.upsert(ROOT_INODE, Entry("f", False, key="f", version="1"))
    table.remember(first)
    again = table.upsert(ROOT_INODE, Entry("f", False, key="f", version="2"))
    assert again is first and again.entry is not None and again.entry.version == "2"
    folder = table.upsert(ROOT_INODE, Entry("f", True, key="f"))  # now a folder: a new object
    assert folder.ino != first.ino and first.unlinked
