"""The emulator's object store: presigned part PUTs and object GETs (``/_s3``).

Each part is written straight into its upload's object file at its offset
(part n at (n - 1) x chunk), so ``complete`` only checks and truncates: it
used to copy every part into a new blob and unlink the parts, which took a
quarter of a 1 GiB direct upload's time.

Shaped like S3's query-string auth (``X-Amz-Date``, ``X-Amz-Expires``,
``X-Amz-Signature``) so clients handle expiry and refresh the way they would
against the real store. The signing key is made once per data dir, so links
survive a restart; ``expire_all`` (admin) makes every link issued so far stale.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import hmac
import math
import time
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vagonfs.emulator.context import of
from vagonfs.emulator.streaming import BlobResponse, BodyTooLarge, receive_part

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


def no_such_upload() -> Response:
    return xml_error(404, "NoSuchUpload", "The specified upload does not exist. The upload "
                     "ID may be invalid, or the upload may have been completed.")


async def part_put(request: Request) -> Response:
    emu = of(request)
    emu.bad_input.saw_request(request.headers)
    refused = emu.links.refusal(request, "PUT")
    if refused:
        return refused
    uid = request.path_params["upload_uid"]
    number = request.path_params["part_number"]
    upload = emu.storage.one("SELECT * FROM uploads WHERE uid = ?", (uid,))
    if upload is None or upload["state"] != "open":
        return no_such_upload()
    if not 1 <= number <= upload["nparts"]:
        return xml_error(400, "InvalidArgument",
                         f"Part number must be an integer between 1 and {upload['nparts']}")
    blob = emu.storage.upload_blob(uid)
    lock = emu.writing_parts.setdefault((uid, number), asyncio.Lock())
    try:
        async with lock:  # two PUTs of one part would mix their bytes in its region
            # from here its region changes: the part's earlier ETag must not complete it
            emu.storage.run("DELETE FROM parts WHERE upload_uid = ? AND part_number = ?",
                            (uid, number))
            try:
                size, etag = await receive_part(emu.storage.blob_path(blob),
                                                (number - 1) * upload["chunk"], request,
                                                limit=upload["chunk"])
            except BodyTooLarge:
                return xml_error(400, "EntityTooLarge", "Your proposed upload exceeds the "
                                 f"part size of the upload ({upload['chunk']} bytes)")
            with emu.storage.tx() as db:
                if db.execute("SELECT 1 FROM uploads WHERE uid = ? AND state = 'open'",
                              (uid,)).fetchone() is None:  # its file was deleted meanwhile
                    emu.storage.drop_blob(blob)
                    return no_such_upload()
                db.execute("INSERT INTO parts (upload_uid, part_number, size, etag, blob) "
                           "VALUES (?, ?, ?, ?, ?)", (uid, number, size, f'"{etag}"', blob))
    finally:
        if not lock.locked():
            emu.writing_parts.pop((uid, number), None)
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})


async def get_object(request: Request) -> Response:
    emu = of(request)
    emu.bad_input.saw_request(request.headers)
    refused = emu.links.refusal(request, "GET")
    if refused:
        return refused
    blob = request.path_params["blob"]
    if not blob.isalnum():
        return xml_error(404, "NoSuchKey", "The specified key does not exist.")
    path = emu.storage.blob_path(blob)
    try:
        size = (await anyio.Path(path).stat()).st_size
    except (FileNotFoundError, ValueError):
        return xml_error(404, "NoSuchKey", "The specified key does not exist.")
    response = BlobResponse(path, size, request.headers.get("range"))
    if response.status == 416:
        return xml_error(416, "InvalidRange", "The requested range is not satisfiable",
                         headers={"Content-Range": f"bytes */{size}"})
    return emu.bad_input.unsize(response)


def routes() -> list[Route]:
    return [
        Route("/_s3/parts/{upload_uid}/{part_number:int}", part_put, methods=["PUT"],
              name="s3.part_put"),
        Route("/_s3/objects/{blob}", get_object, methods=["GET", "HEAD"],
              name="s3.get_object"),
    ]
