"""Project-wide fixtures: emulators running as real child processes.

``emulator_factory`` starts as many as a test wants (extra CLI args, an
optional data dir) and stops every one at teardown, failed test or not;
``demo_emulator`` is one ``--seed-demo`` emulator shared by the session.

A run started in the background by a shell (``.ci/run &``, a CI runner)
inherits SIGINT ignored, and an ignored signal stays ignored in every child:
``vagonfs archive`` and ``status --watch`` would not hear the Ctrl-C their
tests send. A handler of our own is reset to the default in each child.
"""

from __future__ import annotations

import signal

import pytest

signal.signal(signal.SIGINT, signal.default_int_handler)

from vagonfs.emulator.process import EmulatorProcess


@pytest.fixture
def emulator_factory(tmp_path):
    started: list[EmulatorProcess] = []

    def make(*args: str, data_dir=None) -> EmulatorProcess:
        emulator = EmulatorProcess(data_dir or tmp_path / f"emulator{len(started)}",
                                   args=args)
        started.append(emulator)
        return emulator.start()

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture(scope="session")
def demo_emulator(tmp_path_factory):
    with EmulatorProcess(tmp_path_factory.mktemp("demo") / "emulator",
                         args=("--seed-demo",)) as emulator:
        yield emulator
