"""``vagonfs status``, ``unmount`` and ``sync`` load neither trio nor pyfuse3.

They talk to a daemon over its control socket and read the mount table; an
import of the daemon's libraries would cost every call (``status --watch``
runs in a loop) and tie the commands to what only a mount needs. The
import-linter contracts (pyproject.toml) check the import graph; these run the
real commands in a subprocess and look at what they loaded, so a lazy import
inside a function is caught too.
"""

from __future__ import annotations

import pytest
from support import run_and_tell


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["unmount"],
                                     ["sync"]])
def test_commands_on_a_folder_load_no_daemon_library(tmp_path, command):
    """No mount there: the command says so, having loaded nothing of the daemon's."""
    result = run_and_tell(*command, str(tmp_path))
    assert result.returncode == 1
    assert "not a vagonfs mount" in result.stderr or "no vagonfs mount" in result.stderr
    assert "loaded: []" in result.stderr.splitlines()


def test_help_loads_no_daemon_library():
    result = run_and_tell("--help")
    assert result.returncode == 0 and "usage: vagonfs" in result.stdout
    assert "loaded: []" in result.stderr.splitlines()
