"""The one interface the filesystem layer uses to reach any store.

The filesystem knows nothing of HTTP, pagination or the shape of a store's
namespace: it walks folders through :class:`Store` and gets :class:`Entry`
values back. Each store module (``vagon``, ``tenant``, ``shannon``)
implements it over its own API and declares what it can do in
:class:`Capabilities`, the way rclone backends declare ``Features()``.

Every method raises only :class:`vagonfs.errors.FsError` subclasses, after
the HTTP layer has retried what was safe to retry.
"""

from __future__ import annotations

import abc
import hashlib
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

import trio

from vagonfs.errors import FsError, NotADirectory, NotFound


@dataclass(frozen=True, slots=True)
class Entry:
    """One file or folder as the store describes it.

    ``key`` is whatever the store needs to address the entry again (an id for
    Vagon, a path for the path-based stores); the filesystem treats it as an
    opaque hashable. ``version`` changes whenever the content may have
    changed, so (key, version) identifies cached bytes.

    A mount holds one per entry it has shown (a million for a big tree), so
    ``content_type``, the same few strings over and over, is kept once.
    """

    name: str
    is_dir: bool
    key: Hashable
    size: int = 0
    mtime: float = 0.0
    version: str = ""
    content_type: str | None = None
    writable: bool = True  # False inside read-only views (recordings, Shannon, virtual folders)
    ready: bool = True  # False while the store still assembles an upload (not readable yet)

    def __post_init__(self):
        if type(self.content_type) is str:
            object.__setattr__(self, "content_type", sys.intern(self.content_type))


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store can do, so the filesystem refuses early and documents why."""

    read_only: bool
    can_rename: bool  # files and folders can be moved server-side
    max_file_size: int | None  # bytes; None = no limit the client knows of
    forbidden_chars: str = "\0/"  # characters a name may not contain on this store
    max_name_length: int = 255
    lookup_lists: bool = False  # finding one name costs a whole listing (no lookup call)
    exclusive_create: bool = False  # ``upload(replace=False)`` refuses a name taken meanwhile


@dataclass(frozen=True, slots=True)
class Capacity:
    total: int  # bytes; 0 when the store does not say
    used: int


ProgressFn = Callable[[int], None]  # called with bytes confirmed so far



@dataclass(eq=False)
class SharedListing:
    """A folder's listing on its way: the first caller fetches it, the later
    ones wait for ``done`` and take its ``listing`` or its ``error``."""

    done: trio.Event = field(default_factory=trio.Event)
    listing: dict[str, Entry] | None = None
    error: FsError | None = None

class Store(abc.ABC):
    """A remote file store seen as a tree of folders."""

    capabilities: Capabilities

    @abc.abstractmethod
    async def root(self) -> Entry:
        """The top folder of the store's tree."""

    @abc.abstractmethod
    def list(self, folder: Entry) -> AsyncGenerator[list[Entry], None]:
        """Yield the folder's entries page by page, as the store serves them
        (a caller that stops early closes it: ``aclosing``)."""

    @abc.abstractmethod
    async def lookup(self, folder: Entry, name: str) -> Entry:
        """The entry called ``name`` in ``folder``; NotFound when absent."""

    @abc.abstractmethod
    def read(self, entry: Entry, offset: int = 0, end: int | None = None
             ) -> AbstractAsyncContextManager[AsyncIterator[bytes | memoryview]]:
        """Stream bytes [offset, end) of a file; ``end=None`` reads to its end.

        One streaming request serves a whole sequential run; the chunks come
        as the network delivers them.
        """

    @property
    @abc.abstractmethod
    def ranged_reads(self) -> bool:
        """True when a read from an offset costs only the bytes asked for.

        False where the server sends whole files (a tenant server that ignores
        ``Range``, Shannon's deployed JSON downloads): the cache then fetches a
        file once, whole.
        """

    @abc.abstractmethod
    def cache_key(self, key: Hashable) -> str:
        """The lasting name of the entry ``key`` in the local cache, what its
        cached blocks (with its version) and its local mtime and mode are filed
        under, across mounts and upgrades.

        ``<kind>/<format>@<remote>:<fields>`` (the first part from
        :func:`cache_key_prefix`): ``kind`` the store's type (``vagon``,
        ``tenant``, ``shannon``); ``format`` a number the store raises whenever
        the fields change, so what the cache holds under an older format is not
        found again (never misread); ``remote`` 8 hex digits of the SHA-256 of
        the store's URL, since a cache dir belongs to a remote's *name*
        (``mount.cache_root``) and a name pointed at another server must not
        find the first one's files; then the key's fields in the order the
        store documents, joined by ``:``, where only the last may hold a
        ``:``. The account (API key) is not part of it: it is a secret, and a
        new key for the same account keeps the cache. Nothing in it comes from
        a class's name or ``repr``.
        """

    @abc.abstractmethod
    async def upload(self, folder: Entry, name: str, source: BinaryIO, size: int, *,
                     content_type: str | None = None, progress: ProgressFn | None = None,
                     replace: bool = True) -> Entry:
        """Store ``size`` bytes read from ``source`` (a real file, read with
        ``os.pread`` off the trio thread) as ``folder/name``, replacing any file
        of that name only once the new content is complete. Returns the entry
        as the store now holds it.

        ``replace=False``: the name is believed free; a store with
        ``exclusive_create`` refuses with AlreadyExists a file of that name
        that is there by the time it creates the upload, in the same request.
        A store without one has no conditional write and replaces it."""

    @abc.abstractmethod
    async def mkdir(self, folder: Entry, name: str) -> Entry:
        ...

    @abc.abstractmethod
    async def delete(self, entry: Entry) -> None:
        """Remove a file, or a folder the caller has checked is empty."""

    @abc.abstractmethod
    async def rename(self, entry: Entry, folder: Entry, name: str) -> Entry:
        """Move ``entry`` to ``folder/name``, replacing a file there.

        CrossDevice where the store has no server-side move.
        """

    @abc.abstractmethod
    async def capacity(self) -> Capacity:
        ...

    @abc.abstractmethod
    async def check(self) -> None:
        """One cheap authenticated request, made before a mount is offered, so
        that wrong credentials, a dead host or a URL that is not this store are
        told at mount time. Raises FsError; a reply that is not this API's
        is RemoteIOError without a status."""


