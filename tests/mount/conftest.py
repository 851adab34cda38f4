"""Real FUSE mounts of the emulator, through the `vagonfs` command itself.

Each mount runs the way a user runs it (``vagonfs mount`` in the background,
``vagonfs unmount`` to stop), in a temporary directory; teardown unmounts even
when the test failed, lazily as a last resort, and kills a daemon that hangs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vagonfs import control
from vagonfs.mount import is_mounted

FUSE_MISSING = None
if not os.path.exists("/dev/fuse"):
    FUSE_MISSING = "/dev/fuse is absent on this machine"
elif shutil.which("fusermount3") is None:
    FUSE_MISSING = "fusermount3 is not installed (scripts/setup.sh installs fuse3)"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/mount" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.mount)
            if FUSE_MISSING:
                item.add_marker(pytest.mark.skip(reason=f"mount test: {FUSE_MISSING}"))


def pytest_terminal_summary(terminalreporter):
    ran = sum(1 for key in ("passed", "failed") for rep in terminalreporter.stats.get(key, [])
              if rep.when == "call" and "mount" in rep.keywords)
    skipped = sum(1 for rep in terminalreporter.stats.get("skipped", [])
                  if "mount" in rep.keywords)
    why = f" ({FUSE_MISSING})" if FUSE_MISSING and skipped else ""
    terminalreporter.write_line(f"mount tests: {ran} ran on real FUSE mounts, "
                                f"{skipped} skipped{why}")


def vagonfs(*args: str, check: bool = True, timeout: float = 60, env=None):
    return subprocess.run([sys.executable, "-m", "vagonfs", *args], capture_output=True,
                          text=True, timeout=timeout, check=check, env=env)


class Mount:
    """One mount of an emulator store; ``path`` is the mountpoint."""

    def __init__(self, emulator, store: str, workdir: Path, subpath: str = "",
                 options: tuple[str, ...] = ()):
        self.emulator = emulator
        self.store = store
        self.path = workdir / "mnt"
        self.cache = workdir / "cache"
        self.config = workdir / "config.toml"
        self.log = workdir / "vagonfs.log"
        self.subpath = subpath
        self.options = options
        self.path.mkdir(exist_ok=True)
        secret = f'api_secret = "{emulator.api_secret}"\n' if store == "vagon" else ""
        self.config.write_text(
            f'[remotes.emu]\ntype = "{store}"\nurl = "{emulator.url}"\n'
            f'api_key = "{emulator.api_key}"\n{secret}')
        self.config.chmod(0o600)

    def args(self) -> list[str]:
        return [f"emu:{self.subpath}", str(self.path), "--config", str(self.config),
                "--cache-dir", str(self.cache), "--log-file", str(self.log),
                "--write-back-delay", "0.1s", *self.options]

    def start(self) -> None:
        result = vagonfs("mount", *self.args(), check=False)
        assert result.returncode == 0, f"mount failed: {result.stderr}\n{self.log_text()}"
        assert is_mounted(self.path)

    def stop(self) -> None:
        if not is_mounted(self.path):
            return
        try:
            result = vagonfs("unmount", str(self.path), "--timeout", "60", check=False,
                             timeout=90)
            if result.returncode != 0:
                print(f"unmount: {result.stderr}")
        except subprocess.TimeoutExpired:
            print("unmount timed out")
        if is_mounted(self.path):
            self.kill()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the daemon the hard way and clean the mountpoint."""
        for pid in self.daemon_pids():
            os.kill(pid, sig)
        subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True)
        deadline = time.monotonic() + 10
        while self.daemon_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        control.socket_path(self.path).unlink(missing_ok=True)  # what a SIGKILL leaves

    def daemon_pids(self) -> list[int]:
        found = subprocess.run(["pgrep", "-f", f"vagonfs mount .*{self.path}"],
                               capture_output=True, text=True).stdout.split()
        return [int(pid) for pid in found]

    def remount(self) -> None:
        self.stop()
        self.start()

    def status(self) -> dict:
        return json.loads(vagonfs("status", str(self.path), "--json").stdout)

    def wait_uploaded(self, timeout: float = 60) -> None:
        """Until the store has confirmed every upload (as fsync would)."""
        deadline = time.monotonic() + timeout
        while self.status()["uploads"]:
            assert time.monotonic() < deadline, f"uploads still pending: {self.status()}"
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else "(no log)"

    def calls(self) -> dict[str, int]:
        return dict(self.emulator.stats()["requests"])


@pytest.fixture
def mount_factory(emulator_factory, tmp_path):
    mounts: list[Mount] = []

    def make(store: str, *emulator_args: str, emulator=None, subpath: str = "",
             options: tuple[str, ...] = ()) -> Mount:
        emu = emulator or emulator_factory(*emulator_args)
        workdir = tmp_path / f"m{len(mounts)}"
        workdir.mkdir()
        mount = Mount(emu, store, workdir, subpath, options)
        mounts.append(mount)
        mount.start()
        return mount

    yield make
    for mount in mounts:
        mount.stop()


@pytest.fixture
def vagon_mount(mount_factory):
    return mount_factory("vagon")


@pytest.fixture
def tenant_mount(mount_factory):
    return mount_factory("tenant")


def sh(command: str, cwd=None, timeout: float = 120) -> str:
    """Run a shell command (real tools against the mount); fail with its stderr."""
    result = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=cwd,
                            timeout=timeout)
    assert result.returncode == 0, f"{command!r} failed ({result.returncode}): {result.stderr}"
    return result.stdout
