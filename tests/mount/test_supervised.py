"""Nothing but unmount ends a mount: background work that meets an exception
nobody planned for gives its waiter an errno and the mount keeps answering.

The emulator's ``garble`` fault answers 200 with a body that does not decode
as its ``Content-Encoding`` says, as a broken proxy would: httpx fails with a
decoding error, which is no transport error and no store error, the kind of
exception that used to end the mount from inside a listing, a read-ahead run
or an upload.
"""

from __future__ import annotations

import errno
import os

import pytest

from vagonfs.control.mounttable import is_mounted

from .conftest import sh, vagon_folder

MiB = 1024 * 1024


def _errno_of(action) -> int | None:
    with pytest.raises(OSError) as caught:
        action()
    return caught.value.errno


def test_unexpected_errors_in_listing_read_and_upload_leave_the_mount_answering(
        mount_factory, emulator_factory):
    emulator = emulator_factory()
    vagon_folder(emulator, "folder", count=3, prefix="f", size=10)
    mount = mount_factory("vagon", emulator=emulator, subpath="shared")
    data = os.urandom(3 * MiB)
    (mount.path / "a.bin").write_bytes(data)
    mount.wait_uploaded()

    emulator.set_faults({"rules": [{"route": "vagon.files", "garble": True}]})
    assert _errno_of(lambda: os.listdir(mount.path / "folder000000")) == errno.EIO

    emulator.set_faults({"rules": [{"route": "s3.get_object", "garble": True}]})
    assert _errno_of(lambda: (mount.path / "a.bin").read_bytes()) == errno.EIO
    assert "encoded as 'gzip'" in mount.log_text()  # refused, never kept as the file's bytes

    emulator.set_faults({"rules": [{"route": "vagon.create", "garble": True}]})

    def write_and_fsync() -> None:
        with open(mount.path / "b.bin", "wb") as out:
            out.write(b"b" * 1000)
            os.fsync(out.fileno())

    assert _errno_of(write_and_fsync) == errno.EIO

    assert is_mounted(mount.path)
    emulator.clear_faults()
    assert sorted(os.listdir(mount.path / "folder000000")) == ["f000000", "f000001", "f000002"]
    assert (mount.path / "a.bin").read_bytes() == data
    mount.wait_uploaded(timeout=90)  # the failed upload is retried, and lands
    assert sh(f"cat {mount.path}/b.bin") == "b" * 1000
    log = mount.log_text()
    assert "DecodingError" in log and "Traceback" not in log  # told, tracebacks at debug only
    mount.expect_log(r"WARNING vagonfs\.fuse: \w+: unexpected DecodingError: ",
                     r"WARNING vagonfs\.upload: upload of b\.bin: unexpected DecodingError: ")
