"""Changes to names: mkdir, symlink, unlink, rmdir, rename.

Each is made on the store at once, except where a file is not uploaded yet:
that one changes here only, and the write-back queue uploads it under the
name it has by then (an rsync temp file renamed over its target costs one
upload, not an upload and a move). An upload under way is let land first,
so the change acts on what landed. The checks come before any request: a
folder that takes no changes is EROFS, a name the store would refuse is
refused by ``vagonfs.remote.names``, and rename(2)'s own rules on what may
replace what hold as on a local disk. A folder renamed over an empty folder
takes its place as rename(2) says, in two steps where the store can move (the
empty one is deleted, then the move; a move that fails then makes it again);
on a store that cannot move, ``EXDEV`` tells ``mv`` to copy.
"""

from __future__ import annotations

import contextlib

from vagonfs.cache.reader import Reader
from vagonfs.cache.uploads import UploadQueue
from vagonfs.core import symlinks
from vagonfs.core.attrs import LocalAttrs
from vagonfs.core.inodes import Node
from vagonfs.core.namespace import Namespace
from vagonfs.core.writes import landed_version
from vagonfs.errors import (AlreadyExists, CrossDevice, FsError, IsADirectory, NotADirectory,
                            NotFound, NotPermitted, ReadOnly)
from vagonfs.remote import names
from vagonfs.remote.base import Entry, Store


