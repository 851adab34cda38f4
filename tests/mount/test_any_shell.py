"""``status`` and ``unmount`` find a live daemon from a shell whose environment
differs from the mount's: a mount made over ssh, su, cron or a system unit
has no ``XDG_RUNTIME_DIR``, a desktop terminal has one (and the other way
round). The control socket is named from the mount's owner and mountpoint
alone (``vagonfs.control.channel``).

Not tested here: root reaching a mount of another uid. This machine's
``/dev/fuse`` is root's alone (mode 0600), so no other user can mount.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

from vagonfs.control import channel
from vagonfs.control.mounttable import is_mounted

from support import wait_until

from .conftest import vagonfs


def environment(runtime_dir: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    if runtime_dir is not None:
        env["XDG_RUNTIME_DIR"] = runtime_dir
    return env


@pytest.mark.parametrize("mounted_with, asked_with", [(False, True), (True, False)],
                         ids=["mounted-without-asked-with", "mounted-with-asked-without"])
def test_status_and_unmount_find_the_daemon_whatever_the_environment(
        mount_factory, tmp_path, mounted_with, asked_with):
    mount = mount_factory("tenant")
    mount.stop()
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    mounting = environment(str(runtime) if mounted_with else None)
    asking = environment(str(runtime) if asked_with else None)
    vagonfs("mount", *mount.args(), env=mounting)
    (pid,) = mount.daemon_pids()
    status = vagonfs("status", str(mount.path), "--json", env=asking)
    assert f'"pid": {pid}' in status.stdout
    result = vagonfs("unmount", str(mount.path), env=asking, check=False)
    assert result.returncode == 0 and "stale" not in result.stderr, result.stderr
    assert not is_mounted(mount.path)
    # the daemon exits once unmounted
    wait_until(lambda: not mount.daemon_pids(), message="the daemon did not exit")


def test_the_daemon_answers_no_other_user(tenant_mount):
    """An abstract socket has no file permissions: the daemon checks who asks."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv is not installed (util-linux)")
    tenant_mount.expect_log(r"WARNING vagonfs\.mount: control socket: refused a connection "
                            r"from uid 65534")
    address = channel.address(tenant_mount.path, os.getuid())
    ask = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(b'\\0' + "
           "sys.argv[1].encode()); print(len(s.recv(65536)))")
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                             sys.executable, "-c", ask, address[1:].decode()],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"  # closed without a word


def test_a_mount_whose_control_socket_is_held_is_refused_naming_the_holder(tenant_mount):
    """As by the daemon of an earlier mount of the mountpoint, still finishing
    its uploads after an unmount from outside: the commands would talk to it."""
    tenant_mount.stop()
    tenant_mount.expect_log(r"ERROR vagonfs\.mount: mount failed: the control socket of ")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as holder:
        holder.bind(channel.address(tenant_mount.path, os.getuid()))
        holder.listen()
        result = vagonfs("mount", *tenant_mount.args(), check=False)
    assert result.returncode == 1
    assert (f"the control socket of {tenant_mount.path} is held by process {os.getpid()} "
            f"(uid {os.getuid()})") in result.stderr, result.stderr
    assert not is_mounted(tenant_mount.path)
