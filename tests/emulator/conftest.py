"""One plain emulator per test module (cheaper than one per test) and its clients."""

from __future__ import annotations

import pytest

from vagonfs.emulator.process import EmulatorProcess

from .helpers import Vagon


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with EmulatorProcess(tmp_path_factory.mktemp("emu") / "data",
                         args=("--per-page-cap", "50", "--link-ttl", "60")) as emu:
        yield emu


@pytest.fixture
def vagon(emulator):
    emulator.clear_faults()
    client = Vagon(emulator)
    yield client
    client.http.close()
