"""`EmulatorProcess`: the emulator as a child process, driven from Python.

Tests, the benchmark and ``vagonfs demo`` all start the emulator this way, as
a user would (``python -m vagonfs emulator``), so what they exercise is the
real command. Credentials travel in the environment, not in argv (``ps``
shows argv); the child's stderr goes to a log file so no pipe can fill up and
stall it; ``restart()`` brings it back on the same port with the same data.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO

import httpx

from vagonfs import command

LISTENING = "vagonfs emulator listening on "


class EmulatorError(RuntimeError):
    """The emulator did not start, or an admin call failed (the message says how)."""


def _take_credentials(args: tuple[str, ...]) -> tuple[list[str], str | None, str | None]:
    """argv without ``--api-key``/``--api-secret`` (and the values they carried)."""
    rest: list[str] = []
    found: dict[str, str | None] = {"--api-key": None, "--api-secret": None}
    it = iter(args)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name in found:
            found[name] = value if eq else next(it, None)
        else:
            rest.append(arg)
    return rest, found["--api-key"], found["--api-secret"]


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _ends_with(parent: int):
    """What the child runs before ``exec``: SIGTERM when ``parent`` dies.

    The emulator runs in a session of its own (``start_new_session``): a
    terminal's Ctrl-C reaches the whole foreground process group, and the
    demo's mounts must still upload what is pending to this emulator before
    the demo stops it. Its owner stops it (``stop``); an owner killed outright
    (a test run's timeout) takes it along through the kernel."""
    def in_child() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # it died before the line above
            os._exit(1)
    return in_child


class EmulatorProcess:
    def __init__(self, data_dir: str | Path | None = None, *, port: int = 0,
                 args: tuple[str, ...] = (), api_key: str | None = None,
                 api_secret: str | None = None, start_timeout: float = 30):
        self._owns_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="vagonfs-emu-")) if data_dir is None \
            else Path(data_dir)
        self.port = port
        self.args, key, secret = _take_credentials(tuple(args))
        self.api_key = api_key or key or "demo-key"
        self.api_secret = api_secret or secret or "demo-secret"
        self.start_timeout = start_timeout
        self.url: str | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.emulator.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> EmulatorProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "VAGONFS_EMULATOR_API_KEY": self.api_key,
               "VAGONFS_EMULATOR_API_SECRET": self.api_secret}
        argv = command("emulator", "--data", str(self.data_dir), "--port", str(self.port),
                       *self.args)
        with open(self.log_path, "ab") as log:
            proc = self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log,
                                                 stdin=subprocess.DEVNULL, env=env,
                                                 start_new_session=True,
                                                 preexec_fn=_ends_with(os.getpid()))
        assert proc.stdout is not None  # stdout=PIPE
        line = self._read_listening_line(proc.stdout)
        if not line.startswith(LISTENING):
            self._kill()
            raise EmulatorError(f"the emulator did not start ({' '.join(argv[4:])}): "
                                f"{self._log_tail()}")
        self.url = line[len(LISTENING):].strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        self._client = httpx.Client(base_url=self.url, timeout=60,
                                    headers={"Authorization": f"Bearer {self.api_key}"})
        # keep reading stdout so the child can never block on a full pipe
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        return self

    def _read_listening_line(self, stdout: IO[bytes]) -> str:
        result = [""]
        reader = threading.Thread(
            target=lambda: result.__setitem__(0, stdout.readline().decode()),
            daemon=True)
        reader.start()
        reader.join(self.start_timeout)
        if reader.is_alive():
            self._kill()
            raise EmulatorError(f"the emulator did not report listening within "
                                f"{self.start_timeout} s: {self._log_tail()}")
        return result[0]

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:].strip() or "(no output)"
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it does not end in ``timeout`` s."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
        assert self._proc.stdout is not None  # stdout=PIPE
        self._proc.stdout.close()
        self._proc = None

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def restart(self) -> None:
        """Stop and start again: same data dir, same port (faults and stats reset)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- admin API ------------------------------------------------------------------------

    def admin(self, method: str, path: str, json=None):
        """Call the admin API; the parsed JSON reply (None when empty)."""
        if self._client is None:
            raise EmulatorError("the emulator is not running")
        response = self._client.request(method, path, json=json)
        if response.status_code >= 400:
            raise EmulatorError(f"{method} {path}: HTTP {response.status_code} "
                                f"{response.text[:500]}")
        return response.json() if response.content else None

    def stats(self) -> dict:
        return self.admin("GET", "/_admin/stats")

    def reset_stats(self) -> None:
        self.admin("POST", "/_admin/stats/reset")

    def set_faults(self, faults: dict) -> dict:
        return self.admin("PUT", "/_admin/faults", json=faults)

    def clear_faults(self) -> None:
        self.admin("DELETE", "/_admin/faults")

    def expire_links(self) -> None:
        self.admin("POST", "/_admin/expire-links")
