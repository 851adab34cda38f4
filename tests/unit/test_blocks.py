"""The block cache: bounded, least recently used first, and warm after a restart."""

from __future__ import annotations

import trio

from vagonfs.cache.blocks import BLOCK_SIZE, BlockCache, object_id


def test_lru_bound_evicts_oldest_blocks_and_their_files(tmp_path):
    async def main():
        cache = BlockCache(tmp_path, 4 * BLOCK_SIZE)
        obj = object_id("key", "v1")
        for index in range(6):
            await cache.put((obj, index), bytes([index]) * BLOCK_SIZE)
        assert cache.used_bytes == 4 * BLOCK_SIZE
        assert not cache.has((obj, 0)) and not cache.has((obj, 1))
        assert not (tmp_path / "blocks" / obj / "0").exists()
        assert await cache.read((obj, 5), 10, 3) == b"\x05\x05\x05"

    trio.run(main)


def test_versions_are_separate_objects_and_index_survives_restart(tmp_path):
    async def main():
        cache = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        old, new = object_id("key", "v1"), object_id("key", "v2")
        assert old != new
        await cache.put((old, 0), b"old")
        await cache.put((new, 0), b"new")
        cache.drop_object(old)
        assert not cache.has((old, 0))
        again = BlockCache(tmp_path, 64 * BLOCK_SIZE)
        assert again.has((new, 0)) and not again.has((old, 0))
        assert await again.read((new, 0), 0, 3) == b"new"

    trio.run(main)
