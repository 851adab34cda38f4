"""The one exception tree of vagonfs, and the only place an errno is chosen.

Every failure that leaves a remote client, the cache or the core is an
:class:`FsError` carrying the errno the filesystem will return (and, from
the store, the server's own message), so the FUSE adapter converts errors at
exactly one boundary (pyfuse3 lets any other exception end the whole mount).
What the store said is a :class:`StoreError`; the cache disk's failures, a
file changed while read and a bad handle are not the store's::

    VagonfsError
    ├── ConfigError              bad config file or command line; never reaches FUSE
    └── FsError(errno)           a filesystem call fails with this errno
        ├── StoreError           the store refused, or could not be reached
        │   ├── NotFound         ENOENT
        │   ├── AlreadyExists    EEXIST
        │   ├── PermissionDenied EACCES
        │   ├── ReadOnly         EROFS
        │   ├── NoSpace          ENOSPC
        │   ├── FileTooLarge     EFBIG
        │   ├── NotEmpty         ENOTEMPTY
        │   ├── InvalidName      EINVAL
        │   ├── CrossDevice      EXDEV   (a rename the store cannot do)
        │   ├── NameTooLong      ENAMETOOLONG
        │   ├── IsADirectory     EISDIR
        │   ├── NotADirectory    ENOTDIR
        │   └── RemoteIOError    EIO     (retries exhausted, or nonsense from the server)
        │       └── ListingChanged       a paged listing changed between its pages
        ├── Stale                ESTALE  (the file changed on the store while being read)
        ├── BadHandle            EBADF   (a file handle the kernel should not have sent)
        ├── NotPermitted         EPERM   (what no store holds: a link without --links)
        └── LocalDiskError       ENOSPC, EDQUOT or EIO: the cache disk failed, as it said
            └── LocalCopyLost    EIO     (a pending upload's spool is gone or unreadable)

Messages never contain credentials: the HTTP layer builds them from the
server's reply and a URL stripped of its query string.
"""

from __future__ import annotations

import errno


class VagonfsError(Exception):
    """Base of every error vagonfs raises on purpose."""


class ConfigError(VagonfsError):
    """The configuration or the command line is wrong; the message says how."""


class FsError(VagonfsError):
    """A filesystem call fails; ``errno`` is what the syscall returns."""

    errno: int = errno.EIO

    def __init__(self, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status  # HTTP status, when there was a reply
        self.code = code  # the store's application code (Vagon ``client_code``)
        self.logged = False  # set where the failure was already told in the log

    def __str__(self) -> str:
        where = f" (HTTP {self.status})" if self.status else ""
        return f"{self.message}{where}"


class StoreError(FsError):
    """The store refused the operation, or could not be reached for it."""


class NotFound(StoreError):
    errno = errno.ENOENT


class AlreadyExists(StoreError):
    errno = errno.EEXIST


class PermissionDenied(StoreError):
    errno = errno.EACCES


class ReadOnly(StoreError):
    errno = errno.EROFS


class NoSpace(StoreError):
    errno = errno.ENOSPC


class FileTooLarge(StoreError):
    errno = errno.EFBIG


class NotEmpty(StoreError):
    errno = errno.ENOTEMPTY


class InvalidName(StoreError):
    errno = errno.EINVAL


class CrossDevice(StoreError):
    errno = errno.EXDEV


class Stale(FsError):
    errno = errno.ESTALE


class RemoteIOError(StoreError):
    errno = errno.EIO


class ListingChanged(RemoteIOError):
    """Entries were added or removed while a listing was read page by page:
    the pages do not add up to one listing, so it is read again, never stitched."""


class BadHandle(FsError):
    errno = errno.EBADF


class NotPermitted(FsError):
    errno = errno.EPERM


class LocalDiskError(FsError):
    """The cache disk refused a write or a read: a full disk or quota keeps its
    errno (the caller can act on ENOSPC), anything else is EIO."""

    def __init__(self, message: str, disk_errno: int | None):
        super().__init__(message)
        self.errno = disk_errno if disk_errno in (errno.ENOSPC, errno.EDQUOT) else errno.EIO

    @property
    def disk_full(self) -> bool:
        return self.errno in (errno.ENOSPC, errno.EDQUOT)


class LocalCopyLost(LocalDiskError):
    """A pending upload's local copy (its spool) is gone or cannot be read: no
    retry can ever send it, so the upload fails once, for good."""

    def __init__(self, message: str, disk_errno: int | None = None):
        super().__init__(message, disk_errno)
        self.errno = errno.EIO


class NameTooLong(StoreError):
    errno = errno.ENAMETOOLONG


class IsADirectory(StoreError):
    errno = errno.EISDIR


class NotADirectory(StoreError):
    errno = errno.ENOTDIR


# HTTP status -> error class, for replies that carry no more specific code.
_BY_STATUS: dict[int, type[StoreError]] = {
    400: InvalidName,
    401: PermissionDenied,
    403: PermissionDenied,
    404: NotFound,
    409: AlreadyExists,
    413: FileTooLarge,
    507: NoSpace,
}


def error_for_status(status: int, message: str, *, code: int | None = None) -> StoreError:
    """The typed error for a final (non-retried) HTTP failure."""
    cls = _BY_STATUS.get(status, RemoteIOError)
    return cls(message, status=status, code=code)
