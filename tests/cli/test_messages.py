"""What `vagonfs` says to a user who got something wrong, before any daemon starts.

Each case runs the real command in a subprocess and checks its exact words: a
message that sends the user the wrong way is a defect like any other.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def vagonfs(*args: str, cwd=None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vagonfs", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[remotes.emu]\ntype = "tenant"\nurl = "http://127.0.0.1:9"\n'
                    'api_key = "k"\n')
    path.chmod(0o600)
    return path


def test_unknown_option_gets_mounts_usage_and_the_closest_option(config, tmp_path):
    result = vagonfs("mount", "--config", str(config), "emu:", str(tmp_path), "--cache-size",
                     "1G")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: vagonfs mount "), result.stderr
    assert ("vagonfs mount: error: unknown option --cache-size "
            "(did you mean --cache-max-size?)") in result.stderr


def test_unknown_o_option_names_itself_and_the_closest_one(config, tmp_path):
    result = vagonfs("mount", "--config", str(config), "emu:", str(tmp_path),
                     "-o", "ro,cache_size=1G")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: vagonfs mount "), result.stderr
    assert ("unknown mount option -o cache_size (did you mean -o cache_max_size?)"
            in result.stderr)


@pytest.mark.parametrize("option, message", [
    ("log_level=verbose", "argument --log-level: invalid choice: 'VERBOSE'"),
    ("umask=999", "argument --umask: not an octal mask: '999'"),
    ("write_back_delay=soon", "argument --write-back-delay: not a duration: 'soon'"),
    ("uid=me", "argument --uid: invalid int value: 'me'"),
    ("ro=yes", "mount option -o ro takes no value"),
    ("cache_dir", "mount option -o cache_dir needs a value"),
])
def test_bad_o_value_is_refused_by_the_command_naming_the_option(config, tmp_path, option,
                                                                  message):
    cache = tmp_path / "cache"
    result = vagonfs("mount", "--config", str(config), "emu:", str(tmp_path / "mnt"),
                     "--cache-dir", str(cache), "-o", option)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr
    assert not cache.exists()  # refused before a daemon (and its log) came to be


def test_log_level_in_lowercase_is_accepted(config, tmp_path):
    # accepted by the parser: the mount then fails on the dead url, not the level
    result = vagonfs("mount", "--config", str(config), "emu:", str(tmp_path / "none"),
                     "--log-level", "debug", "--cache-dir", str(tmp_path / "cache"))
    assert "log-level" not in result.stderr and "not a folder" in result.stderr, result.stderr


def test_missing_config_file_is_said_to_be_missing(tmp_path):
    result = vagonfs("mount", "--config", str(tmp_path / "none.toml"), "emu:",
                     str(tmp_path))
    assert result.returncode == 2
    assert result.stderr == f"vagonfs: the config file {tmp_path}/none.toml does not exist\n"


@pytest.mark.parametrize("command", [["emulator", "--port", "0"], ["demo", "DEMO"]])
def test_emulator_commands_say_how_to_install_the_extra(tmp_path, command):
    """Run with the emulator's libraries unimportable, as after a plain
    ``pip install vagonfs``: the import is blocked in the child itself."""
    block = ("import sys\n"
             "for name in ('starlette', 'uvicorn', 'python_multipart'):\n"
             "    sys.modules[name] = None  # import raises ImportError\n"
             "from vagonfs.cli.main import main\n"
             "sys.exit(main(sys.argv[1:]))\n")
    args = [str(tmp_path / a) if a == "DEMO" else a for a in command]
    result = subprocess.run([sys.executable, "-c", block, *args], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert (f"vagonfs {command[0]} needs the emulator's libraries (starlette, uvicorn, "
            "python_multipart missing): pip install 'vagonfs[emulator]'") in result.stderr
    assert not (tmp_path / "DEMO").exists()
