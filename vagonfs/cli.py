"""The `vagonfs` command: parses argv and hands each subcommand to its module.

Subcommand modules are imported only when used, so `vagonfs emulator` does not
load pyfuse3 and `vagonfs mount` does not load the ASGI stack.

mount(8) runs ``vagonfs SOURCE MOUNTPOINT -o opts`` (through mount.fuse3) for
``-t fuse.vagonfs`` and fstab lines, so that form means ``mount`` too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from vagonfs import __version__
from vagonfs.errors import ConfigError

SUBCOMMANDS = ("mount", "unmount", "umount", "status", "archive", "emulator", "demo")

# what mount(8) and fstab add that means nothing to a FUSE daemon
_GENERIC_MOUNT_OPTIONS = {"rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "auto",
                          "noauto", "user", "nouser", "users", "_netdev", "nofail",
                          "defaults", "async", "sync", "atime", "noatime", "relatime"}
_FLAG_OPTIONS = {"ro": ("read_only", True), "read_only": ("read_only", True),
                 "allow_other": ("allow_other", True), "foreground": ("foreground", True),
                 "no_xattrs": ("xattrs", False)}


def _add_mount_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="REMOTE:[PATH]", help="a remote from the config file, "
                   "optionally with a folder inside it (work:shared/Projects)")
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    p.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground and log to stderr")
    p.add_argument("-o", dest="fuse_options", action="append", default=[], metavar="OPT[,OPT]",
                   help="options in mount's style: ro, allow_other, uid=N, cache_dir=DIR, ... "
                        "(any long option, with _ for -)")
    p.add_argument("--config", help="config file (default $VAGONFS_CONFIG or "
                   "$XDG_CONFIG_HOME/vagonfs/config.toml)")
    p.add_argument("--read-only", action="store_true", help="refuse every change (EROFS)")
    p.add_argument("--allow-other", action="store_true",
                   help="let other users enter the mount (needs user_allow_other in "
                        "/etc/fuse.conf unless root)")
    p.add_argument("--uid", type=int, help="owner shown for every file (default: you)")
    p.add_argument("--gid", type=int, help="group shown for every file (default: yours)")
    p.add_argument("--umask", default="022", help="permission bits to clear (default 022)")
    p.add_argument("--cache-dir", help="where data, uploads in progress and their journal "
                   "live (default $XDG_CACHE_HOME/vagonfs)")
    p.add_argument("--cache-max-size", default="10G",
                   help="bound of the block cache of downloaded data (default 10G)")
    p.add_argument("--attr-timeout", default="1s",
                   help="how long the kernel trusts file attributes (default 1s)")
    p.add_argument("--dir-cache-time", default="5m",
                   help="how long a folder listing is reused (default 5m)")
    p.add_argument("--write-back-delay", default="2s",
                   help="how long a closed file waits before its upload (default 2s)")
    p.add_argument("--no-xattrs", dest="xattrs", action="store_false",
                   help="offer no extended attributes (no user.mime_type): ls -l of big "
                        "folders then makes no getxattr round trips")
    p.add_argument("--log-level", default="INFO",
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-file", help="log here (default: stderr with -f, else "
                   "<cache dir>/<remote>.log)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vagonfs",
        description="Mount Vagon Files, a tenant file store or Shannon workspaces as a folder.",
        epilog="Also: vagonfs REMOTE:[PATH] MOUNTPOINT -o OPTS, as mount -t fuse.vagonfs runs it.")
    parser.add_argument("--version", action="version", version=f"vagonfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    mount = sub.add_parser("mount", help="mount a remote on a folder",
                           description="Mount a remote (or a folder inside it) and return once "
                                       "the mount is ready.")
    _add_mount_arguments(mount)
    mount.set_defaults(run=_mount)

    unmount = sub.add_parser("unmount", aliases=["umount"],
                             help="upload what is pending, then unmount")
    unmount.add_argument("mountpoint", metavar="MOUNTPOINT")
    unmount.add_argument("--timeout", type=float, default=None,
                         help="give up (and stay mounted) if uploads take longer, in seconds")
    unmount.set_defaults(run=_unmount)

    status = sub.add_parser("status", help="pending uploads, cache use and request counts")
    status.add_argument("mountpoint", metavar="MOUNTPOINT")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--watch", action="store_true",
                        help="refresh every second until Ctrl-C (large copies, before unmount)")
    status.set_defaults(run=_status)

    from vagonfs import archive, demo
    from vagonfs.emulator import server

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
    emulator.set_defaults(run=server.run)

    demo_cmd = sub.add_parser(
        "demo", help="mount the emulator's demo data (all three stores) until Ctrl-C",
        description="Start the emulator with its demo data and mount Vagon, tenant and "
                    "Shannon under DIR/mnt; Ctrl-C uploads what is pending and unmounts.")
    demo.add_arguments(demo_cmd)
    demo_cmd.set_defaults(run=demo.run)
    return parser


def _normalize_argv(argv: list[str]) -> list[str]:
    """``vagonfs SOURCE MOUNTPOINT ...`` (mount.fuse3's form) means ``mount``."""
    if argv and argv[0] not in SUBCOMMANDS and not argv[0].startswith("-") and ":" in argv[0]:
        return ["mount", *argv]
    return argv


def _apply_fuse_options(args: argparse.Namespace) -> None:
    """Fold ``-o a,b=c`` into the long options; ignore what mount(8) adds."""
    for group in args.fuse_options:
        for item in filter(None, group.split(",")):
            name, _, value = item.partition("=")
            if name in _GENERIC_MOUNT_OPTIONS or name.startswith("x-"):
                continue
            if name.replace("-", "_") in _FLAG_OPTIONS and not value:
                setattr(args, *_FLAG_OPTIONS[name.replace("-", "_")])
                continue
            attr = name.replace("-", "_")
            if attr in ("source", "mountpoint", "fuse_options") or not hasattr(args, attr):
                raise ConfigError(f"unknown mount option: {name}")
            if not value:
                raise ConfigError(f"mount option {name} needs a value ({name}=...)")
            setattr(args, attr, int(value) if attr in ("uid", "gid") else value)


def _mount_options(args: argparse.Namespace):
    from vagonfs.config import (MountOptions, config_path, default_cache_dir, load_remote,
                                parse_duration, parse_size)

    _apply_fuse_options(args)
    remote_name, sep, subpath = args.source.partition(":")
    if not sep or not remote_name:
        raise ConfigError(f"expected REMOTE:[PATH], got {args.source!r}")
    remote = load_remote(remote_name, config_path(args.config))
    try:
        umask = int(str(args.umask), 8)
    except ValueError:
        raise ConfigError(f"umask must be octal, like 022 (got {args.umask!r})") from None
    cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    return MountOptions(
        remote=remote, subpath=subpath.strip("/"),
        mountpoint=Path(args.mountpoint).expanduser().absolute(),
        cache_dir=cache_dir.absolute(),
        read_only=bool(args.read_only), allow_other=bool(args.allow_other),
        uid=args.uid if args.uid is not None else os.getuid(),
        gid=args.gid if args.gid is not None else os.getgid(),
        umask=umask, cache_max_size=parse_size(args.cache_max_size),
        attr_timeout=parse_duration(args.attr_timeout),
        dir_cache_time=parse_duration(args.dir_cache_time),
        write_back_delay=parse_duration(args.write_back_delay),
        log_level=args.log_level, xattrs=bool(args.xattrs),
        log_file=Path(args.log_file).expanduser().absolute() if args.log_file else None,
        foreground=bool(args.foreground))


def _mount(args: argparse.Namespace) -> int:
    from vagonfs import logs, mount

    options = _mount_options(args)
    if not options.foreground:
        log_file = options.log_file or options.cache_dir / f"{options.remote.name}.log"
        argv = [a for a in sys.argv[1:] if a not in ("-f", "--foreground")]
        return mount.launch_background(_normalize_argv(argv), log_file)
    logs.setup(options.log_level, options.log_file)
    return mount.run(options)


def _unmount(args: argparse.Namespace) -> int:
    from vagonfs import control, mount

    try:
        replies = control.request(args.mountpoint, {"cmd": "unmount", "timeout": args.timeout},
                                  timeout=None)
        tty = sys.stderr.isatty()
        for reply in replies:
            if "progress" in reply and tty:
                pending = reply["progress"]
                done = sum(u["progress"] for u in pending)
                total = sum(u["size"] for u in pending)
                print(f"\ruploading {len(pending)} file(s): {done >> 20}/{total >> 20} MiB",
                      end="", file=sys.stderr, flush=True)
            if "done" in reply:
                if tty:
                    print(file=sys.stderr)
                failed = [u for u in reply["uploads"] if u["state"] == "failed"]
                if not reply["done"]:
                    print(f"vagonfs: uploads still pending after {args.timeout} s; "
                          "still mounted", file=sys.stderr)
                    return 1
                for upload in failed:
                    print(f"vagonfs: {upload['path']} was refused by the store "
                          f"({upload['error']}); kept in {upload['spool']}", file=sys.stderr)
    except (FileNotFoundError, ConnectionRefusedError):
        if mount.is_stale(args.mountpoint):
            print(f"vagonfs: {args.mountpoint}: its daemon is gone (stale mount); "
                  "cleaning up with fusermount3 -u", file=sys.stderr)
            os.execvp("fusermount3", ["fusermount3", "-u", "-z", args.mountpoint])
        print(f"vagonfs: no vagonfs mount at {args.mountpoint}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + 10
    while mount.is_mounted(args.mountpoint) and time.monotonic() < deadline:
        time.sleep(0.05)
    return 0


def _status(args: argparse.Namespace) -> int:
    from vagonfs import control, mount

    while True:
        try:
            status = next(control.request(args.mountpoint, {"cmd": "status"}))
        except (FileNotFoundError, ConnectionRefusedError, StopIteration):
            stale = mount.is_stale(args.mountpoint)
            print(f"vagonfs: {args.mountpoint}: " + (
                "stale mount, its daemon is gone (vagonfs unmount cleans it up)" if stale
                else "not a vagonfs mount"), file=sys.stderr)
            return 1
        text = json.dumps(status, indent=2) if args.json else _status_text(status)
        if not args.watch:
            print(text)
            return 0
        # on a terminal the screen is redrawn in place; elsewhere one report a second
        print(("\033[H\033[J" if sys.stdout.isatty() else "") + text, flush=True)
        time.sleep(1)


def _status_text(status: dict) -> str:
    lines = [f"{status['remote']}:{status['subpath']} ({status['type']}) on "
             f"{status['mountpoint']}, pid {status['pid']}",
             f"uploads pending: {len(status['uploads'])}"]
    for u in status["uploads"]:
        percent = 100 * u["progress"] // u["size"] if u["size"] else 100
        line = f"  {u['state']:<9} {u['path']}  {u['progress']}/{u['size']} bytes ({percent}%)"
        if u["error"]:
            line += f"  last error: {u['error']}"
        lines.append(line)
    cache = status["cache"]
    lines.append(f"cache: {cache['used'] >> 20} MiB of {cache['max'] >> 20} MiB in "
                 f"{cache['dir']}")
    lines += [f"{name}: {value}" for name, value in sorted(status["requests"].items())]
    return "\n".join(lines)


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


if __name__ == "__main__":
    sys.exit(main())
