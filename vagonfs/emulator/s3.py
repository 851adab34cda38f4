"""The emulator's object store: presigned part PUTs and object GETs (``/_s3``).

Each part is written straight into its upload's object file at its offset
(part n at (n - 1) x chunk), so ``complete`` only checks and truncates: it
used to copy every part into a new blob and unlink the parts, which took a
quarter of a 1 GiB direct upload's time. Its links are signed and checked
in ``presigned.py``.
"""

from __future__ import annotations

import asyncio

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from vagonfs.emulator.context import of
from vagonfs.emulator.presigned import xml_error
from vagonfs.emulator.streaming import BlobResponse, BodyTooLarge, receive_part


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
