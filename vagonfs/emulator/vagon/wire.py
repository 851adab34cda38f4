"""Vagon's wire conventions: HMAC auth, the reply envelope, items and pages.

Every Vagon reply, success or error, carries ``client_code``, ``message`` and
``timestamp``; errors are raised as ``VagonError`` anywhere in a handler and
turned into that envelope by the ``vagon_route`` wrapper, which also checks the
signature first (so no handler can forget it).
"""

from __future__ import annotations

import functools
import json
import threading
import time

from starlette.requests import Request
from starlette.responses import JSONResponse

from vagonfs.emulator.context import of, same_secret
from vagonfs.emulator.storage import iso
from vagonfs.remote.signing import parse_authorization, signature

PREFIX = "/organization-management/v1"
NONCE_WINDOW = 15 * 60
MAX_SKEW = 300
_BAD_NAME_CHARS = set('\\/:*?"<>|')


class VagonError(Exception):
    def __init__(self, status: int, message: str, client_code: int | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.client_code = client_code or status
        self.headers = headers


def reply(payload: dict | None = None, status: int = 200, message: str = "OK",
          client_code: int | None = None, headers: dict | None = None) -> JSONResponse:
    body = dict(payload or {})
    body.update(client_code=client_code or status, message=message, timestamp=iso())
    return JSONResponse(body, status, headers=headers)


def error_reply(status: int, message: str, client_code: int | None = None,
                headers: dict | None = None) -> JSONResponse:
    return reply(None, status, message, client_code, headers)


class _Nonces:
    """Nonces seen in the last 15 minutes (a replay is refused)."""

    def __init__(self):
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def fresh(self, nonce: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10000:
                self._seen = {n: t for n, t in self._seen.items() if now - t < NONCE_WINDOW}
            seen = self._seen.get(nonce)
            if seen is not None and now - seen < NONCE_WINDOW:
                return False
            self._seen[nonce] = now
            return True


_nonces = _Nonces()


def check_auth(request: Request, body: bytes) -> None:
    emu = of(request)
    header = request.headers.get("authorization")
    if not header:
        raise VagonError(401, "Missing Authorization header (HMAC key:signature:nonce:timestamp)")
    parsed = parse_authorization(header)
    if parsed is None:
        raise VagonError(401, "Malformed Authorization header "
                              "(expected HMAC key:signature:nonce:timestamp)")
    key, sig, nonce, timestamp = parsed
    if not same_secret(key, emu.settings.api_key):
        raise VagonError(401, "Invalid API key")
    try:
        skew = abs(time.time() - int(timestamp) / 1000)
    except ValueError:
        raise VagonError(401, "Timestamp must be milliseconds since the epoch") from None
    if skew > MAX_SKEW:
        raise VagonError(401, f"Timestamp is {skew:.0f} s from the server clock "
                              f"(at most {MAX_SKEW} s allowed)")
    path = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
    expected = signature(key, emu.settings.api_secret, request.method, path, timestamp,
                         nonce, body)
    if not same_secret(sig, expected):
        raise VagonError(401, "Invalid signature")
    if not _nonces.fresh(nonce):
        raise VagonError(401, "Nonce already used")


def vagon_route(handler):
    """Authenticate, parse the JSON body (if any), and map VagonError to the envelope."""
    @functools.wraps(handler)
    async def endpoint(request: Request):
        try:
            body = await request.body()
            check_auth(request, body)
            data = None
            if body:
                try:
                    data = json.loads(body)
                except ValueError:
                    raise VagonError(400, "Request body is not valid JSON") from None
                if not isinstance(data, dict):
                    raise VagonError(400, "Request body must be a JSON object")
            return await handler(request, data or {})
        except VagonError as exc:
            return error_reply(exc.status, exc.message, exc.client_code, exc.headers)
    return endpoint


def int_param(value, name: str, default: int | None = None, minimum: int | None = None):
    """An integer parameter (query or JSON), or 400 saying which one is wrong."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise VagonError(400, f"{name} must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise VagonError(400, f"{name} must be an integer") from None
    if minimum is not None and number < minimum:
        raise VagonError(400, f"{name} must be at least {minimum}")
    return number


def check_name(name) -> str:
    if (not isinstance(name, str) or not name or len(name) > 255
            or any(c in _BAD_NAME_CHARS or ord(c) < 32 or ord(c) == 127 for c in name)):
        raise VagonError(400, "Invalid file name")
    return name


def page_args(request: Request) -> tuple[int, int]:
    q = request.query_params
    page = int_param(q.get("page"), "page", 1, minimum=1)
    per_page = int_param(q.get("per_page"), "per_page", 20, minimum=1)
    return page, min(per_page, of(request).settings.per_page_cap)


def page_reply(key: str, items: list, count: int, page: int, per_page: int, **extra) -> dict:
    return {key: items, "count": count, "page": page,
            "next_page": page + 1 if page * per_page < count else None, **extra}


def file_item(row, wrapped: bool) -> dict:
    is_dir = row["object_type"] == "directory"
    item = {"id": row["id"], "uid": row["uid"], "name": row["name"],
            "object_type": row["object_type"], "size": 0 if is_dir else row["size"],
            "content_type": None if is_dir else row["content_type"],
            "parent_id": row["parent_id"] or None, "machine_id": row["machine_id"],
            "status": row["status"], "created_at": row["created_at"],
            "updated_at": row["updated_at"]}
    if not wrapped:
        return item
    item.pop("id")
    return {"id": str(row["id"]), "type": row["object_type"], "attributes": item}
