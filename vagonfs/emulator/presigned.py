"""The object store's presigned links, and its XML errors.

Shaped like S3's query-string auth (``X-Amz-Date``, ``X-Amz-Expires``,
``X-Amz-Signature``) so clients handle expiry and refresh the way they would
against the real store. The signing key is made once per data dir, so links
survive a restart; ``expire_all`` (admin) makes every link issued so far stale.
Apart from the routes (``s3.py``) because the emulator's context holds the
signer that those routes read through it.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import math
import time
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

_DATE = "%Y%m%dT%H%M%SZ"


def xml_error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    body = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>" \
           f"<Message>{message}</Message></Error>"
    return Response(body, status, headers=headers, media_type="application/xml")


class Presigner:
    def __init__(self, key: str, faults):
        self._key = key.encode()
        self._faults = faults  # holds link_ttl, which admin can change at run time
        self._not_before = 0

    def _sign(self, method: str, path: str, date: str, expires: str) -> str:
        message = f"{method}\n{path}\n{date}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, base: str, path: str, method: str) -> tuple[str, int]:
        """(presigned URL, expiry as epoch seconds) for ``path`` on this server."""
        issued = max(int(time.time()), self._not_before)
        ttl = int(self._faults.link_ttl)
        date = time.strftime(_DATE, time.gmtime(issued))
        path = quote(path)
        sig = self._sign(method, path, date, str(ttl))
        return (f"{base}{path}?X-Amz-Date={date}&X-Amz-Expires={ttl}&X-Amz-Signature={sig}",
                issued + ttl)

    def expire_all(self) -> None:
        """Links issued up to now are expired; later ones are dated after the cut."""
        self._not_before = math.floor(time.time()) + 1

    def refusal(self, request: Request, method: str) -> Response | None:
        """The 403 a request with a bad or stale link gets, or None when it is good."""
        q = request.query_params
        date, expires, sig = (q.get("X-Amz-Date"), q.get("X-Amz-Expires"),
                              q.get("X-Amz-Signature"))
        if not (date and expires and sig):
            return xml_error(403, "AccessDenied", "Query-string authentication requires "
                             "X-Amz-Date, X-Amz-Expires and X-Amz-Signature")
        path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        if not hmac.compare_digest(sig, self._sign(method, path, date, expires)):
            return xml_error(403, "SignatureDoesNotMatch", "The request signature we "
                             "calculated does not match the signature you provided.")
        try:
            issued = calendar.timegm(time.strptime(date, _DATE))
            lifetime = int(expires)
        except ValueError:
            return xml_error(403, "AccessDenied", "X-Amz-Date or X-Amz-Expires is malformed")
        if issued < self._not_before or time.time() > issued + lifetime:
            return xml_error(403, "AccessDenied", "Request has expired")
        return None
