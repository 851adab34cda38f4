"""The emulator's persistent state: SQLite metadata plus one file per blob.

Everything the three stores hold lives under one data dir (``meta.sqlite3``
and ``blobs/``), so a restart with the same dir serves the same data. Blobs
are named by generated ids, never by user names, and are written to a
temporary file first and renamed into place, so a crash never leaves a
half-written blob under a live name (an upload's parts go into a blob of its
own, which no file names until the upload completes). Empty files made in
bulk share one empty blob, which is never dropped.

One connection, guarded by one lock: the request handlers run on the event
loop thread, the archive builder on its own thread; every statement is short.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

MiB = 1024 * 1024
# the one blob every empty file may share (populate makes a million of them): never dropped
EMPTY_BLOB = "empty"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS vfiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT, uid TEXT NOT NULL, scope TEXT NOT NULL,
    parent_id INTEGER NOT NULL, name TEXT NOT NULL, object_type TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0, content_type TEXT, status TEXT NOT NULL,
    blob TEXT, machine_id INTEGER, task_id INTEGER, is_root INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS vfiles_parent ON vfiles (scope, parent_id, name);
CREATE INDEX IF NOT EXISTS vfiles_listing
    ON vfiles (scope, parent_id, object_type != 'directory', name);
CREATE TABLE IF NOT EXISTS uploads (
    uid TEXT PRIMARY KEY, file_id INTEGER NOT NULL, size INTEGER NOT NULL,
    chunk INTEGER NOT NULL, nparts INTEGER NOT NULL, content_type TEXT,
    state TEXT NOT NULL, reply TEXT, parts_key TEXT);
CREATE TABLE IF NOT EXISTS parts (
    upload_uid TEXT NOT NULL, part_number INTEGER NOT NULL, size INTEGER NOT NULL,
    etag TEXT NOT NULL, blob TEXT NOT NULL, PRIMARY KEY (upload_uid, part_number));
CREATE TABLE IF NOT EXISTS machines (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, friendly_status TEXT NOT NULL,
    file_storage_size INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, machine_id INTEGER NOT NULL, uid TEXT NOT NULL,
    status TEXT NOT NULL, created_at TEXT NOT NULL, folder_id INTEGER);
CREATE TABLE IF NOT EXISTS archives (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, blob TEXT, size INTEGER, error TEXT);
CREATE TABLE IF NOT EXISTS tfiles (
    path TEXT PRIMARY KEY, parent TEXT NOT NULL, name TEXT NOT NULL,
    is_dir INTEGER NOT NULL, size INTEGER NOT NULL DEFAULT 0, blob TEXT, updated_at TEXT);
CREATE INDEX IF NOT EXISTS tfiles_parent ON tfiles (parent, name);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sfiles (
    session_id TEXT NOT NULL, path TEXT NOT NULL, parent TEXT NOT NULL, name TEXT NOT NULL,
    is_dir INTEGER NOT NULL, size INTEGER NOT NULL DEFAULT 0, blob TEXT,
    content_type TEXT, modified_at TEXT, PRIMARY KEY (session_id, path));
"""


