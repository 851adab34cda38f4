"""Project-wide fixtures: emulators running as real child processes.

``emulator_factory`` starts as many as a test wants (extra CLI args, an
optional data dir) and stops every one at teardown, failed test or not;
``demo_emulator`` is one ``--seed-demo`` emulator shared by the session.

Tiers run cheapest first (:data:`TIERS`), so a broken unit fails in seconds,
not after ten minutes of mounts; every skip is counted at the end with its
reason, so a test that needs root or a tool this machine lacks is seen to be
left out, not lost.

A run started in the background by a shell (``.ci/run &``, a CI runner)
inherits SIGINT ignored, and an ignored signal stays ignored in every child:
``vagonfs archive`` and ``status --watch`` would not hear the Ctrl-C their
tests send. A handler of our own is reset to the default in each child.
"""

from __future__ import annotations

import collections
import os
import signal

import pytest

signal.signal(signal.SIGINT, signal.default_int_handler)

from vagonfs.emulator.process import EmulatorProcess

# tests/<tier>/..., in the order they run; a folder not named here runs last
TIERS = ("unit", "core", "remote", "emulator", "cli", "bench_tools", "mount")


def _tier(item: pytest.Item) -> int:
    parts = os.path.relpath(str(item.path), os.path.dirname(__file__)).split(os.sep)
    return TIERS.index(parts[0]) if parts[0] in TIERS else len(TIERS)


def pytest_collection_modifyitems(items):
    items.sort(key=_tier)  # stable: a tier's own order stays


def pytest_terminal_summary(terminalreporter):
    reasons: collections.Counter[str] = collections.Counter()
    for report in terminalreporter.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):  # (file, line, "Skipped: why")
            reasons[report.longrepr[2].removeprefix("Skipped: ")] += 1
        else:
            reasons[str(report.longrepr)] += 1
    terminalreporter.write_line(f"skipped: {sum(reasons.values())}")
    for reason, count in reasons.most_common():
        terminalreporter.write_line(f"  {count} x {reason}")


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
