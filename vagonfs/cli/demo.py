"""`vagonfs demo [DIR]`: the emulator's demo data mounted, all three stores.

The first thing a newcomer runs, so it uses only the public pieces a user
would: the emulator as a subprocess, a config file like the one they will
write, and ``vagonfs mount``/``vagonfs unmount`` for each store. Its state
lives in ``DIR/.vagonfs-demo`` (emulator data, config, cache), so what you
change in the demo is still there the next time; delete that folder to start
afresh. It stays in the foreground until Ctrl-C or SIGTERM, then flushes and
unmounts everything it mounted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import vagonfs

STORES = ("vagon", "tenant", "shannon")

_TRY = """\
vagonfs demo: the emulator's demo data is mounted under {mnt}
  {mnt}/vagon    Vagon Files: shared/, machines/<name>/files, machines/<name>/tasks, recordings/
  {mnt}/tenant   the tenant file store (50 MB per file)
  {mnt}/shannon  Shannon session workspaces (read-only)

Try, in another terminal:
  ls -l {mnt}/vagon/shared/Projects/Alpha
  cp /etc/services {mnt}/tenant/docs/ && ls -l {mnt}/tenant/docs
  sha256sum {mnt}/vagon/shared/Media/sample-video.bin
  rsync -a /usr/share/doc/bash/ {mnt}/vagon/shared/bash-doc/
  cat {mnt}/shannon/*/notes.md
  vagonfs status {mnt}/vagon
  vagonfs mount --config {config} vagon:shared ~/somewhere   (your own mount)

Press Ctrl-C here to upload what is pending, unmount and stop the emulator.
"""


def add_arguments(parser) -> None:
    parser.add_argument("dir", nargs="?", default="vagonfs-demo",
                        help="where to mount (DIR/mnt/...) and keep the demo's state "
                             "(default ./vagonfs-demo)")


def run(args) -> int:
    from vagonfs.emulator.process import EmulatorProcess

    base = Path(args.dir).expanduser().absolute()
    state = base / ".vagonfs-demo"
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    mnt = base / "mnt"
    # the emulator child runs ``python -m vagonfs``: from here, no folder
    # named vagonfs (a clone, when run from its parent) can shadow the package
    os.chdir("/")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    with EmulatorProcess(state / "emulator", args=("--seed-demo",)) as emulator:
        config = _write_config(state / "config.toml", emulator)
        mounted: list[Path] = []
        try:
            for store in STORES:
                if stop.is_set():  # Ctrl-C while mounting: what is mounted is unmounted
                    break
                point = mnt / store
                point.mkdir(parents=True, exist_ok=True)
                # in a session of its own: a Ctrl-C meant for the demo would cut the
                # command short while its daemon, in its own session, went on to mount
                # unseen, and was left mounted
                _vagonfs("mount", "--config", str(config), "--cache-dir", str(state / "cache"),
                         f"{store}:", str(point), check=True, own_session=True)
                mounted.append(point)
            else:
                print(_TRY.format(mnt=mnt, config=config), flush=True)
                stop.wait()
        except subprocess.CalledProcessError:
            print("vagonfs demo: a mount failed (see the message above)", file=sys.stderr)
            return 1
        finally:
            for point in reversed(mounted):
                _vagonfs("unmount", str(point))
            print("vagonfs demo: unmounted; stopping the emulator", flush=True)
    return 0


def _write_config(path: Path, emulator) -> Path:
    """A config with one remote per store, as a user would write it (mode 0600)."""
    lines = []
    for store in STORES:
        lines += [f"[remotes.{store}]", f'type = "{store}"', f'url = "{emulator.url}"',
                  f'api_key = "{emulator.api_key}"']
        if store == "vagon":
            lines.append(f'api_secret = "{emulator.api_secret}"')
        lines.append("")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines))
    os.chmod(path, 0o600)
    return path


def _vagonfs(*argv: str, check: bool = False, own_session: bool = False) -> None:
    subprocess.run(vagonfs.command(*argv), check=check, stdin=subprocess.DEVNULL,
                   start_new_session=own_session)
