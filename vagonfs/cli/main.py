"""The `vagonfs` command: parses argv and hands each subcommand to its module.

Subcommand modules are imported only when used, so `vagonfs emulator` does not
load pyfuse3 and `vagonfs mount` does not load the ASGI stack.

mount(8) runs ``vagonfs SOURCE MOUNTPOINT -o opts`` (through mount.fuse3) for
``-t fuse.vagonfs`` and fstab lines, so that form means ``mount`` too.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path

from vagonfs import __version__
from vagonfs.cli.parser import CommandParser, checked
from vagonfs.errors import ConfigError

SUBCOMMANDS = ("mount", "unmount", "umount", "status", "sync", "archive", "emulator", "demo")
# ``unmount``'s status when the mount ended with uploads left in its journal, as
# the daemon's own (sysexits.h's EX_TEMPFAIL: the next mount finishes them)
EXIT_UPLOADS_LEFT = 75

# the extra that `vagonfs emulator` and `vagonfs demo` need, by the modules it brings
_EMULATOR_MODULES = ("starlette", "uvicorn", "python_multipart")


def _octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise ConfigError(f"not an octal mask: {text!r} (try 022 or 077)") from None


def _count(text: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"not a count: {text!r} (a whole number, 0 or more)")
    return int(text)


def _add_mount_arguments(p: argparse.ArgumentParser) -> None:
    from vagonfs.config import parse_duration, parse_size

    p.add_argument("source", metavar="REMOTE:[PATH]", help="a remote from the config file, "
                   "optionally with a folder inside it (work:shared/Projects)")
    p.add_argument("mountpoint", metavar="MOUNTPOINT")
    p.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground and log to stderr")
    p.add_argument("-o", metavar="OPT[,OPT]",
                   help="options in mount's style: ro, allow_other, uid=N, cache_dir=DIR, ... "
                        "(any long option, with _ for -)")
    p.add_argument("--config", help="config file (default $VAGONFS_CONFIG or "
                   "$XDG_CONFIG_HOME/vagonfs/config.toml)")
    p.add_argument("--read-only", action="store_true", help="refuse every change (EROFS)")
    p.add_argument("--allow-other", action="store_true",
                   help="let other users enter the mount (needs user_allow_other in "
                        "/etc/fuse.conf unless root)")
    p.add_argument("--allow-non-empty", action="store_true",
                   help="mount over a folder that holds files (they are hidden until "
                        "unmount)")
    p.add_argument("--delay-connect", action="store_true",
                   help="mount without first checking that the store answers (fstab "
                        "mounts at boot); the first access then waits for the store")
    p.add_argument("--links", action="store_true",
                   help="keep symbolic links, each as a small file NAME.vagonfslink on the "
                        "store, shown as the link again (off: symlink fails with EPERM)")
    p.add_argument("--uid", type=int, help="owner shown for every file (default: you)")
    p.add_argument("--gid", type=int, help="group shown for every file (default: yours)")
    p.add_argument("--umask", default="022", type=checked(_octal),
                   help="permission bits to clear (default 022)")
    p.add_argument("--cache-dir", help="where data, uploads in progress and their journal "
                   "live (default $XDG_CACHE_HOME/vagonfs)")
    p.add_argument("--cache-max-size", default="10G", type=checked(parse_size),
                   help="bound of the block cache of downloaded data (default 10G)")
    p.add_argument("--attr-timeout", type=checked(parse_duration),
                   help="the longest the kernel keeps a file's attributes (default: as long "
                        "as the listing they came from, see --dir-cache-time)")
    p.add_argument("--dir-cache-time", default="5m", type=checked(parse_duration),
                   help="how long a folder listing is reused (default 5m)")
    p.add_argument("--list-ahead", default="32", type=checked(_count),
                   help="when a folder is read, list this many of its subfolders ahead "
                        "of a walk (find, du, rsync, a file manager), in the background "
                        "(default 32; 0: never)")
    p.add_argument("--write-back-delay", default="2s", type=checked(parse_duration),
                   help="how long a closed file waits before its upload (default 2s)")
    p.add_argument("--stop-timeout", default="30s", type=checked(parse_duration),
                   help="once the mount is ending (SIGTERM, SIGINT, SIGHUP, vagonfs unmount, "
                        "umount or fusermount3 -u), how long to go on uploading before "
                        "unmounting anyway; what is left stays in the journal for the next "
                        "mount (default 30s; 0: unmount at once)")
    p.add_argument("--mount-timeout", default="60s", type=checked(parse_duration),
                   help="how long vagonfs mount waits for the daemon to be ready; past it "
                        "the daemon is stopped and the mount fails (default 60s)")
    p.add_argument("--read-ahead", default="1M", type=checked(parse_size),
                   help="the kernel's read-ahead for the mount, which is also the size of "
                        "its FUSE reads; set when mounting as root (default 1M; 0 leaves "
                        "the kernel's 128K)")
    p.add_argument("--xattrs", action=argparse.BooleanOptionalAction, default=False,
                   help="offer the read-only extended attribute user.mime_type (the store's "
                        "content type); each ls -l then asks the daemon two per file "
                        "(default: off, and the kernel stops asking after the first)")
    p.add_argument("--no-store-ahead", dest="store_ahead", action="store_false",
                   help="keep blocks read ahead in the daemon until the kernel asks for "
                        "them, instead of handing them to the kernel's page cache at once "
                        "where its FUSE reads are small (--read-ahead under 512K; slower "
                        "reads there; for a kernel or a host short of page cache)")
    p.add_argument("--log-level", default="INFO", type=str.upper,
                   choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="DEBUG, INFO, WARNING or ERROR, in any case (default INFO)")
    p.add_argument("--log-file", help="log here (default: stderr with -f, else "
                   "<cache dir>/<remote>.log)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vagonfs",
        description="Mount Vagon Files, a tenant file store or Shannon workspaces as a folder.",
        epilog="Also: vagonfs REMOTE:[PATH] MOUNTPOINT -o OPTS, as mount -t fuse.vagonfs runs it.")
    parser.add_argument("--version", action="version", version=f"vagonfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=CommandParser)

    mount = sub.add_parser("mount", help="mount a remote on a folder",
                           description="Mount a remote (or a folder inside it) and return once "
                                       "the mount is ready.")
    mount.mount_options = True
    _add_mount_arguments(mount)
    mount.set_defaults(run=_mount, parser=mount)

    unmount = sub.add_parser(
        "unmount", aliases=["umount"], help="upload what is pending, then unmount",
        description="Upload what is pending for at most the mount's --stop-timeout, then "
                    "unmount; what is not uploaded by then stays in the journal for the next "
                    "mount (exit status 75).")
    unmount.add_argument("mountpoint", metavar="MOUNTPOINT")
    unmount.add_argument("--timeout", type=float, default=None,
                         help="give up (and stay mounted) if uploads take longer, in seconds")
    unmount.set_defaults(run=_unmount)

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
    sync.set_defaults(run=_sync)

    status = sub.add_parser("status", help="pending uploads, cache use and request counts")
    status.add_argument("mountpoint", metavar="MOUNTPOINT")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--watch", action="store_true",
                        help="refresh every second until Ctrl-C (large copies, before unmount)")
    status.set_defaults(run=_status)

    from vagonfs.cli import archive, demo
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


def _absolute_paths(args: argparse.Namespace) -> None:
    """The paths the daemon is given, made absolute here: it runs from ``/``."""
    from vagonfs.config import config_path

    args.mountpoint = str(Path(args.mountpoint).expanduser().absolute())
    for name in ("cache_dir", "log_file"):
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).expanduser().absolute()))
    config = config_path(args.config).absolute()
    args.config = str(config) if config.exists() else None


def _mount_options(args: argparse.Namespace):
    from vagonfs.config import (MountOptions, config_path, default_cache_dir, load_remote,
                                parse_duration, parse_size)

    _absolute_paths(args)
    remote_name, sep, subpath = args.source.partition(":")
    if not sep or not remote_name:
        raise ConfigError(f"expected REMOTE:[PATH], got {args.source!r}")
    remote = load_remote(remote_name, config_path(args.config))
    return MountOptions(
        remote=remote, subpath=subpath.strip("/"), mountpoint=Path(args.mountpoint),
        cache_dir=Path(args.cache_dir) if args.cache_dir else default_cache_dir(),
        read_only=bool(args.read_only), allow_other=bool(args.allow_other),
        allow_non_empty=bool(args.allow_non_empty), delay_connect=bool(args.delay_connect),
        links=bool(args.links),
        uid=args.uid if args.uid is not None else os.getuid(),
        gid=args.gid if args.gid is not None else os.getgid(),
        umask=_octal(args.umask), cache_max_size=parse_size(args.cache_max_size),
        attr_timeout=(parse_duration(args.attr_timeout) if args.attr_timeout is not None
                      else None),
        dir_cache_time=parse_duration(args.dir_cache_time), list_ahead=_count(args.list_ahead),
        write_back_delay=parse_duration(args.write_back_delay),
        stop_timeout=parse_duration(args.stop_timeout),
        log_level=args.log_level, xattrs=bool(args.xattrs),
        store_ahead=bool(args.store_ahead),
        read_ahead=parse_size(args.read_ahead),
        log_file=Path(args.log_file) if args.log_file else None,
        foreground=bool(args.foreground))


def _daemon_argv(args: argparse.Namespace) -> list[str]:
    """``mount``'s arguments for the daemon, from what was parsed: long options
    only (``-o`` is folded in), paths absolute, nothing left at its default."""
    argv = ["mount", args.source, args.mountpoint]
    for action in args.parser.named_actions:
        names = [s for s in action.option_strings if s.startswith("--")]
        value = getattr(args, action.dest, None)
        if not names or action.dest in ("help", "foreground") or value == action.default:
            continue
        argv.append(names[0] if action.nargs == 0 else f"{names[0]}={value}")
    return argv


def _mount(args: argparse.Namespace) -> int:
    options = _mount_options(args)
    if not options.foreground:
        from vagonfs.daemon import launcher

        log_file = options.log_file or options.cache_dir / f"{options.remote.name}.log"
        from vagonfs.config import parse_duration

        return launcher.launch_background(_daemon_argv(args), log_file,
                                          parse_duration(args.mount_timeout))
    from vagonfs.daemon import mount
    from vagonfs.runtime import logs

    logs.setup(options.log_level, options.log_file)
    return mount.run(options)


def _unmount(args: argparse.Namespace) -> int:
    from vagonfs.control import channel, mounttable

    try:
        replies = channel.request(args.mountpoint, {"cmd": "unmount", "timeout": args.timeout},
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
                if not reply["done"] and not _unmounted_soon(args.mountpoint):
                    print(f"vagonfs: uploads still pending after {args.timeout} s; "
                          "still mounted", file=sys.stderr)
                    return 1
                for upload in reply["uploads"]:
                    if upload["state"] in ("failed", "lost"):
                        print(f"vagonfs: {_not_uploaded(args.mountpoint, upload)}",
                              file=sys.stderr)
                left = [u for u in reply["uploads"] if u["state"] not in ("failed", "lost")]
                if left or not reply["done"]:  # the stop timeout, or a signal, came first
                    print(f"vagonfs: unmounted with {len(left)} file(s) not uploaded; they "
                          "stay in the journal, and the next mount of this remote with the "
                          "same cache dir uploads them", file=sys.stderr)
                    _unmounted_soon(args.mountpoint, 10)
                    return EXIT_UPLOADS_LEFT
    except PermissionError as exc:
        print(f"vagonfs: {exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ConnectionRefusedError):
        if mounttable.is_stale(args.mountpoint):
            print(f"vagonfs: {args.mountpoint}: its daemon is gone (stale mount); "
                  "cleaning up with fusermount3 -u", file=sys.stderr)
            os.execvp("fusermount3", ["fusermount3", "-u", "-z", args.mountpoint])
        print(f"vagonfs: no vagonfs mount at {args.mountpoint}", file=sys.stderr)
        return 1
    _unmounted_soon(args.mountpoint, 10)
    return 0


def _sync(args: argparse.Namespace) -> int:
    """One request; the daemon answers once the store has, or the timeout passed."""
    from vagonfs.control import channel

    try:
        reply = next(channel.request(args.mountpoint,
                                     {"cmd": "sync", "timeout": args.timeout}, timeout=None),
                     None)
    except (PermissionError, FileNotFoundError, ConnectionRefusedError) as exc:
        return _no_daemon(args.mountpoint, exc)
    if reply is None:
        print(f"vagonfs: {args.mountpoint}: the mount stopped before the store confirmed "
              "its uploads", file=sys.stderr)
        return 1
    for upload in reply["left"]:
        print(f"vagonfs: {_not_uploaded(args.mountpoint, upload, args.timeout)}",
              file=sys.stderr)
    return 0 if reply["done"] else 1


def _no_daemon(mountpoint: str, why: BaseException | None = None) -> int:
    """No daemon answers at ``mountpoint``: say whether one died there (or,
    for a daemon of another user's, that it is not ours to ask); status 1."""
    from vagonfs.control import mounttable

    if isinstance(why, PermissionError):
        print(f"vagonfs: {why}", file=sys.stderr)
        return 1
    print(f"vagonfs: {mountpoint}: " + (
        "stale mount, its daemon is gone (vagonfs unmount cleans it up)"
        if mounttable.is_stale(mountpoint) else "not a vagonfs mount"), file=sys.stderr)
    return 1


def _not_uploaded(mountpoint: str, upload: dict, timeout: float | None = None) -> str:
    """Which file the store does not have, and why, for ``sync`` and ``unmount``."""
    path = os.path.join(mountpoint, upload["path"])
    if upload["state"] == "failed":
        return (f"not uploaded: {path}: refused by the store ({upload['error']}); "
                f"kept in {upload['spool']}")
    if upload["state"] == "lost":
        return f"not uploaded: {path}: {upload['error']}"
    last = f"; last error: {upload['error']}" if upload["error"] else ""
    within = f" within {timeout:g} s" if timeout is not None else ""
    return f"not uploaded: {path}: not confirmed by the store{within} ({upload['state']}{last})"


def _unmounted_soon(mountpoint: str, seconds: float = 3) -> bool:
    """Whether the mount is gone within ``seconds``."""
    from vagonfs.control import mounttable

    deadline = time.monotonic() + seconds
    while mounttable.is_mounted(mountpoint):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _status(args: argparse.Namespace) -> int:
    from vagonfs.control import channel
    from vagonfs.control import status as status_report

    while True:
        try:
            status = next(channel.request(args.mountpoint, {"cmd": "status"}))
        except (PermissionError, FileNotFoundError, ConnectionRefusedError,
                StopIteration) as exc:
            return _no_daemon(args.mountpoint, exc)
        text = json.dumps(status, indent=2) if args.json else status_report.text(status)
        if not args.watch:
            print(text)
            return 0
        # on a terminal the screen is redrawn in place; elsewhere one report a second
        print(("\033[H\033[J" if sys.stdout.isatty() else "") + text, flush=True)
        time.sleep(1)


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
