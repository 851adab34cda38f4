"""Symbolic links on stores that have none (``--links``), as rclone's ``--links`` does.

None of the three stores can hold a link. With ``--links`` a link ``NAME``
is kept on the store as a small file ``NAME.vagonfslink`` whose content is
the link's target, byte for byte, and every such file is shown as the link
``NAME`` again. Other clients of the store see an ordinary small file, which
is why the option is off by default.

:class:`LinkStore` wraps the mount's store, so the listing, lookup, rename
and upload code of the filesystem needs to know nothing of it: entries of
``*.vagonfslink`` files come out renamed and marked with the content type
``inode/symlink`` (freedesktop's name for a link), and a link renamed keeps
its suffix on the store. The filesystem asks :func:`is_link` for a link's
attributes, and this module to create one and to read its target.

A link's target is read from the store once per version and kept in a small
LRU: ``ls -l`` of a folder of links costs no request per link.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import AsyncGenerator, Hashable
from contextlib import aclosing
from typing import TypeGuard

import cachetools

from vagonfs.errors import InvalidName, NotFound, RemoteIOError
from vagonfs.remote import names
from vagonfs.remote.base import Capacity, Entry, ProgressFn, Store

SUFFIX = ".vagonfslink"
LINK_TYPE = "inode/symlink"
MAX_TARGET = 4096  # PATH_MAX: what symlink(2) accepts on Linux


def is_link(entry: Entry | None) -> TypeGuard[Entry]:
    return entry is not None and not entry.is_dir and entry.content_type == LINK_TYPE


def enabled(store: Store) -> TypeGuard[LinkStore]:
    """Whether this mount shows links (``--links``)."""
    return isinstance(store, LinkStore)


async def create(store: Store, folder: Entry, name: str, target: bytes) -> Entry:
    """Make the link ``folder/name`` pointing at ``target``: upload
    ``name.vagonfslink`` holding the target. The caller has checked that no
    entry of that name exists (an upload replaces)."""
    if not enabled(store):
        raise InvalidName("links are kept only with --links")
    return await store.create_link(folder, name, target)


async def target(store: Store, name: str, entry: Entry | None) -> bytes:
    """The target of the link ``name`` whose entry is ``entry`` (EINVAL for
    anything else, as readlink(2), a file not on the store yet included)."""
    if not is_link(entry) or not enabled(store):
        raise InvalidName(f"{name} is not a link")
    return await store.link_target(entry)


class LinkStore(Store):
    """A store that also shows and keeps links (module doc)."""

    def __init__(self, inner: Store):
        self.inner = inner
        self.capabilities = inner.capabilities
        self._targets: cachetools.LRUCache[tuple[Hashable, str], bytes] = \
            cachetools.LRUCache(maxsize=4096)

    @property
    def ranged_reads(self) -> bool:
        return self.inner.ranged_reads

    def cache_key(self, key: Hashable) -> str:
        return self.inner.cache_key(key)  # a link's file is cached as the file it is

    # -- entries in and out --------------------------------------------------------

    @staticmethod
    def _shown(entry: Entry) -> Entry:
        """A ``*.vagonfslink`` file as the link it keeps; anything else as it is."""
        if entry.is_dir or not entry.name.endswith(SUFFIX) or entry.name == SUFFIX:
            return entry
        return dataclasses.replace(entry, name=entry.name[:-len(SUFFIX)],
                                   content_type=LINK_TYPE)

    def _stored_name(self, name: str) -> str:
        """The name a link is kept under: the suffix counts against the store's limits."""
        stored = name + SUFFIX
        names.check(stored, self.capabilities)
        return stored

    # -- links -----------------------------------------------------------------------

    async def create_link(self, folder: Entry, name: str, target: bytes) -> Entry:
        if not target or len(target) > MAX_TARGET or b"\0" in target:
            raise InvalidName(f"{name}: a link's target is 1 to {MAX_TARGET} bytes, no NUL")
        with tempfile.TemporaryFile() as source:
            source.write(target)
            source.flush()
            entry = await self.inner.upload(folder, self._stored_name(name), source,
                                            len(target), content_type="text/plain")
        link = self._shown(entry)
        self._targets[link.key, link.version] = target
        return link

    async def link_target(self, entry: Entry) -> bytes:
        cached = self._targets.get((entry.key, entry.version))
        if cached is not None:
            return cached
        data = bytearray()
        async with self.inner.read(entry, 0, MAX_TARGET + 1) as chunks:
            async for chunk in chunks:
                data += chunk
        if not data or len(data) > MAX_TARGET:
            raise RemoteIOError(f"{entry.name}{SUFFIX} on the store is not a link's target "
                                f"({len(data)} bytes)")
        self._targets[entry.key, entry.version] = bytes(data)
        return bytes(data)

    # -- the Store interface, through to the inner store ----------------------------

    async def root(self) -> Entry:
        return await self.inner.root()

    async def list(self, folder: Entry) -> AsyncGenerator[list[Entry], None]:
        async with aclosing(self.inner.list(folder)) as pages:
            async for page in pages:
                yield [self._shown(entry) for entry in page]

    async def lookup(self, folder: Entry, name: str) -> Entry:
        try:
            return self._shown(await self.inner.lookup(folder, name))
        except NotFound:
            return self._shown(await self.inner.lookup(folder, name + SUFFIX))

    def read(self, entry: Entry, offset: int = 0, end: int | None = None):
        return self.inner.read(entry, offset, end)

    async def upload(self, folder: Entry, name: str, source, size: int, *,
                     content_type: str | None = None, progress: ProgressFn | None = None,
                     replace: bool = True) -> Entry:
        return self._shown(await self.inner.upload(folder, name, source, size,
                                                   content_type=content_type,
                                                   progress=progress, replace=replace))

    async def mkdir(self, folder: Entry, name: str) -> Entry:
        return await self.inner.mkdir(folder, name)

    async def delete(self, entry: Entry) -> None:
        await self.inner.delete(entry)

    async def rename(self, entry: Entry, folder: Entry, name: str) -> Entry:
        stored = self._stored_name(name) if is_link(entry) else name
        return self._shown(await self.inner.rename(entry, folder, stored))

    async def capacity(self) -> Capacity:
        return await self.inner.capacity()

    async def check(self) -> None:
        await self.inner.check()
