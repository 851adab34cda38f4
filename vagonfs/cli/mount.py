"""``vagonfs mount``: its options, checked here, then handed to the daemon.

A mount that cannot start must fail the command that asked for it, with the
option named, so every value is checked before the daemon is started (in the
background, from ``/``, with the options it was given as long options and its
paths made absolute). ``-f`` runs the daemon in this process instead, so the
daemon's libraries are imported inside the command, never at the top: the
other commands, which import this module to parse, stay light.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vagonfs.cli.parser import checked
from vagonfs.config import (MountOptions, config_path, default_cache_dir, load_remote,
                            parse_duration, parse_size)
from vagonfs.errors import ConfigError


def _octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise ConfigError(f"not an octal mask: {text!r} (try 022 or 077)") from None


def _count(text: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"not a count: {text!r} (a whole number, 0 or more)")
    return int(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
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


def _absolute_paths(args: argparse.Namespace) -> None:
    """The paths the daemon is given, made absolute here: it runs from ``/``."""
    args.mountpoint = str(Path(args.mountpoint).expanduser().absolute())
    for name in ("cache_dir", "log_file"):
        if getattr(args, name):
            setattr(args, name, str(Path(getattr(args, name)).expanduser().absolute()))
    config = config_path(args.config).absolute()
    args.config = str(config) if config.exists() else None


def mount_options(args: argparse.Namespace) -> MountOptions:
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


def run(args: argparse.Namespace) -> int:
    options = mount_options(args)
    if not options.foreground:
        from vagonfs.daemon import launcher

        log_file = options.log_file or options.cache_dir / f"{options.remote.name}.log"
        return launcher.launch_background(_daemon_argv(args), log_file,
                                          parse_duration(args.mount_timeout))
    from vagonfs.daemon import mount
    from vagonfs.runtime import logs

    logs.setup(options.log_level, options.log_file)
    return mount.run(options)

