"""Page n of a Vagon folder listing without stepping over the pages before it.

The wire contract numbers pages (``page``, ``per_page``), which an SQL
``OFFSET`` serves by walking every earlier row: the last page of a
100,000-entry folder took a noticeable fraction of a second, and all of it
over a minute. Clients walk pages in order, so the
last sort key of each page served is kept, and page n starts with an index
seek just past page n-1's last key, as quick for the last page of a folder
as for the first. The count is kept beside them. Clients fetch a few pages at once, so
a page a little ahead of the last key known is read from that key too.

What is kept for a folder holds while the folder's generation in
:class:`Storage` has not moved (every insert or delete of an item bumps its
parent's, see ``model``); a page asked out of order, or after a change,
is served by ``OFFSET`` over the listing index, so the pages are always
exactly what an ``OFFSET`` query would give.

Order: folders first, then by name (names are unique in a folder), matching
the ``vfiles_listing`` index in ``storage``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from vagonfs.emulator.storage import Storage

IS_FILE = "(object_type != 'directory')"  # the listing index's expression, spelled the same
KEPT_LISTINGS = 256  # (folder, filter, per_page) walks remembered, least recently used out
# a page this close after a known one is read from there: clients fetch a few pages at
# once, so they arrive a little out of order
NEAR = 8


def folder_key(scope: str, parent_id: int) -> tuple:
    """The generation key of a folder's listing."""
    return ("vagon folder", scope, parent_id)


@dataclass
class _Walk:
    """What the pages served so far taught about one query."""
    generation: int
    count: int
    last_keys: dict[int, tuple[int, str]] = field(default_factory=dict)  # page -> last key


class ListingPages:
    """Protects: the walks; used under the storage lock's statements only (one thread
    at a time touches a walk: the event loop)."""

    def __init__(self, kept: int = KEPT_LISTINGS):
        self._walks: OrderedDict[tuple, _Walk] = OrderedDict()
        self._kept = kept

    def page(self, storage: Storage, scope: str, parent_id: int, where: str, args: list,
             page: int, per_page: int) -> tuple[list, int]:
        """(rows of ``page``, count of all rows) of ``SELECT * FROM vfiles WHERE
        {where}``, where ``where`` narrows to the folder (scope, parent_id)."""
        with storage.lock:  # the generation and the rows read as one
            generation = storage.generation(folder_key(scope, parent_id))
            query = (where, tuple(args), per_page)
            walk = self._walks.get(query)
            if walk is None or walk.generation != generation:
                count = storage.number(f"SELECT COUNT(*) FROM vfiles WHERE {where}", args)
                walk = _Walk(generation, count)
            self._walks[query] = walk
            self._walks.move_to_end(query)
            while len(self._walks) > self._kept:
                self._walks.popitem(last=False)
            known = next((k for k in range(page - 1, page - 1 - NEAR, -1)
                          if k == 0 or k in walk.last_keys), None)
            if known is not None:
                skip = (page - 1 - known) * per_page
                rows = self._after(storage, where, args, walk.last_keys.get(known),
                                   skip + per_page)[skip:]
            else:
                rows = storage.all(
                    f"SELECT * FROM vfiles WHERE {where} ORDER BY {IS_FILE}, name "
                    "LIMIT ? OFFSET ?", [*args, per_page, (page - 1) * per_page])
            if rows:
                last = rows[-1]
                walk.last_keys[page] = (int(last["object_type"] != "directory"), last["name"])
            return rows, walk.count

    @staticmethod
    def _after(storage: Storage, where: str, args: list, key: tuple[int, str] | None,
               limit: int) -> list:
        """Up to ``limit`` rows after sort key ``key`` (from the start for None):
        one index range per kind (folders, then files), never a scan."""
        rows: list = []
        for is_file in (0, 1):
            if key is not None and is_file < key[0]:
                continue
            after = [key[1]] if key is not None and is_file == key[0] else []  # the name
            rows += storage.all(
                f"SELECT * FROM vfiles WHERE {where} AND {IS_FILE} = ?"
                + (" AND name > ?" if after else "") + " ORDER BY name LIMIT ?",
                [*args, is_file, *after, limit - len(rows)])
            if len(rows) == limit:
                break
        return rows
