"""Remotes from the TOML config file, and the mount settings, validated once.

The config names remotes the way rclone users know (``[remotes.NAME]`` with
``type``, ``url`` and credentials). Secrets can stay off disk: any field can
come from ``VAGONFS_<REMOTE>_<FIELD>`` instead. A config file that other users
can read is refused, since it usually holds API secrets.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from vagonfs.errors import ConfigError

STORE_TYPES = ("vagon", "tenant", "shannon")
_FIELDS = ("type", "url", "api_key", "api_secret")


@dataclass(frozen=True)
class Remote:
    name: str
    type: str
    url: str
    api_key: str = field(repr=False)
    api_secret: str = field(default="", repr=False)


def config_path(explicit: str | None = None) -> Path:
    """The config file: ``--config``, else ``VAGONFS_CONFIG``, else the XDG default.

    A file named by either must exist: a typo in its name would otherwise
    read as a missing remote. The XDG default may be absent (remotes can come
    from the environment alone).
    """
    named = explicit or os.environ.get("VAGONFS_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"the config file {path} does not exist" if not path.exists()
                              else f"the config file {path} is not a file")
        return path
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "vagonfs" / "config.toml"


def _env_name(remote: str, field_name: str) -> str:
    return "VAGONFS_" + re.sub(r"[^A-Za-z0-9]", "_", remote).upper() + "_" + field_name.upper()


def load_remote(name: str, path: Path) -> Remote:
    """Read one remote from the config file, with environment overrides applied.

    A remote may be defined by the environment alone (all of
    ``VAGONFS_<NAME>_TYPE``, ``_URL``, ``_API_KEY``), so no file is needed.
    """
    table: dict = {}
    if path.exists():
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH | stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(
                f"{path} is readable or writable by other users and may hold secrets; "
                f"run: chmod 600 {path}")
        try:
            with path.open("rb") as fh:
                document = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        table = dict(document.get("remotes", {}).get(name, {}))
    for field_name in _FIELDS:
        value = os.environ.get(_env_name(name, field_name))
        if value is not None:
            table[field_name] = value
    if not table:
        where = f"in {path}" if path.exists() else f"({path} does not exist)"
        raise ConfigError(f"no remote called {name!r} {where}, nor "
                          f"{_env_name(name, 'type')} and friends in the environment")
    unknown = set(table) - set(_FIELDS)
    if unknown:
        raise ConfigError(f"remote {name!r}: unknown field(s) {', '.join(sorted(unknown))}")
    missing = [f for f in ("type", "url", "api_key") if not table.get(f)]
    if table.get("type") == "vagon" and not table.get("api_secret"):
        missing.append("api_secret")
    if missing:
        raise ConfigError(f"remote {name!r}: missing {', '.join(missing)}")
    if table["type"] not in STORE_TYPES:
        raise ConfigError(f"remote {name!r}: type must be one of {', '.join(STORE_TYPES)}")
    return Remote(name=name, type=table["type"], url=table["url"].rstrip("/"),
                  api_key=table["api_key"], api_secret=table.get("api_secret", ""))


def parse_size(text: str) -> int:
    """Bytes from '10G', '512M', '4096' (binary multiples, as rclone)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ConfigError(f"not a size: {text!r} (try 512M or 10G)")
    number, unit = match.groups()
    return int(float(number) * 1024 ** " kmgt".index(unit.lower() or " "))


def parse_duration(text: str) -> float:
    """Seconds from '2s', '5m', '1h', '0.5' (bare numbers are seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(text))
    if not match:
        raise ConfigError(f"not a duration: {text!r} (try 2s, 5m or 1h)")
    number, unit = match.groups()
    return float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[unit]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "vagonfs"


@dataclass(frozen=True)
class MountOptions:
    """Everything ``vagonfs mount`` was asked for, after validation."""

    remote: Remote
    subpath: str  # inside the remote's tree, '' for its root
    mountpoint: Path
    cache_dir: Path
    read_only: bool = False
    allow_other: bool = False
    allow_non_empty: bool = False
    delay_connect: bool = False  # no check of the store before the mount is offered
    links: bool = False  # symbolic links kept as NAME.vagonfslink files
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    cache_max_size: int = 10 * 1024 ** 3
    attr_timeout: float | None = None  # None: as long as the listing it came from
    dir_cache_time: float = 300.0
    list_ahead: int = 32  # subfolders listed ahead of a walk; 0: none
    write_back_delay: float = 2.0
    stop_timeout: float = 30.0  # how long a signal waits for uploads (systemd kills at 90 s)
    log_level: str = "INFO"
    xattrs: bool = False  # user.mime_type, at the cost of two getxattr per file in ls -l
    store_ahead: bool = True  # blocks read ahead go to the kernel's page cache too
    read_ahead: int = 1024 * 1024  # bytes; the kernel's FUSE read size, set when root
    log_file: Path | None = None
    foreground: bool = False
