"""The inode table after the kernel lets go: a file's node stays while its
upload is pending (the upload needs its name and folder) and goes once that
upload settles, so a mount that copies many files holds only what the kernel
and the write-back queue still hold."""

from __future__ import annotations

from vagonfs.core.fs import Filesystem

from .conftest import run_with_fs, uploaded, write_file
from .memory_store import MemoryStore


def test_a_node_forgotten_while_its_upload_is_pending_goes_once_the_upload_lands(tmp_path):
    store = MemoryStore()

    async def body(fs: Filesystem) -> None:
        gate = store.gate("upload", key="a.txt")
        node = await write_file(fs, "a.txt", b"hello")
        pending = fs.uploads.get(node)
        assert pending is not None
        await gate.reached.wait()
        fs.inodes.forget(node.ino, node.lookups)  # the kernel's last reference
        assert fs.inodes.get(node.ino) is node  # the upload still needs its name

        gate.open()
        await uploaded(pending)
        assert store.data("a.txt") == b"hello"
        assert fs.inodes.get(node.ino) is None
        assert len(fs.inodes) == 1  # the root

    run_with_fs(store, tmp_path, body)


def test_the_table_stays_bounded_across_a_copy_of_10000_files_with_uploads_pending(tmp_path):
    """As ``cp -r`` under memory pressure: each file created, written, closed
    and forgotten by the kernel while its upload still waits."""
    store = MemoryStore()
    count = 10_000

    async def body(fs: Filesystem) -> None:
        for number in range(count):
            node = await write_file(fs, f"f{number}", b"x")
            fs.inodes.forget(node.ino, node.lookups)
            if number % 1000 == 999:  # no node held but by its pending upload
                assert len(fs.inodes) == 1 + len(fs.uploads.all())
        assert await fs.uploads.drain()
        assert len(store.names()) == count
        assert len(fs.inodes) == 1  # the root: every file's node went with its upload

    run_with_fs(store, tmp_path, body, guard=120)
