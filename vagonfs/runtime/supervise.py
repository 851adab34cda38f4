"""Background work that cannot end the mount.

Read-ahead runs, listings, uploads and journal or cache writes run as tasks in
the mount's nursery. trio lets an exception that leaves such a task cancel the
whole nursery, and with it pyfuse3's request loop: the mount would die with
``Transport endpoint is not connected``. So every failure is turned, in one
place, into the :class:`FsError` that the callers waiting on the task get
(``failure``), and every task is started through :func:`spawn`, whose net
catches what a task did not expect. The one way a mount ends is unmount.

What is logged: one line per failure at WARNING (the caller's errno follows
from it); for an exception nobody expected, the traceback too, at DEBUG, so a
bug report has it without flooding a user's log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from vagonfs.errors import FsError, LocalDiskError, RemoteIOError

log = logging.getLogger("vagonfs.supervise")


def failure(what: str, exc: BaseException, *, logger: logging.Logger = log) -> FsError:
    """The FsError that ``exc`` means to a caller waiting on ``what``,
    logged once (a FsError already logged is not logged again)."""
    if isinstance(exc, FsError):
        error = exc
    elif isinstance(exc, OSError):
        error = LocalDiskError(f"{what}: local disk: {exc.strerror or exc}", exc.errno)
    else:
        error = RemoteIOError(f"{what}: unexpected {type(exc).__name__}: {exc}")
    if not error.logged:
        logger.warning("%s", error if str(error).startswith(what) else f"{what}: {error}")
        if not isinstance(exc, FsError):
            logger.debug("%s: traceback", what, exc_info=exc)
        error.logged = True
    return error


def spawn(nursery: trio.Nursery, what: str, fn: Callable[..., Awaitable[object]],
          *args: object) -> None:
    """Start ``fn(*args)`` in ``nursery``; whatever it raises is logged, never
    passed on to the nursery. Tasks wake their own waiters (with ``failure``);
    this is the net under them."""

    async def supervised() -> None:
        try:
            await fn(*args)
        except Exception as exc:  # noqa: BLE001 - this is the one place that must
            failure(what, exc)

    nursery.start_soon(supervised, name=what)
