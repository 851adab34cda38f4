"""What tests of every tier share."""

from __future__ import annotations

import subprocess
import sys

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
