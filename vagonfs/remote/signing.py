"""The Vagon Teams API request signature, shared by the client and the emulator.

API-NOTES: signature = lowercase hex HMAC-SHA256(key=secret, message=
key + METHOD + path + timestamp + nonce + body), the path being the request
path without host or query string, the body the exact bytes sent.
"""

from __future__ import annotations

import hashlib
import hmac


def signature(api_key: str, api_secret: str, method: str, path: str,
              timestamp: str, nonce: str, body: bytes) -> str:
    message = b"".join((api_key.encode(), method.upper().encode(), path.encode(),
                        timestamp.encode(), nonce.encode(), body))
    return hmac.new(api_secret.encode(), message, hashlib.sha256).hexdigest()


def authorization(api_key: str, signature_hex: str, nonce: str, timestamp: str) -> str:
    """The ``Authorization`` header value: ``HMAC key:signature:nonce:timestamp``."""
    return f"HMAC {api_key}:{signature_hex}:{nonce}:{timestamp}"


def parse_authorization(value: str) -> tuple[str, str, str, str] | None:
    """(key, signature, nonce, timestamp) from a header, or None when malformed."""
    scheme, _, rest = value.partition(" ")
    parts = rest.split(":")
    if scheme != "HMAC" or len(parts) != 4 or not all(parts):
        return None
    key, sig, nonce, timestamp = parts
    return key, sig, nonce, timestamp
