"""Inode numbers for remote entries, and the kernel's lookup counts on them.

A file's node lives while the kernel holds a reference to it (lookup count
above zero), while a file handle is open on it, or while it holds data not
yet on the store; :meth:`InodeTable.forget` (or ``set_dirty``, once the
upload settles) drops it after that. A folder's
node lives as long as it is in its place (see ``_maybe_drop``); once
deleted, with everything below it, while referenced. A dropped node is told to ``dropped``, so
what hangs off its number (a folder's listing) goes with it. A number is
stable for its node's life. A walk of a million entries keeps a million nodes
(the kernel holds a reference on each entry a ``readdir`` shows), so a node
is a slotted record that shares its name and entry with the listing, and the
only indexes are the number map and one name map per folder.

The per-folder name maps let a listing refresh find the node the kernel
already knows instead of minting a second number, and make ``children`` and
``descendants`` cost what they return, never a scan of every node.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar, overload

from vagonfs.remote.base import Entry

if TYPE_CHECKING:  # the upload queue's record; only its type, as the queue knows no node
    from vagonfs.cache.upload_states import Pending

ROOT_INODE = 1  # what FUSE calls the mount's root


class _Rare:
    """The fields of a node that few nodes ever set (open, written, moved, changed
    here): kept apart, so the million nodes of a walked tree do not carry them."""

    __slots__ = ("open_handles", "stale", "dirty", "unlinked", "local_mtime", "mtime_set",
                 "local_mode", "seen_version")

    def __init__(self) -> None:
        self.open_handles = 0
        self.stale = False
        self.dirty: Pending[Node] | None = None
        self.unlinked = False
        self.local_mtime: float | None = None
        self.mtime_set = False
        self.local_mode: int | None = None
        self.seen_version: str | None = None


_DEFAULTS = _Rare()
T = TypeVar("T")


class _RareField(Generic[T]):
    """A field of a node kept in its ``_Rare``: a node that never set it reads
    the default, and gets a ``_Rare`` only when it sets another value."""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name
        self._default = getattr(_DEFAULTS, name)

    @overload
    def __get__(self, node: None, owner: type) -> _RareField[T]: ...
    @overload
    def __get__(self, node: Node, owner: type | None = None) -> T: ...

    def __get__(self, node: Node | None, owner: type | None = None) -> T | _RareField[T]:
        if node is None:  # on the class, as pydoc and inspect look
            return self
        return self._default if node._rare is None else getattr(node._rare, self._name)

    def __set__(self, node: Node, value: T) -> None:
        if node._rare is None:
            if value is self._default:
                return
            node._rare = _Rare()
        setattr(node._rare, self._name, value)


class Node:
    """One file or folder the mount has shown.

    ``entry`` is the store's view as last seen (None for a file that exists
    only locally, not yet uploaded). ``stale`` marks an entry whose store key
    no longer holds (its folder was moved): it is looked up again before use.
    ``dirty`` is the pending upload while local content is newer than the
    store's (set from the upload queue's callback, ``InodeTable.set_dirty``); ``local_mtime``/``local_mode`` are attributes set here on
    content not yet uploaded (moved to LocalAttrs after), ``mtime_set`` says
    ``local_mtime`` came from utimens, not from a write; ``seen_version`` is
    the version at the last open (may the kernel keep its page cache?).
    A node is compared and hashed by identity: the upload queue keys on it.
    """

    __slots__ = ("ino", "parent", "name", "is_dir", "entry", "lookups", "_rare")

    def __init__(self, ino: int, parent: int, name: str, is_dir: bool, entry: Entry | None,
                 lookups: int = 0):
        self.ino = ino
        self.parent = parent
        self.name = name
        self.is_dir = is_dir
        self.entry = entry
        self.lookups = lookups
        self._rare: _Rare | None = None

    open_handles = _RareField[int]()
    stale = _RareField[bool]()
    dirty = _RareField["Pending[Node] | None"]()
    unlinked = _RareField[bool]()
    local_mtime = _RareField[float | None]()
    mtime_set = _RareField[bool]()
    local_mode = _RareField[int | None]()
    seen_version = _RareField[str | None]()

    @property
    def busy(self) -> bool:
        return self.lookups > 0 or (self._rare is not None and (
            self._rare.open_handles > 0 or self._rare.dirty is not None))

    def __repr__(self) -> str:
        return f"Node({self.ino}, parent={self.parent}, name={self.name!r}, " \
               f"is_dir={self.is_dir}, lookups={self.lookups})"


class InodeTable:
    """Protects: the node map and the per-folder name maps; trio-thread only.

    Invariant: the name maps hold exactly the live nodes not ``unlinked``, and a
    folder's name map exists only while non-empty.
    """

    def __init__(self, root_entry: Entry, dropped: Callable[[int], None] | None = None):
        self._nodes: dict[int, Node] = {}
        self._children: dict[int, dict[str, Node]] = {}  # folder ino -> name -> node
        self._numbers = itertools.count(ROOT_INODE + 1)
        self._dropped = dropped
        root = Node(ROOT_INODE, ROOT_INODE, "", True, root_entry, lookups=1)
        self._nodes[ROOT_INODE] = root

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, ino: int) -> Node | None:
        return self._nodes.get(ino)

    def child(self, parent: int, name: str) -> Node | None:
        names = self._children.get(parent)
        return None if names is None else names.get(name)

    def children(self, parent: int) -> list[Node]:
        """The nodes known under ``parent``."""
        names = self._children.get(parent)
        return [] if names is None else list(names.values())

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
        return self._attach(Node(next(self._numbers), parent, entry.name, entry.is_dir, entry))

    def add_local(self, parent: int, name: str) -> Node:
        """A new file that exists only here until its upload."""
        existing = self.child(parent, name)
        if existing is not None:
            self.detach(existing)
        return self._attach(Node(next(self._numbers), parent, name, False, None))

    def move(self, node: Node, parent: int, name: str) -> None:
        """Give ``node`` a new place; a node already there is detached."""
        target = self.child(parent, name)
        if target is not None and target is not node:
            self.detach(target)
        self._unindex(node)
        node.parent, node.name = parent, name
        self._children.setdefault(parent, {})[name] = node

    def detach(self, node: Node) -> None:
        """Take ``node`` out of its folder (deleted, replaced or gone remotely),
        with everything known below it.

        The kernel may still hold their numbers; each is dropped on its last forget.
        """
        for gone in [node, *self.descendants(node.ino)]:
            self._unindex(gone)
            gone.unlinked = True
            self._maybe_drop(gone)

    def descendants(self, ino: int) -> list[Node]:
        """Every live node below folder ``ino``."""
        found: list[Node] = []
        pending = [ino]
        while pending:
            below = self.children(pending.pop())
            found.extend(below)
            pending.extend(n.ino for n in below if n.is_dir)
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

    def set_dirty(self, node: Node, pending: Pending[Node] | None) -> None:
        """The upload queue's word on ``node``: its pending content, or None once
        the queue holds nothing of it any more (uploaded or dropped); then a
        node the kernel forgot meanwhile goes, or it would stay for the life
        of the mount."""
        node.dirty = pending
        if pending is None:
            self._maybe_drop(node)

    # -- the indexes ---------------------------------------------------------

    def _attach(self, node: Node) -> Node:
        self._nodes[node.ino] = node
        self._children.setdefault(node.parent, {})[node.name] = node
        return node

    def _unindex(self, node: Node) -> None:
        names = self._children.get(node.parent)
        if names is not None and names.get(node.name) is node:
            del names[node.name]
            if not names:
                del self._children[node.parent]

    def _maybe_drop(self, node: Node) -> None:
        """Drop ``node`` if nothing holds it any more.

        A folder in its place stays: the kernel forgets a folder at the first
        release after its entry timeout (every folder ``find`` leaves after a
        second), and dropping it would take its listing along, so the next walk
        would list everything again. Folders are few beside their files.
        """
        if node.ino == ROOT_INODE or node.busy or (node.is_dir and not node.unlinked):
            return
        if self._nodes.pop(node.ino, None) is None:
            return
        self._unindex(node)
        if self._dropped is not None:
            self._dropped(node.ino)
