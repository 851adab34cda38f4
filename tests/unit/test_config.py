"""Config file, environment overrides and the mount command line."""

from __future__ import annotations

import pytest

from vagonfs.cli.main import _normalize_argv, build_parser
from vagonfs.cli.mount import mount_options
from vagonfs.config import config_path, load_remote, parse_duration, parse_size
from vagonfs.errors import ConfigError

CONFIG = """
[remotes.work]
type = "vagon"
url = "https://api.vagon.io/"
api_key = "k"
api_secret = "s"

[remotes.files]
type = "tenant"
url = "https://tenant.example"
api_key = "t"
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    path.chmod(0o600)
    return path


def test_remote_from_file_with_env_override(config, monkeypatch):
    monkeypatch.setenv("VAGONFS_WORK_API_SECRET", "from-env")
    remote = load_remote("work", config)
    assert (remote.type, remote.url, remote.api_key) == ("vagon", "https://api.vagon.io", "k")
    assert remote.api_secret == "from-env"
    assert "from-env" not in repr(remote) and "'k'" not in repr(remote)


def test_remote_from_environment_alone(tmp_path, monkeypatch):
    for field, value in (("TYPE", "shannon"), ("URL", "http://x"), ("API_KEY", "sk")):
        monkeypatch.setenv(f"VAGONFS_AGENTS_{field}", value)
    assert load_remote("agents", tmp_path / "absent.toml").type == "shannon"


def test_config_readable_by_others_is_refused(config):
    config.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_remote("work", config)


@pytest.mark.parametrize("body, message", [
    ('[remotes.x]\ntype = "ftp"\nurl = "u"\napi_key = "k"\n', "type must be"),
    ('[remotes.x]\ntype = "vagon"\nurl = "u"\napi_key = "k"\n', "api_secret"),
    ('[remotes.x]\ntype = "tenant"\nurl = "u"\napi_key = "k"\ncolour = 1\n', "unknown field"),
    ('[remotes.y]\n', "no remote called"),
    ('not toml', "config.toml"),
])
def test_bad_config_is_a_clear_error(tmp_path, body, message):
    path = tmp_path / "config.toml"
    path.write_text(body)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=message):
        load_remote("x", path)


def test_sizes_and_durations():
    assert parse_size("10G") == 10 * 1024 ** 3
    assert parse_size("512M") == 512 * 1024 ** 2
    assert parse_size("4096") == 4096
    assert parse_duration("2s") == 2 and parse_duration("5m") == 300
    assert parse_duration("250ms") == 0.25
    with pytest.raises(ConfigError):
        parse_size("lots")


def test_mount_options_from_o_and_long_options(config, tmp_path):
    argv = ["mount", "files:docs/", str(tmp_path), "--config", str(config),
            "-o", "ro,uid=1234,cache_max_size=1G,dir-cache-time=10s",
            "-o", "allow_other,umask=077,no_xattrs,no_store_ahead"]
    options = mount_options(build_parser().parse_args(argv))
    assert options.subpath == "docs"
    assert options.read_only and options.allow_other and not options.xattrs
    assert not options.store_ahead
    assert options.uid == 1234 and options.umask == 0o077
    assert options.cache_max_size == 1024 ** 3 and options.dir_cache_time == 10


def test_mount_helper_form_ignores_generic_mount_options(config, tmp_path):
    # what /sbin/mount.fuse3 runs for `mount -t fuse.vagonfs work:shared /mnt -o ...`
    argv = _normalize_argv(["work:shared", str(tmp_path), "-o",
                            f"rw,config={config},_netdev,x-systemd.automount,dev,suid"])
    assert argv[0] == "mount"
    options = mount_options(build_parser().parse_args(argv))
    assert options.remote.name == "work" and options.subpath == "shared"
    assert not options.read_only


def test_unknown_mount_option_is_refused(config, tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["mount", "work:", str(tmp_path), "--config", str(config),
                                   "-o", "colour=blue"])
    assert "unknown mount option -o colour" in capsys.readouterr().err


def test_o_values_are_checked_as_their_long_option(config, tmp_path, capsys):
    args = build_parser().parse_args(["mount", "work:", str(tmp_path), "-o", "log_level=debug"])
    assert args.log_level == "DEBUG"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["mount", "work:", str(tmp_path), "-o", "cache_max_size=lots"])
    assert "argument --cache-max-size: not a size: 'lots'" in capsys.readouterr().err


def test_named_config_file_must_exist(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="does not exist"):
        config_path(str(tmp_path / "none.toml"))
    monkeypatch.setenv("VAGONFS_CONFIG", str(tmp_path / "none.toml"))
    with pytest.raises(ConfigError, match="none.toml does not exist"):
        config_path()