def cache_key_prefix(kind: str, key_format: int, url: str) -> str:
    """What every :meth:`Store.cache_key` of the store of this ``kind`` at
    ``url`` begins with: ``<kind>/<key_format>@<remote>:``."""
    remote = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:8]
    return f"{kind}/{key_format}@{remote}:"


async def find_listed(store: Store, folder: Entry, name: str) -> Entry:
    """``lookup`` for a store (or a view) that has no way to ask for one name:
    walk the listing until the name shows."""
    async with aclosing(store.list(folder)) as pages:
        async for page in pages:
            for entry in page:
                if entry.name == name:
                    return entry
    raise NotFound(f"{name} not found")


async def resolve(store: Store, path: str) -> Entry:
    """The folder at ``path`` (``a/b``) in the store's tree, for a mount's
    sub-tree or a command's argument."""
    entry = await store.root()
    for part in [p for p in path.split("/") if p]:
        if not entry.is_dir:
            raise NotADirectory(f"{path}: {entry.name} is not a folder")
        entry = await store.lookup(entry, part)
    return entry


@asynccontextmanager
async def task_group() -> AsyncIterator[trio.Nursery]:
    """A nursery whose failure is the first FsError of its tasks.

    trio groups the errors of parallel tasks; callers of a store expect one
    FsError (the FUSE boundary converts only those), so a group made only
    of store errors is unwrapped.
    """
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if leaves and all(isinstance(e, FsError) for e in leaves):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup):
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _leaves(error)
        else:
            yield error
