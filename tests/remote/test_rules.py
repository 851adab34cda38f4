"""The clients' pure rules: retry decisions, names, part sizes, link expiry,
Shannon content decoding. No server needed."""

from __future__ import annotations

import base64
import errno

import httpx
import pytest

from vagonfs.errors import FsError, InvalidName, RemoteIOError
from vagonfs.remote.base import Capabilities
from vagonfs.remote.failures import RetryPolicy, is_temporary, safe_url, server_message
from vagonfs.remote.names import check, linux_problem
from vagonfs.remote.replies import reply_shape
from vagonfs.remote.shannon import decode_content
from vagonfs.remote.vagon.download_urls import link_expiry
from vagonfs.remote.vagon.names import local_names
from vagonfs.remote.vagon.store import VagonStore
from vagonfs.remote.vagon.upload import MiB, part_size_mb


def _reply(status: int, **kwargs) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "http://h/x"), **kwargs)


@pytest.mark.parametrize("status,idempotent,expected", [
    (429, False, True), (503, False, True), (500, True, True), (500, False, False),
    (502, True, True), (504, False, False), (507, True, False), (404, True, False),
    (401, True, False),
])
def test_temporary_replies(status, idempotent, expected):
    assert is_temporary(_reply(status), idempotent=idempotent) is expected


def test_temporary_network_failures():
    request = httpx.Request("POST", "http://h/x")
    never_sent = httpx.ConnectError("refused", request=request)
    cut = httpx.ReadError("reset", request=request)
    assert is_temporary(never_sent, idempotent=False)
    assert is_temporary(cut, idempotent=True)
    assert not is_temporary(cut, idempotent=False)


def test_backoff_is_bounded_and_honours_retry_after():
    policy = RetryPolicy(base_delay=0.5, max_delay=30)
    assert all(0 <= policy.delay(n, None) <= 30 for n in range(1, 20))
    assert policy.delay(1, 7.0) == 7.0
    assert policy.delay(1, 10_000) == policy.max_retry_after


def test_urls_lose_their_query_and_messages_come_from_the_server():
    url = "http://u:p@h:1/_s3/objects/b?X-Amz-Signature=abc&X-Amz-Date=1"
    assert safe_url(url) == "http://h:1/_s3/objects/b"
    envelope = {"client_code": 409, "message": "File already exists"}
    assert server_message(_reply(409, json=envelope)) == "File already exists"
    assert server_message(_reply(403, content=b"<Error><Code>AccessDenied</Code>"
                                 b"<Message>Request has expired</Message></Error>")) \
        == "Request has expired"
    assert server_message(_reply(413, json={"error": "file too large"})) == "file too large"


@pytest.mark.parametrize("name", ["a:b", "what?", "x|y", 'q"t', "a\\b", "a/b", "tab\there",
                                  "", "x" * 256])
def test_names_vagon_refuses(name):
    with pytest.raises(InvalidName):
        check(name, VagonStore.capabilities, too_long=InvalidName)


def test_names_vagon_takes():
    for name in ("report.pdf", "Computer #100", "ünïcode ✓", "x" * 255, "a b (1)"):
        check(name, VagonStore.capabilities)


@pytest.mark.parametrize("name,errno_", [("x" * 256, errno.ENAMETOOLONG),
                                         ("ü" * 128, errno.ENAMETOOLONG),
                                         ("tab\there", errno.EINVAL),
                                         ("bad\udc80byte", errno.EINVAL)])
def test_names_refused_at_a_syscall_say_why_with_their_errno(name, errno_):
    with pytest.raises(FsError) as caught:
        check(name, Capabilities(read_only=False, can_rename=True, max_file_size=None))
    assert caught.value.errno == errno_


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "nul\0", "sur\ud800rogate",
                                  "x" * 256, None])
def test_names_linux_cannot_hold(name):
    assert linux_problem(name) is not None


def test_names_linux_holds_control_characters():
    assert linux_problem("ctl\x01\x1bname.txt") is None


def test_machine_names_map_to_unique_valid_names():
    names = local_names([(100, "Computer #100"), (7, "a/b"), (8, "dup"), (9, "dup"),
                         (10, ""), (11, ".."), (12, "nul\0here"), (13, "dup (8)")])
    assert names[100] == "Computer #100"
    assert names[7] == "a∕b"
    assert names[10] == "machine 10" and names[11] == "machine 11"
    assert names[12] == "nul_here"
    assert len(set(names.values())) == len(names)
    assert names[9] == "dup (9)"
    assert all("/" not in n and "\0" not in n for n in names.values())
    # deterministic whatever the order the server lists machines in
    assert local_names(reversed(list({k: v for k, v in [
        (100, "Computer #100"), (7, "a/b"), (8, "dup"), (9, "dup"), (10, ""), (11, ".."),
        (12, "nul\0here"), (13, "dup (8)")]}.items()))) == names


def test_part_sizes_grow_with_the_file():
    assert part_size_mb(0) == 8
    assert part_size_mb(100 * MiB) == 8
    assert part_size_mb(20 * 1024 * MiB) == 32
    assert part_size_mb(10 ** 12) <= 5120
    assert 10 ** 12 / (part_size_mb(10 ** 12) * MiB) <= 10_000


def test_link_expiry_from_the_url_or_the_reply():
    url = "http://h/_s3/objects/b?X-Amz-Date=20261123T065100Z&X-Amz-Expires=900&X-Amz-Signature=x"
    assert link_expiry(url, None) == 1795416660 + 900
    assert link_expiry("http://h/o", "2026-11-23T07:06:00Z") == 1795416660 + 900
    either_order = "http://h/o?X-Amz-Expires=60&a=1&X-Amz-Date=20261123T065100Z"
    assert link_expiry(either_order, None) == 1795416660 + 60
    # a date that does not exist, or half the pair: the reply's expiry
    for odd in ("http://h/o?X-Amz-Date=20261332T065100Z&X-Amz-Expires=900",
                "http://h/o?X-Amz-Date=20261123T065100Z", "http://h/o?X-Amz-Expires=900"):
        assert link_expiry(odd, "2026-11-23T07:06:00Z") == 1795416660 + 900


def test_shannon_content_decodes_by_type_and_size():
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    encoded = base64.b64encode(png).decode()
    assert decode_content(encoded, "image/png", len(png)) == png
    assert decode_content("a,b\n1,2\n", "text/csv", 8) == b"a,b\n1,2\n"
    assert decode_content('{"a": 1}', "application/json; charset=utf-8", 8) == b'{"a": 1}'
    # text that happens to be valid base64 stays text when the size says so
    assert decode_content("abcd", "application/octet-stream", 4) == b"abcd"
    # base64 announced as text is decoded when only that fits the size
    assert decode_content(encoded, "text/plain", len(png)) == png


def test_a_malformed_reply_is_an_io_error_not_a_crash():
    reply: dict[str, object] = {}  # a reply without the field looked for
    with pytest.raises(RemoteIOError) as caught:
        with reply_shape("listing"):
            reply["files"]
    assert caught.value.errno == errno.EIO and "listing" in str(caught.value)
