"""Real FUSE mounts of the emulator, through the `vagonfs` command itself.

Each mount runs the way a user runs it (``vagonfs mount`` in the background,
``vagonfs unmount`` to stop), in a temporary directory; teardown unmounts even
when the test failed, lazily as a last resort, and kills a daemon that hangs.

Then teardown reads each daemon's log (:class:`DaemonLog`, as s3ql's
``pytest_checklogs`` reads its output) and fails the test on what a working
mount never logs: a traceback, a line at ERROR or CRITICAL, or a failure
``supervise`` calls unexpected (a bug: logged at WARNING, its traceback only at
DEBUG). A test that provokes such a line on purpose declares it with
``mount.expect_log(regex)``; WARNING lines (the degraded modes) pass unless
declared, and a declared pattern must show up, so a test can also assert one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vagonfs.control import channel
from vagonfs.control.mounttable import is_mounted
from support import populate, wait_until

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep whether the test itself failed: a pattern it declared and never
    reached is then no news."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()
# a record as vagonfs/runtime/logs.py writes it: "<date> <time> LEVEL logger: message"
_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
# how supervise.failure words an exception nobody expected
_UNEXPECTED = re.compile(r": unexpected [A-Za-z_][\w.]*: ")
_TRACEBACK = "Traceback (most recent call last):"


@dataclass
class LogEvent:
    """One record with the lines that follow it, or a traceback (a record's
    ``exc_info`` or the daemon's stderr: declared apart from the record)."""

    line: int  # where it begins in the file, from 1
    level: str | None  # None for a traceback and for lines before the first record
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def is_problem(self) -> bool:
        return (self.level in ("ERROR", "CRITICAL") or _TRACEBACK in self.text
                or bool(_UNEXPECTED.search(self.lines[0])))

    def describe(self) -> str:
        """The first line, and a traceback's last (the exception)."""
        tail = [line for line in self.lines[1:] if line.strip()]
        return self.lines[0] + (f"\n    ... {tail[-1].strip()}" if tail else "")


def log_events(text: str) -> list[LogEvent]:
    events: list[LogEvent] = []
    for number, line in enumerate(text.splitlines(), 1):
        record = _RECORD.match(line)
        if record or not events or (_TRACEBACK in line and events[-1].level is not None):
            events.append(LogEvent(number, record.group(1) if record else None, [line]))
        else:
            events[-1].lines.append(line)
    return events


@dataclass
class DaemonLog:
    """A mount daemon's log file and the lines its test declared it expects."""

    path: Path
    expected: list[tuple[re.Pattern, bool]] = field(default_factory=list)  # (regex, optional)

    def expect(self, *patterns: str, optional: bool = False) -> None:
        """Allow the records and tracebacks (:class:`LogEvent`) in which one of
        ``patterns`` is found (``re.search``); unless ``optional``, each must
        match something by teardown."""
        self.expected += [(re.compile(pattern), optional) for pattern in patterns]

    def problems(self, *, absent_too: bool = True) -> list[str]:
        """Each unexpected line as ``<log>:<line>: <text>``, and each required
        pattern that matched nothing."""
        text = self.path.read_text(errors="replace") if self.path.exists() else ""
        found: list[str] = []
        matched: set[re.Pattern] = set()
        for event in log_events(text):
            hits = {pattern for pattern, _ in self.expected if pattern.search(event.text)}
            matched |= hits
            if event.is_problem() and not hits:
                found.append(f"{self.path}:{event.line}: {event.describe()}")
        if absent_too:
            found += [f"{self.path}: no line matches the expected {pattern.pattern!r}"
                      for pattern, optional in self.expected
                      if not optional and pattern not in matched]
        return found


def check_daemon_logs(request: pytest.FixtureRequest, logs: Iterable[DaemonLog]) -> None:
    """Fail the test on what its daemons logged and it did not expect (at
    teardown, once every mount is down)."""
    call_failed = request.node.stash.get(_CALL_FAILED, True)
    problems = [problem for log in logs for problem in log.problems(absent_too=not call_failed)]
    if problems:
        pytest.fail("the mount daemon's log is not what this test expects (a line the test "
                    "causes on purpose is declared with expect_log):\n" + "\n".join(problems),
                    pytrace=False)


def vagonfs(*args: str, check: bool = True, timeout: float = 60, env=None):
    return subprocess.run([sys.executable, "-m", "vagonfs", *args], capture_output=True,
                          text=True, timeout=timeout, check=check, env=env)


def daemon_pids(mountpoint: Path) -> list[int]:
    found = subprocess.run(["pgrep", "-f", f"vagonfs mount .*{mountpoint}"],
                           capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]


def kill_mount(mountpoint: Path, sig: int = signal.SIGKILL) -> None:
    """Stop a mount's daemon the hard way and clean its mountpoint."""
    for pid in daemon_pids(mountpoint):
        os.kill(pid, sig)
    subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], capture_output=True)
    wait_until(lambda: not daemon_pids(mountpoint), 10,
               message=f"a daemon of {mountpoint} survived SIGKILL")


def control_socket_listens(mountpoint: Path) -> bool:
    """Whether a daemon of this user listens on the control socket of
    ``mountpoint`` (mounted or not)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(channel.address(mountpoint, os.getuid()))
        except ConnectionRefusedError:
            return False
        return True


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
        self.daemon_log = DaemonLog(self.log)
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
        kill_mount(self.path, sig)

    def daemon_pids(self) -> list[int]:
        return daemon_pids(self.path)

    def remount(self) -> None:
        self.stop()
        self.start()

    def status(self) -> dict:
        return json.loads(vagonfs("status", str(self.path), "--json").stdout)

    def wait_uploaded(self, timeout: float = 60) -> None:
        """Until the store has confirmed every upload (as fsync would)."""
        wait_until(lambda: not self.status()["uploads"], timeout, interval=0.1,
                   message=lambda: f"uploads still pending: {self.status()}")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else "(no log)"

    def expect_log(self, *patterns: str, optional: bool = False) -> None:
        """This test makes the daemon log these lines on purpose (:meth:`DaemonLog.expect`)."""
        self.daemon_log.expect(*patterns, optional=optional)

    def calls(self) -> dict[str, int]:
        return dict(self.emulator.stats()["requests"])


@pytest.fixture
def mount_factory(emulator_factory, tmp_path, request):
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
    check_daemon_logs(request, [mount.daemon_log for mount in mounts])


@pytest.fixture
def vagon_mount(mount_factory):
    return mount_factory("vagon")


@pytest.fixture
def tenant_mount(mount_factory):
    return mount_factory("tenant")


def vagon_folder(emulator, name: str, /, **files) -> int:
    """A folder ``<name>000000`` in the emulator's shared Vagon files, with
    ``files`` in it when given (populate's fields: count, prefix, size,
    folders); its id."""
    folder = populate(emulator, count=1, prefix=name, object_type="directory")["ids"][0]
    if files:
        populate(emulator, parent_id=folder, **files)
    return folder


def sh(command: str, cwd=None, timeout: float = 120) -> str:
    """Run a shell command (real tools against the mount); fail with its stderr."""
    result = subprocess.run(command, shell=True, capture_output=True, text=True, cwd=cwd,
                            timeout=timeout)
    assert result.returncode == 0, f"{command!r} failed ({result.returncode}): {result.stderr}"
    return result.stdout
