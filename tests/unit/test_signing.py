"""The signature is checked against a value computed independently (openssl),
so the client and the emulator, which share this code, cannot agree on a
wrong signature."""

from vagonfs.remote.signing import authorization, parse_authorization, signature


def test_signature_known_answer():
    # printf '%s' 'demo-keyGET/organization-management/v1/files1700000000000n-1' \
    #   | openssl dgst -sha256 -hmac demo-secret
    assert signature("demo-key", "demo-secret", "get", "/organization-management/v1/files",
                     "1700000000000", "n-1", b"") == \
        "b969d88a988740a1933cf0b30b99a45a927cc41609523b990ae508c2cdfe0083"


def test_body_is_signed():
    a = signature("k", "s", "POST", "/p", "1", "n", b'{"a":1}')
    b = signature("k", "s", "POST", "/p", "1", "n", b'{"a":2}')
    assert a != b


def test_header_round_trip():
    header = authorization("demo-key", "abc123", "nonce-1", "1700000000000")
    assert header == "HMAC demo-key:abc123:nonce-1:1700000000000"
    assert parse_authorization(header) == ("demo-key", "abc123", "nonce-1", "1700000000000")
    assert parse_authorization("Bearer x") is None
    assert parse_authorization("HMAC a:b:c") is None
