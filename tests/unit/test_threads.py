"""A blocking call in a worker thread gives back its result or its exception;
a cancelled caller waits for the thread unless it may abandon it, and an
abandoned thread that ends after the run is dropped quietly; a limiter bounds
the threads at once."""

from __future__ import annotations

import threading

import pytest
import trio

from vagonfs.runtime import threads


def test_the_result_and_the_exception_come_back_to_the_caller():
    def divide(a: int, b: int) -> float:
        assert threading.current_thread() is not threading.main_thread()
        return a / b

    async def main():
        assert await threads.run_sync(divide, 6, 3) == 2
        with pytest.raises(ZeroDivisionError):
            await threads.run_sync(divide, 1, 0)

    trio.run(main)


def test_a_cancelled_caller_waits_for_its_thread_unless_it_may_abandon_it(capfd):
    release = threading.Event()
    done: list[str] = []

    def blocked(name: str) -> str:
        release.wait(10)
        done.append(name)
        return name

    async def main():
        threading.Timer(0.3, release.set).start()
        with trio.move_on_after(0.05) as waited:
            assert await threads.run_sync(blocked, "waited") == "waited"
        assert waited.cancel_called and done == ["waited"]  # it returned once the thread ended
        release.clear()
        with trio.move_on_after(0.05) as abandoned:
            await threads.run_sync(blocked, "abandoned", abandon_on_cancel=True)
        assert abandoned.cancelled_caught and done == ["waited"]

    trio.run(main)
    release.set()  # the abandoned thread ends after the run: nobody to tell
    for _ in range(100):
        if len(done) == 2:
            break
        threading.Event().wait(0.05)
    assert done == ["waited", "abandoned"]
    threading.Event().wait(0.05)  # its delivery to the finished run
    assert "Exception" not in capfd.readouterr().err


def test_a_limiter_bounds_the_threads_at_once():
    lock = threading.Lock()
    running = [0]
    most = [0]

    def work() -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        threading.Event().wait(0.05)
        with lock:
            running[0] -= 1

    async def main():
        limiter = trio.CapacityLimiter(2)
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(lambda: threads.run_sync(work, limiter=limiter))

    trio.run(main)
    assert most[0] == 2


def test_a_caller_cancelled_before_the_call_starts_no_thread():
    started: list[int] = []

    async def main():
        with trio.CancelScope() as scope:
            scope.cancel()
            await threads.run_sync(started.append, 1)
        assert scope.cancelled_caught

    trio.run(main)
    assert started == []
