"""What tests of every tier share: waiting for a condition, filling the emulator, running a command.

``wait_until`` is the one way a test waits for something another process or
thread does (a daemon exits, a counter reaches a figure): it polls, and fails
with the test's own message once ``timeout`` passed, so a missed condition is a
failure that says what was awaited, never a hang and never a sleep that hopes.
Tests under ``trio.run`` wait on events; what ends in a worker thread (no event
to wait on) they wait for with ``until``, bounded by the test's own
``trio.fail_after``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")


def wait_until(condition: Callable[[], T], timeout: float = 30, *,
               message: str | Callable[[], str] = "", interval: float = 0.02) -> T:
    """Poll ``condition`` until it returns something true, and return that;
    after ``timeout`` seconds fail with ``message`` (a callable is asked only
    then, so it can show the state that was waited on)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() >= deadline:
            why = message() if callable(message) else message
            raise AssertionError(f"not reached within {timeout:g} s: "
                                 f"{why or getattr(condition, '__name__', condition)}")
        time.sleep(interval)
    return result


async def until(condition: Callable[[], object]) -> None:
    """``wait_until`` inside ``trio.run``: polls ``condition`` (the state of work
    that ends in worker threads); the caller's ``trio.fail_after`` bounds it."""
    while not condition():
        await trio.sleep(0.005)


def populate(emulator: Any, store: str = "vagon", **fields: Any) -> Any:
    """Make files (or folders) in the emulator's ``store`` with its admin API
    (``vagonfs/emulator/admin.py``'s populate: ``count``, ``prefix``, ``size``,
    ``parent_id`` or ``path``, ``object_type``, ...; the top of the shared
    Vagon files, or of the tenant store, by default). Its reply (Vagon: the
    ``ids`` of what was made)."""
    return emulator.admin("POST", "/_admin/populate", json={"store": store, **fields})


# runs the command as `vagonfs` does, then names the heavy modules it loaded
RUN_AND_TELL = ("import sys\n"
                "from vagonfs.cli.main import main\n"
                "try:\n"
                "    code = main(sys.argv[1:])\n"
                "finally:\n"
                "    print('loaded:', sorted(m for m in ('trio', 'pyfuse3') "
                "if m in sys.modules), file=sys.stderr)\n"
                "sys.exit(code)\n")


def run_and_tell(*args: str) -> subprocess.CompletedProcess:
    """``vagonfs ARGS`` in a subprocess; its stderr ends with ``loaded: [...]``,
    the daemon's libraries (trio, pyfuse3) the command loaded."""
    return subprocess.run([sys.executable, "-c", RUN_AND_TELL, *args], capture_output=True,
                          text=True, timeout=60)
