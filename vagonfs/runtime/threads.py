"""Blocking calls in worker threads, for the trio thread that answers FUSE.

``trio.to_thread.run_sync`` costs nearly twice the CPU of the same trip made
straight on trio's own thread cache (``trio.lowlevel.start_thread_soon``,
which ``to_thread`` is built on). Most of the difference is work a mount does
not need: a capacity limiter for every
call, a copied context, and the worker thread named and renamed through
``ctypes`` at each call, where each rename hands the GIL to the trio thread
and back. A folder of small files copied out makes two or three trips a file,
a noticeable share of what a small file costs the daemon in all, so every
module sends its blocking calls through :func:`run_sync` instead. Where a bound on threads
matters, the caller keeps its own limiter (``limiter``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import outcome
import trio

T = TypeVar("T")


async def run_sync(fn: Callable[..., T], *args, abandon_on_cancel: bool = False,
                   limiter: trio.CapacityLimiter | None = None) -> T:
    """``fn(*args)`` in a worker thread; its result, or its exception raised here.

    As ``trio.to_thread.run_sync``: a cancelled caller waits for the thread to
    end unless ``abandon_on_cancel``, when it leaves at once and the thread's
    result is dropped (the caller must make the thread end, e.g. by closing
    its socket)."""
    if limiter is None:
        return await _trip(functools.partial(fn, *args), abandon_on_cancel)
    async with limiter:
        return await _trip(functools.partial(fn, *args), abandon_on_cancel)


async def _trip(call: Callable[[], T], abandon_on_cancel: bool) -> T:
    await trio.lowlevel.checkpoint_if_cancelled()
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()
    abandoned = False

    def back_in_trio(result: outcome.Outcome) -> None:
        if not abandoned:
            trio.lowlevel.reschedule(task, result)

    def deliver(result: outcome.Outcome) -> None:  # in the worker thread
        try:
            token.run_sync_soon(back_in_trio, result)
        except trio.RunFinishedError:
            pass  # an abandoned call outlived the run: nobody waits for it

    def abort(_raise_cancel) -> trio.lowlevel.Abort:
        nonlocal abandoned
        if not abandon_on_cancel:
            return trio.lowlevel.Abort.FAILED
        abandoned = True
        return trio.lowlevel.Abort.SUCCEEDED

    trio.lowlevel.start_thread_soon(call, deliver)
    return await trio.lowlevel.wait_task_rescheduled(abort)
