"""What the model test drives (``tests/fs_model.py``): one syscall's worth at a
time, the same calls on a mount and on the local folder it is compared with.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Protocol

Outcome = tuple[str, object]  # ("ok", result) or ("err", errno)


class Subject(Protocol):
    """What the machine drives: a mount, or the local reference. Each call is
    one syscall's worth (``open``, the writes, ``close``), on a path relative
    to the subject's root; failures raise ``OSError`` with the errno."""

    def create(self, name: str, payload: bytes) -> None: ...
    def write_at(self, name: str, offset: int, payload: bytes) -> None: ...
    def append(self, name: str, payload: bytes) -> None: ...
    def truncate(self, name: str, size: int) -> None: ...
    def read(self, name: str) -> bytes: ...
    def fsync(self, name: str) -> None: ...
    def unlink(self, name: str) -> None: ...
    def mkdir(self, name: str) -> None: ...
    def rmdir(self, name: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...
    def tree(self) -> dict[str, bytes | None]: ...  # path -> bytes; None for a folder


class Folder:
    """A folder through the OS: the local reference, or a FUSE mount."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def create(self, name: str, payload: bytes) -> None:
        with open(self._path(name), "wb") as fh:
            fh.write(payload)

    def write_at(self, name: str, offset: int, payload: bytes) -> None:
        fd = os.open(self._path(name), os.O_WRONLY)
        try:
            os.pwrite(fd, payload, offset)
        finally:
            os.close(fd)

    def append(self, name: str, payload: bytes) -> None:
        with open(self._path(name), "ab") as fh:
            fh.write(payload)

    def truncate(self, name: str, size: int) -> None:
        os.truncate(self._path(name), size)

    def read(self, name: str) -> bytes:
        with open(self._path(name), "rb") as fh:
            return fh.read()

    def fsync(self, name: str) -> None:
        fd = os.open(self._path(name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def unlink(self, name: str) -> None:
        os.unlink(self._path(name))

    def mkdir(self, name: str) -> None:
        os.mkdir(self._path(name))

    def rmdir(self, name: str) -> None:
        os.rmdir(self._path(name))

    def rename(self, src: str, dst: str) -> None:
        os.rename(self._path(src), self._path(dst))

    def tree(self) -> dict[str, bytes | None]:
        found: dict[str, bytes | None] = {}
        for folder, dirs, files in os.walk(self.root):
            rel = os.path.relpath(folder, self.root)
            for name in dirs:
                found[os.path.normpath(os.path.join(rel, name))] = None
            for name in files:
                with open(os.path.join(folder, name), "rb") as fh:
                    found[os.path.normpath(os.path.join(rel, name))] = fh.read()
        return found

    def empty(self) -> None:
        for entry in os.listdir(self.root):
            path = os.path.join(self.root, entry)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)


def outcome(call, *args) -> Outcome:
    try:
        return "ok", call(*args)
    except OSError as exc:
        return "err", exc.errno