class Changes:
    """Protects: nothing of its own (the namespace and the queue hold the
    state); trio-thread only."""

    def __init__(self, store: Store, namespace: Namespace, uploads: UploadQueue,
                 reader: Reader, attrs: LocalAttrs, *, read_only: bool):
        self.store = store
        self._namespace = namespace
        self._inodes = namespace.inodes
        self._uploads = uploads
        self._reader = reader
        self._attrs = attrs
        self._read_only = read_only or store.capabilities.read_only

    # -- checks before a change ----------------------------------------------

    def writable(self, node: Node) -> bool:
        """Whether ``node`` (a file not uploaded yet: its folder) takes changes."""
        if self._read_only:
            return False
        entry = node.entry if node.entry is not None else self._parent_entry(node)
        return entry is None or entry.writable

    def _parent_entry(self, node: Node) -> Entry | None:
        parent = self._inodes.get(node.parent)
        return parent.entry if parent else None

    def check_writable(self, folder: Node) -> None:
        if not self.writable(folder):
            raise ReadOnly(f"{self._inodes.path(folder) or '/'} is read-only")

    def check_new_name(self, folder: Node, name: str) -> None:
        """Before a name is made in ``folder``: one the store would take, in a
        folder that takes changes."""
        self.check_writable(folder)
        names.check(name, self.store.capabilities)

    # -- the changes -----------------------------------------------------------

    async def mkdir(self, parent: Node, name: str) -> Node:
        self.check_new_name(parent, name)
        if self._inodes.child(parent.ino, name) is not None or \
                name in (self._namespace.listings.get(parent.ino) or {}):
            raise AlreadyExists(f"{name} exists")
        entry = await self.store.mkdir(await self._namespace.entry(parent), name)
        self._namespace.set_entry(parent, entry)
        node = self._inodes.upsert(parent.ino, entry)
        self._namespace.listings.put(node.ino, {})  # new, so empty: lookups in it cost nothing
        self._inodes.remember(node)
        return node

    async def symlink(self, parent: Node, name: str, target: bytes) -> Node:
        """A link (``--links``, see ``vagonfs.core.symlinks``), made on the store at once."""
        if not symlinks.enabled(self.store):  # no store holds links: docs/SEMANTICS.md
            raise NotPermitted(f"{name}: links are kept only with --links")
        self.check_new_name(parent, name)
        if await self._namespace.find(parent, name) is not None:
            raise AlreadyExists(f"{name} exists")  # the store's upload would replace it
        entry = await symlinks.create(self.store, await self._namespace.entry(parent), name,
                                   target)
        self._namespace.set_entry(parent, entry)
        node = self._inodes.upsert(parent.ino, entry)
        self._inodes.remember(node)
        return node

    async def unlink(self, parent: Node, name: str) -> None:
        node = await self._namespace.lookup(parent, name)
        if node.is_dir:
            raise IsADirectory(f"{name} is a folder")
        self.check_writable(parent)
        await self._remove(parent, node)

    async def rmdir(self, parent: Node, name: str) -> None:
        node = await self._namespace.lookup(parent, name)
        if not node.is_dir:
            raise NotADirectory(f"{name} is not a folder")
        self.check_writable(parent)
        if not (await self._namespace.entry(node)).writable:
            raise ReadOnly(f"{name} is a fixed folder of the store")
        await self._namespace.check_empty(node)
        await self._remove(parent, node)

    async def _remove(self, parent: Node, node: Node) -> None:
        await self._uploads.landed(node)  # then delete what landed
        if node.dirty is not None:
            self._uploads.discard(node)
        if node.entry is not None:
            try:
                await self.store.delete(await self._namespace.entry(node))
            except NotFound:
                pass  # already gone: that is what was asked
            if not node.is_dir:
                self._attrs.forget(node.entry.key)
            if not node.is_dir and not node.open_handles:  # else at its last release
                self._reader.forget(node.entry)
        self._namespace.drop_entry(parent.ino, node.name)
        self._namespace.forget(node.ino)
        self._inodes.detach(node)

    async def rename(self, old_parent: Node, old_name: str, new_parent: Node, new_name: str,
                     *, noreplace: bool = False) -> None:
        node = await self._namespace.lookup(old_parent, old_name)
        self.check_writable(old_parent)
        self.check_new_name(new_parent, new_name)
        target = await self._namespace.find(new_parent, new_name)
        if target is node:
            return
        if target is not None:
            await self._check_replaceable(node, target, noreplace)
            await self._uploads.landed(target)  # it replaces what landed
        await self._uploads.landed(node)
        # the rename acts on the files the kernel named: one kept beside as a
        # conflict copy while its upload landed has the copy's name now
        old = (old_parent, node.name)
        if node.entry is None:
            await self._rename_local(node, old, new_parent, new_name, target)
            return
        try:
            await self._rename_on_store(node, old, new_parent, new_name, target)
        except NotFound:
            if node.dirty is None:
                raise
            # deleted on the store while changed here: it exists only here now, and
            # its upload makes it again (docs/SEMANTICS.md), under the new name
            node.entry = None
            await self._rename_local(node, old, new_parent, new_name, target)

    async def _check_replaceable(self, node: Node, target: Node, noreplace: bool) -> None:
        """What rename(2) asks before ``node`` may take ``target``'s name."""
        if noreplace:
            raise AlreadyExists(f"{target.name} exists")
        if target.is_dir and not node.is_dir:
            raise IsADirectory(f"{target.name} is a folder")
        if node.is_dir and not target.is_dir:
            raise NotADirectory(f"{target.name} is not a folder")
        if target.is_dir:
            await self._namespace.check_empty(target)

    async def _rename_local(self, node: Node, old: tuple[Node, str], new_parent: Node,
                            new_name: str, target: Node | None) -> None:
        """Not uploaded yet: that upload replaces the target (module doc)."""
        if target is not None and target.is_dir:
            await self._remove(new_parent, target)
        elif target is not None:  # its base now: what the target's upload left (if that
            node.entry = target.entry  # was kept beside, the store's file is a conflict too)
            if node.dirty is not None:
                node.dirty.replaces = landed_version(node)
            if target.dirty is not None and target.name == new_name:
                self._uploads.discard(target)
        self._namespace.drop_entry(old[0].ino, old[1])
        self._namespace.created(new_parent.ino, new_name)
        self._inodes.move(node, new_parent.ino, new_name)
        self._uploads.moved(node)

    async def _rename_on_store(self, node: Node, old: tuple[Node, str], new_parent: Node,
                               new_name: str, target: Node | None) -> None:
        if not self.store.capabilities.can_rename:
            raise CrossDevice(f"this store cannot move {old[1]} on the server; "
                              "mv copies and deletes instead")
        if target is not None and target.name != new_name:  # a move would replace theirs
            raise AlreadyExists(f"{new_name} changed on the store while this rename waited "
                                f"for its upload, kept beside it as {target.name}; "
                                "not moved over the store's version")
        entry = await self._namespace.entry(node)
        folder = await self._namespace.entry(new_parent)
        if target is not None and target.is_dir:  # empty (checked): it goes, then the move
            await self._remove(new_parent, target)
            try:
                moved = await self.store.rename(entry, folder, new_name)
            except FsError:
                with contextlib.suppress(FsError):  # not atomic, but nothing is lost
                    await self.mkdir(new_parent, new_name)
                raise
        else:
            moved = await self.store.rename(entry, folder, new_name)
        if node.is_dir:
            self._attrs.folder_moved(entry.key, moved.key)
        else:
            self._attrs.moved(entry.key, entry.version, moved.key, moved.version)
        if target is not None and not target.is_dir:
            if target.dirty is not None:
                self._uploads.discard(target)
            if target.entry is not None:
                self._reader.forget(target.entry)
        self._namespace.drop_entry(old[0].ino, old[1])
        self._namespace.set_entry(new_parent, moved)
        self._inodes.move(node, new_parent.ino, new_name)
        node.entry = moved
        if node.dirty is not None:
            self._uploads.moved(node)
        if node.is_dir:  # what is below has new keys on a path-based store
            for below in self._inodes.descendants(node.ino):
                below.stale = True
                self._namespace.forget(below.ino)
            self._namespace.forget(node.ino)
