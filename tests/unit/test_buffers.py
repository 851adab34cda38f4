"""Receive buffers are used again only when nothing can still see their bytes."""

from __future__ import annotations

import ctypes

from vagonfs.runtime import buffers
from vagonfs.runtime.buffers import RECEIVE_SIZE


def _address(view: memoryview) -> int:
    """Where its bytes are (no reference to the buffer is kept)."""
    char = ctypes.c_char.from_buffer(view)
    address = ctypes.addressof(char)
    del char
    return address


def _take_all_free() -> list[memoryview]:
    """Empty the free list, so each test sees only its own buffers."""
    taken = []
    while buffers._free:
        taken.append(buffers.receive_buffer(RECEIVE_SIZE))
    return taken


def test_a_buffer_given_back_with_no_view_left_is_received_into_again():
    _take_all_free()
    view = buffers.receive_buffer(RECEIVE_SIZE)
    address = _address(view)
    buffers.reuse(view)
    assert _address(buffers.receive_buffer(RECEIVE_SIZE)) == address


def test_a_slice_still_held_keeps_its_buffer_out_of_reuse():
    _take_all_free()
    view = buffers.receive_buffer(RECEIVE_SIZE)
    view[:5] = b"hello"
    reply = view[:5]  # what a reader answered with, still alive
    buffers.reuse(view)
    other = buffers.receive_buffer(RECEIVE_SIZE)
    assert _address(other) != _address(reply)
    other[:5] = b"later"
    assert bytes(reply) == b"hello"


def test_a_buffer_exported_right_now_is_not_reused():
    _take_all_free()
    view = buffers.receive_buffer(RECEIVE_SIZE)
    pinned = ctypes.c_char.from_buffer(view)  # as a write in flight holds it
    buffers.reuse(view)
    assert _address(buffers.receive_buffer(RECEIVE_SIZE)) != ctypes.addressof(pinned)


def test_only_whole_blocks_are_kept_and_only_so_many():
    _take_all_free()
    tail = buffers.receive_buffer(1000)
    buffers.reuse(tail)
    assert not buffers._free
    for view in [buffers.receive_buffer(RECEIVE_SIZE) for _ in range(buffers._KEEP_FREE + 4)]:
        buffers.reuse(view)
    assert len(buffers._free) == buffers._KEEP_FREE
    _take_all_free()
