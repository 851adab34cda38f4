"""The `vagonfs` command: parses argv and hands each subcommand to its module.

What a command needs beyond argparse is imported inside the command, so
`vagonfs emulator` does not load pyfuse3, `vagonfs mount` does not load the
ASGI stack, and `status`, `sync` and `unmount` load neither trio nor pyfuse3.

mount(8) runs ``vagonfs SOURCE MOUNTPOINT -o opts`` (through mount.fuse3) for
``-t fuse.vagonfs`` and fstab lines, so that form means ``mount`` too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from vagonfs import __version__
from vagonfs.cli import archive, daemon_requests, demo, mount
from vagonfs.cli.parser import CommandParser
from vagonfs.emulator import server
from vagonfs.errors import ConfigError

SUBCOMMANDS = ("mount", "unmount", "umount", "status", "sync", "archive", "emulator", "demo")

# the extra that `vagonfs emulator` and `vagonfs demo` need, by the modules it brings
_EMULATOR_MODULES = ("starlette", "uvicorn", "python_multipart")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vagonfs",
        description="Mount Vagon Files, a tenant file store or Shannon workspaces as a folder.",
        epilog="Also: vagonfs REMOTE:[PATH] MOUNTPOINT -o OPTS, as mount -t fuse.vagonfs runs it.")
    parser.add_argument("--version", action="version", version=f"vagonfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=CommandParser)

    mount_cmd = sub.add_parser("mount", help="mount a remote on a folder",
                               description="Mount a remote (or a folder inside it) and return "
                                           "once the mount is ready.")
    mount_cmd.mount_options = True
    mount.add_arguments(mount_cmd)
    mount_cmd.set_defaults(run=mount.run, parser=mount_cmd)

    unmount = sub.add_parser(
        "unmount", aliases=["umount"], help="upload what is pending, then unmount",
        description="Upload what is pending for at most the mount's --stop-timeout, then "
                    "unmount; what is not uploaded by then stays in the journal for the next "
                    "mount (exit status 75).")
    unmount.add_argument("mountpoint", metavar="MOUNTPOINT")
    unmount.add_argument("--timeout", type=float, default=None,
                         help="give up (and stay mounted) if uploads take longer, in seconds")
    unmount.set_defaults(run=daemon_requests.unmount)

    sync = sub.add_parser(
        "sync", help="upload what is pending now and wait until the store has it",
        description="Upload every pending file now, without the write-back delay, and "
                    "return once the store has confirmed each: exit 0, or 1 naming each "
                    "file not uploaded and why (refused by the store, local copy lost, or "
                    "not confirmed within --timeout).")
    sync.add_argument("mountpoint", metavar="MOUNTPOINT")
    sync.add_argument("--timeout", type=float, default=None,
                      help="stop waiting after this many seconds (default: wait until the "
                           "store has answered for every file)")
    sync.set_defaults(run=daemon_requests.sync)

    status = sub.add_parser("status", help="pending uploads, cache use and request counts")
    status.add_argument("mountpoint", metavar="MOUNTPOINT")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--watch", action="store_true",
                        help="refresh every second until Ctrl-C (large copies, before unmount)")
    status.set_defaults(run=daemon_requests.status)

    archive_cmd = sub.add_parser(
        "archive", help="download a Vagon folder as a zip made by the server",
        description="Ask the Vagon archive-download job for a zip of a folder or file, "
                    "wait for it with a progress line, and save it. Ctrl-C aborts the job.")
    archive.add_arguments(archive_cmd)
    archive_cmd.set_defaults(run=archive.run)

    emulator = sub.add_parser(
        "emulator", help="serve the three store APIs on loopback (tests, demo, trying out)",
        description="Serve the Vagon, tenant and Shannon APIs on one port, with their wire "
                    "formats, auth and errors. See docs/EMULATOR.md.")
    server.add_arguments(emulator)
    emulator.set_defaults(run=_needs_emulator_extra(server.run))

    demo_cmd = sub.add_parser(
        "demo", help="mount the emulator's demo data (all three stores) until Ctrl-C",
        description="Start the emulator with its demo data and mount Vagon, tenant and "
                    "Shannon under DIR/mnt; Ctrl-C uploads what is pending and unmounts.")
    demo.add_arguments(demo_cmd)
    demo_cmd.set_defaults(run=_needs_emulator_extra(demo.run))
    return parser


def _normalize_argv(argv: list[str]) -> list[str]:
    """``vagonfs SOURCE MOUNTPOINT ...`` (mount.fuse3's form) means ``mount``."""
    if argv and argv[0] not in SUBCOMMANDS and not argv[0].startswith("-") and ":" in argv[0]:
        return ["mount", *argv]
    return argv


def _needs_emulator_extra(run):
    """``vagonfs emulator`` and ``vagonfs demo`` run the emulator, whose
    server libraries are the ``emulator`` extra: say how to install it rather
    than fail on an import deep inside."""
    def checked(args: argparse.Namespace) -> int:
        missing = [name for name in _EMULATOR_MODULES if not _importable(name)]
        if missing:
            raise ConfigError(
                f"vagonfs {args.command} needs the emulator's libraries ({', '.join(missing)} "
                "missing): pip install 'vagonfs[emulator]' (in a clone, scripts/setup.sh "
                "installs them into .venv)")
        return run(args)

    return checked


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_normalize_argv(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except ConfigError as exc:
        print(f"vagonfs: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `vagonfs status MNT | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
