"""`vagonfs archive` against the emulator's archive-download job, as a user runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
import zipfile

import pytest
from support import populate, wait_until


def write_config(tmp_path, emulator):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[remotes.emu]\ntype = "vagon"\nurl = "{emulator.url}"\napi_key = "{emulator.api_key}"\n'
        f'api_secret = "{emulator.api_secret}"\n\n'
        f'[remotes.files]\ntype = "tenant"\nurl = "{emulator.url}"\n'
        f'api_key = "{emulator.api_key}"\n')
    config.chmod(0o600)
    return config


def archive(config, *args, **kw):
    return subprocess.run([sys.executable, "-m", "vagonfs", "archive", "--config", str(config),
                           "--poll-interval", "0.1", *args], capture_output=True, text=True,
                          timeout=120, **kw)


@pytest.fixture
def emulator(emulator_factory):
    return emulator_factory("--seed-demo")


def test_archive_of_a_folder_holds_its_files(emulator, tmp_path):
    config = write_config(tmp_path, emulator)
    out = tmp_path / "projects.zip"
    result = archive(config, "emu:shared/Projects", str(out))
    assert result.returncode == 0, result.stderr
    names = zipfile.ZipFile(out).namelist()
    assert any(n.endswith("Alpha/design.txt") for n in names), names
    assert any("Beta/" in n for n in names), names
    assert zipfile.ZipFile(out).testzip() is None


def test_archive_errors_are_reported_clearly(emulator, tmp_path):
    config = write_config(tmp_path, emulator)
    populate(emulator, count=1, prefix="empty", object_type="directory")
    result = archive(config, "emu:shared/empty000000", str(tmp_path / "e.zip"))
    assert result.returncode == 1
    assert "Directory is empty or has no completed files" in result.stderr
    assert not (tmp_path / "e.zip").exists()
    result = archive(config, "emu:shared/no-such-folder", str(tmp_path / "n.zip"))
    assert result.returncode == 1 and "not found" in result.stderr.lower()
    result = archive(config, "files:docs", str(tmp_path / "t.zip"))
    assert result.returncode == 2 and "Vagon API only" in result.stderr


def test_ctrl_c_aborts_the_job_on_the_server(emulator, tmp_path):
    config = write_config(tmp_path, emulator)
    emulator.set_faults({"archive_delay_ms": 20000})
    proc = subprocess.Popen([sys.executable, "-m", "vagonfs", "archive", "--config",
                             str(config), "--poll-interval", "0.1", "emu:shared/Docs",
                             str(tmp_path / "slow.zip")], stderr=subprocess.PIPE, text=True)
    wait_until(lambda: emulator.stats()["requests"].get("vagon.archive_status"),
               message="the archive's status was never asked")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert emulator.stats()["requests"].get("vagon.archive_abort") == 1
    assert not (tmp_path / "slow.zip").exists()
