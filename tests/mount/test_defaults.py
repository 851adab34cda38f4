"""What a mount with no options costs the kernel: no extended attributes, and
attributes kept as long as the listing they came from.

Counted in the kernel's requests to the daemon (``kernel_requests`` in
``vagonfs status --json``), never timed.
"""

from __future__ import annotations

import errno
import os

import pytest

from .conftest import sh

FILES = 200  # in the demo data's "Big folder", besides its 50 folders


def kernel_requests(mount) -> dict[str, int]:
    return mount.status()["kernel_requests"]


def asked_since(mount, before: dict[str, int], *operations: str) -> int:
    now = kernel_requests(mount)
    return sum(now.get(op, 0) - before.get(op, 0) for op in operations)


def test_ls_l_asks_no_extended_attribute_by_default(mount_factory, demo_emulator):
    mount = mount_factory("vagon", emulator=demo_emulator, subpath="shared")
    folder = mount.path / "Big folder"

    def look_at_every_entry() -> None:
        assert sh(f"ls -l '{folder}'").count("\n") == 251
        for entry in folder.iterdir():
            for ask in (os.listxattr, lambda path: os.getxattr(path, "user.mime_type")):
                with pytest.raises(OSError) as exc:
                    ask(entry)
                assert exc.value.errno == errno.EOPNOTSUPP  # the kernel's word for ENOSYS

    look_at_every_entry()
    # the first getxattr and the first listxattr of the mount are answered
    # ENOSYS; the kernel then answers every later one itself, for any file
    assert {op: kernel_requests(mount).get(op, 0) for op in ("getxattr", "listxattr")} \
        == {"getxattr": 1, "listxattr": 1}
    before = kernel_requests(mount)
    look_at_every_entry()
    assert asked_since(mount, before, "getxattr", "listxattr") == 0


@pytest.mark.parametrize("ask", ["--xattrs", "-o xattrs"])
def test_xattrs_when_asked_cost_ls_l_a_request_per_file(mount_factory, demo_emulator, ask):
    mount = mount_factory("vagon", emulator=demo_emulator, subpath="shared",
                          options=tuple(ask.split()))
    assert os.getxattr(mount.path / "Docs/README.txt", "user.mime_type").startswith(b"text/")
    before = kernel_requests(mount)
    sh(f"ls -l '{mount.path}/Big folder'")
    assert asked_since(mount, before, "getxattr") >= 250  # what the default spares


def test_warm_ls_l_asks_no_attributes_again_within_the_listing_time(mount_factory,
                                                                   demo_emulator):
    mount = mount_factory("vagon", emulator=demo_emulator, subpath="shared")
    folder = mount.path / "Big folder"
    sh(f"ls -l '{folder}'")
    before = kernel_requests(mount)
    demo_emulator.reset_stats()
    assert sh(f"ls -l '{folder}'; stat -c %s '{folder}'/* > /dev/null").count("\n") == 251
    # the kernel keeps every entry's attributes and name for the listing's 5
    # minutes: a second ls -l and a stat of each entry ask nothing of them (a
    # readdir makes the kernel forget its folder's atime: one getattr of the
    # folder per reading of it)
    assert asked_since(mount, before, "lookup") == 0
    assert asked_since(mount, before, "getattr") <= asked_since(mount, before, "opendir") == 2
    assert demo_emulator.stats()["requests"] == {}


@pytest.mark.parametrize("option", ["--attr-timeout", "--dir-cache-time"])
def test_the_kernel_asks_again_once_the_listing_is_stale(mount_factory, demo_emulator,
                                                         option):
    """The timeouts the kernel is told follow the listing's (and at most
    ``--attr-timeout``): with either at 0 it asks for every entry again."""
    mount = mount_factory("vagon", emulator=demo_emulator, subpath="shared",
                          options=(option, "0s"))
    folder = mount.path / "Big folder"
    sh(f"ls -l '{folder}'")
    before = kernel_requests(mount)
    sh(f"stat -c %s '{folder}'/* > /dev/null")
    assert asked_since(mount, before, "getattr", "lookup") >= FILES + 50
