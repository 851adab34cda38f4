"""Secrets and access: credentials never leave the config file, other users stay out."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from .conftest import sh, vagonfs

KEY = "key-3f9a1c7e55"
SECRET = "secret-b81d09e4c2aa"


@pytest.mark.parametrize("store,subpath", [("vagon", "shared"), ("tenant", "")])
def test_credentials_never_in_logs_ps_or_cache(mount_factory, emulator_factory, tmp_path,
                                               store, subpath):
    emulator = emulator_factory("--api-key", KEY, "--api-secret", SECRET)
    assert (emulator.api_key, emulator.api_secret) == (KEY, SECRET)
    mount = mount_factory(store, emulator=emulator, subpath=subpath,
                          options=("--log-level", "DEBUG"))
    emulator.set_faults({"rules": [{"route": "*", "status": 503, "times": 2}]})
    (tmp_path / "f.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    sh(f"cp {tmp_path}/f.bin {mount.path}/f.bin && mkdir {mount.path}/d && ls -lR {mount.path}")
    mount.wait_uploaded()
    sh(f"cmp {tmp_path}/f.bin {mount.path}/f.bin")
    ps = sh("ps -eo args")
    mount.stop()  # flushes the log
    log = mount.log_text()
    assert "DEBUG" in log and "503" in log  # the run did log, retries included
    secrets = [SECRET] if store == "vagon" else [KEY]  # the tenant key is a bearer token
    secrets.append("X-Amz-Signature")  # presigned URLs are logged without their query
    for secret in secrets:
        assert secret not in log, secret
        assert secret not in ps, secret
        found = subprocess.run(["grep", "-rl", secret, str(mount.cache)],
                               capture_output=True, text=True).stdout
        assert found == "", f"{secret} found in {found}"


def test_cache_dir_is_private_and_other_users_cannot_enter(vagon_mount):
    for folder in (vagon_mount.cache, vagon_mount.cache / "emu"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    if os.getuid() != 0:
        pytest.skip("entering as another user needs root to switch users")
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             "ls", str(vagon_mount.path)], capture_output=True, text=True)
    assert result.returncode != 0 and "Permission denied" in result.stderr


def test_config_readable_by_others_is_refused(vagon_mount):
    vagon_mount.stop()
    vagon_mount.config.chmod(0o644)
    result = vagonfs("mount", *vagon_mount.args(), check=False)
    assert result.returncode != 0 and "chmod 600" in result.stderr
    assert not os.path.ismount(vagon_mount.path)

