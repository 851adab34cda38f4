"""The `vagonfs` command: parses argv and hands each subcommand to its module.

Subcommand modules are imported only when used, so `vagonfs emulator` does not
load pyfuse3 and `vagonfs mount` does not load the ASGI stack.
"""

from __future__ import annotations

import argparse
import sys

from vagonfs import __version__
from vagonfs.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vagonfs",
        description="Mount Vagon Files, a tenant file store or Shannon workspaces as a folder.",
    )
    parser.add_argument("--version", action="version", version=f"vagonfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from vagonfs.emulator import server

    emulator = sub.add_parser(
        "emulator", help="serve the three store APIs on loopback (tests, demo, trying out)",
        description="Serve the Vagon, tenant and Shannon APIs on one port, with their wire "
                    "formats, auth and errors. See docs/EMULATOR.md.")
    server.add_arguments(emulator)
    emulator.set_defaults(run=server.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