def iso(ts: float | None = None) -> str:
    """ISO 8601 UTC with a ``Z``, second precision, as every reply uses."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if ts is None else ts))


def new_uid() -> str:
    return str(uuid.uuid4())


def new_uids(count: int) -> list[str]:
    """``count`` random version-4 uids, ten times faster than ``new_uid`` each
    (a million for a populated tree)."""
    hexes = os.urandom(16 * count).hex()
    return [f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"
            for h in (hexes[i:i + 32] for i in range(0, 32 * count, 32))]


def generated(seed: str, size: int) -> Iterator[bytes]:
    """Deterministic bytes for ``seed``: one PRNG block of up to 1 MiB, repeated
    with a counter in its first 8 bytes, so 64 MiB costs a few milliseconds."""
    block = random.Random(seed).randbytes(min(size, MiB))
    index, left = 0, size
    while left > 0:
        chunk = block if index == 0 else index.to_bytes(8, "big") + block[8:]
        chunk = chunk[:left]
        yield chunk
        left -= len(chunk)
        index += 1


class Storage:
    def __init__(self, data_dir: Path):
        self.dir = Path(data_dir)
        self.blobs = self.dir / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.db = sqlite3.connect(self.dir / "meta.sqlite3", check_same_thread=False,
                                  isolation_level=None)
        self.db.row_factory = sqlite3.Row
        # SQLite's lower() knows only ASCII; `q` filters must match "Ä" with "ä" too
        self.db.create_function("casefold", 1, str.casefold, deterministic=True)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        # the indexes of a million-item tree stay in memory while populate fills them
        self.db.execute("PRAGMA cache_size=-65536")
        self.db.executescript(_SCHEMA)
        for leftover in self.blobs.glob("tmp-*"):
            leftover.unlink(missing_ok=True)
        self.blob_path(EMPTY_BLOB).touch()
        # key -> changes made through touch(), for in-memory caches of query results:
        # what was computed at generation g holds while the key stays at g
        self._generations: Counter = Counter()

    # --- metadata -------------------------------------------------------------------------

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic transaction (re-entrant: an inner one joins the outer)."""
        with self.lock:
            if self.db.in_transaction:
                yield self.db
                return
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def all(self, sql: str, args: Iterable = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, tuple(args)).fetchall()

    def one(self, sql: str, args: Iterable = ()) -> sqlite3.Row | None:
        with self.lock:
            return self.db.execute(sql, tuple(args)).fetchone()

    def number(self, sql: str, args: Iterable = ()) -> int:
        """The number in the one row ``sql`` answers: an aggregate (COUNT, SUM), or
        a field of a row that exists."""
        row = self.one(sql, args)
        if row is None:
            raise LookupError(f"no row answers {sql}")
        return row[0]

    def run(self, sql: str, args: Iterable = ()) -> int:
        """Execute one statement; the new row id (for INSERTs)."""
        with self.tx() as db:
            row_id = db.execute(sql, tuple(args)).lastrowid
        assert row_id is not None  # None only on a cursor that never executed
        return row_id

    def touch(self, key: Hashable) -> None:
        """Say that what ``key`` names has changed (call it with the change)."""
        self._generations[key] += 1

    def generation(self, key: Hashable) -> int:
        return self._generations[key]

    def is_empty(self) -> bool:
        return not any(self.one(f"SELECT 1 FROM {t} LIMIT 1")
                       for t in ("vfiles", "machines", "tfiles", "sessions"))

    def secret(self, name: str) -> str:
        """A random value made once per data dir (e.g. the presigning key)."""
        with self.tx() as db:
            row = db.execute("SELECT value FROM state WHERE key = ?", (name,)).fetchone()
            if row:
                return row["value"]
            value = secrets.token_hex(32)
            db.execute("INSERT INTO state (key, value) VALUES (?, ?)", (name, value))
            return value

    # --- blobs ----------------------------------------------------------------------------

    def blob_path(self, blob: str) -> Path:
        return self.blobs / blob

    @contextlib.contextmanager
    def blob_writer(self) -> Iterator[tuple[str, BinaryIO]]:
        """(blob id, binary file): the blob appears under its id only on success."""
        blob = uuid.uuid4().hex
        tmp = self.blobs / f"tmp-{blob}"
        try:
            with open(tmp, "wb") as fh:
                yield blob, fh
            os.replace(tmp, self.blobs / blob)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def upload_blob(self, upload_uid: str) -> str:
        """The blob a multipart upload's parts are written into, each at its
        offset: it becomes a file's blob only when the upload completes."""
        return "u" + upload_uid.replace("-", "")

    def write_blob(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """(blob id, size) of a new blob holding ``chunks``."""
        size = 0
        with self.blob_writer() as (blob, fh):
            for chunk in chunks:
                fh.write(chunk)
                size += len(chunk)
        return blob, size

    def drop_blob(self, blob: str | None) -> None:
        if blob and blob != EMPTY_BLOB:
            (self.blobs / blob).unlink(missing_ok=True)
