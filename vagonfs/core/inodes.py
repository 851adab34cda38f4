"""Inode numbers for remote entries, and the kernel's lookup counts on them.

A node lives while the kernel holds a reference to it (lookup count above
zero), while a file handle is open on it, or while it holds data not yet on
the store; :meth:`InodeTable.forget` drops it after that. Its number is stable
for all that time. The (parent, name) index lets a listing refresh find the
node the kernel already knows instead of minting a second number.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from vagonfs.remote.base import Entry

ROOT_INODE = 1  # what FUSE calls the mount's root


@dataclass(eq=False)
class Node:
    """One file or folder the mount has shown.

    ``entry`` is the store's view as last seen (None for a file that exists
    only locally, not yet uploaded). ``stale`` marks an entry whose store key
    no longer holds (its folder was moved): it is looked up again before use.
    """

    ino: int
    parent: int
    name: str
    is_dir: bool
    entry: Entry | None
    lookups: int = 0
    open_handles: int = 0
    stale: bool = False
    # set by the write-back layer while local content is newer than the store's
    dirty: object | None = field(default=None, repr=False)
    unlinked: bool = False
    # attributes set here on content not yet uploaded (moved to LocalAttrs after)
    local_mtime: float | None = None
    mtime_set: bool = False  # local_mtime came from utimens, not from a write
    local_mode: int | None = None
    seen_version: str | None = None  # version at the last open: may the kernel keep its cache?

    @property
    def busy(self) -> bool:
        return self.lookups > 0 or self.open_handles > 0 or self.dirty is not None


class InodeTable:
    """Protects: the node map and the (parent, name) index; trio-thread only."""

    def __init__(self, root_entry: Entry):
        self._nodes: dict[int, Node] = {}
        self._by_name: dict[tuple[int, str], int] = {}
        self._numbers = itertools.count(ROOT_INODE + 1)
        root = Node(ROOT_INODE, ROOT_INODE, "", True, root_entry, lookups=1)
        self._nodes[ROOT_INODE] = root

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, ino: int) -> Node | None:
        return self._nodes.get(ino)

    def child(self, parent: int, name: str) -> Node | None:
        ino = self._by_name.get((parent, name))
        return None if ino is None else self._nodes[ino]

    def children(self, parent: int) -> list[Node]:
        """The nodes known under ``parent`` (a scan: used for rare operations)."""
        return [n for n in self._nodes.values() if n.parent == parent and n.ino != parent
                and self._by_name.get((parent, n.name)) == n.ino]

    def upsert(self, parent: int, entry: Entry) -> Node:
        """The node for ``entry`` under ``parent``, created or refreshed."""
        node = self.child(parent, entry.name)
        if node is not None and node.is_dir == entry.is_dir:
            if node.dirty is None:
                node.entry = entry
            node.stale = False
            return node
        if node is not None:  # a file became a folder or back: a new object
            self.detach(node)
        node = Node(next(self._numbers), parent, entry.name, entry.is_dir, entry)
        self._nodes[node.ino] = node
        self._by_name[(parent, entry.name)] = node.ino
        return node

    def add_local(self, parent: int, name: str) -> Node:
        """A new file that exists only here until its upload."""
        existing = self.child(parent, name)
        if existing is not None:
            self.detach(existing)
        node = Node(next(self._numbers), parent, name, False, None)
        self._nodes[node.ino] = node
        self._by_name[(parent, name)] = node.ino
        return node

    def move(self, node: Node, parent: int, name: str) -> None:
        """Give ``node`` a new place; a node already there is detached."""
        target = self.child(parent, name)
        if target is not None and target is not node:
            self.detach(target)
        if self._by_name.get((node.parent, node.name)) == node.ino:
            del self._by_name[(node.parent, node.name)]
        node.parent, node.name = parent, name
        self._by_name[(parent, name)] = node.ino

    def detach(self, node: Node) -> None:
        """Take ``node`` out of its folder (deleted, replaced or gone remotely).

        The kernel may still hold its number; it is dropped on the last forget.
        """
        if self._by_name.get((node.parent, node.name)) == node.ino:
            del self._by_name[(node.parent, node.name)]
        node.unlinked = True
        self._maybe_drop(node)

    def descendants(self, ino: int) -> list[Node]:
        """Every live node below folder ``ino``."""
        found, frontier = [], {ino}
        while frontier:
            level = [n for n in self._nodes.values()
                     if n.parent in frontier and n.ino not in frontier and not n.unlinked]
            found.extend(level)
            frontier = {n.ino for n in level if n.is_dir}
        return found

    def path(self, node: Node) -> str:
        """The node's path from the mount's root, for logs and the journal."""
        parts = []
        while node.ino != ROOT_INODE:
            parts.append(node.name)
            parent = self._nodes.get(node.parent)
            if parent is None:
                break
            node = parent
        return "/".join(reversed(parts))

    def remember(self, node: Node, count: int = 1) -> None:
        node.lookups += count

    def forget(self, ino: int, count: int) -> None:
        node = self._nodes.get(ino)
        if node is None or ino == ROOT_INODE:
            return
        node.lookups = max(0, node.lookups - count)
        self._maybe_drop(node)

    def release(self, node: Node) -> None:
        node.open_handles -= 1
        self._maybe_drop(node)

    def _maybe_drop(self, node: Node) -> None:
        if node.ino == ROOT_INODE or node.busy:
            return
        if node.unlinked or not node.is_dir:
            # an unreferenced file is cheap to find again; unreferenced folders stay
            # while listed so their inode numbers keep for the life of the mount
            self._nodes.pop(node.ino, None)
            if self._by_name.get((node.parent, node.name)) == node.ino:
                del self._by_name[(node.parent, node.name)]
