"""The write-back journal: what a crash must not lose, one append-only log.

``journal/journal.log`` holds a line per change: a record (which path,
which spool, which version it replaces: the base a replay checks for a
conflict, ``vagonfs.core.conflicts``), or ``done`` once the store
confirmed the upload (a record is closed only then). An append is one small
``write(2)`` made on the spot: a per-file record written through a worker
thread, a temporary file and a rename cost more than the small file it
guarded, on every ``close`` and again on every rename. Each line starts with
a newline, so a line torn by a crash or a full disk spoils only itself; the
last record of each spool wins. The log is compacted to its open records
when a mount starts and whenever it has grown ``COMPACT_AFTER`` lines past
them.

It raises the cache disk's OSError as it is: the write-back queue decides
what a failed append means for the ``close`` that waits on it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

from vagonfs.cache.spool import Spool, SpoolFiles
from vagonfs.runtime import supervise

log = logging.getLogger("vagonfs.upload")

COMPACT_AFTER = 4096  # journal lines beyond the open records before it is rewritten


class Journal:
    """Protects: the log and its open records; trio-thread only."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory = directory
        self._log = directory / "journal.log"
        self._records: dict[str, dict] = {}  # spool id -> its open record in the log
        self._lines = 0  # lines appended since the log last held only open records

    def record(self, path: str, spool: Spool, replaces: str) -> None:
        """``spool`` holds the content of ``path`` that replaces ``replaces``."""
        record = {"path": path, "spool": spool.id, "size": spool.size, "replaces": replaces}
        self._append(record)
        self._records[spool.id] = record

    def holds(self, spool: Spool) -> bool:
        """Whether ``spool`` has an open record."""
        return spool.id in self._records

    def close(self, spool: Spool) -> None:
        """The record of ``spool`` is settled (uploaded or dropped), if it has one."""
        if self._records.pop(spool.id, None) is None:
            return  # never journaled (a journal that failed already said so)
        self._append({"done": spool.id})
        if self._lines > len(self._records) + COMPACT_AFTER:
            self._compact()

    def _append(self, record: dict) -> None:
        line = ("\n" + json.dumps(record, separators=(",", ":"))).encode()
        fd = os.open(self._log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if os.write(fd, line) != len(line):
                raise OSError(errno.ENOSPC, "the journal took only part of a record")
        finally:
            os.close(fd)
        self._lines += 1

    def _compact(self) -> None:
        """Rewrite the log with only its open records (a rename: whole or not at all)."""
        tmp = self._log.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            for record in self._records.values():
                out.write(("\n" + json.dumps(record, separators=(",", ":"))).encode())
        os.replace(tmp, self._log)
        self._lines = len(self._records)

    def recovered(self, spools: SpoolFiles) -> list[tuple[str, Spool, str]]:
        """(path, spool, replaced version) for every upload a previous run left;
        their records stay open until each is journaled again or done."""
        records = self._read_log()
        # a record a file each, as versions before the log wrote them
        earlier = sorted(self.directory.glob("*.json"))
        for record_path in earlier:
            try:
                record = json.loads(record_path.read_text())
                records[str(record["spool"])] = record
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("journal record %s is unreadable (%s); skipped", record_path.name, exc)
        found = []
        for spool_id, record in records.items():
            try:
                spool = spools.reopen(spool_id)
                found.append((str(record["path"]), spool, str(record.get("replaces", ""))))
            except (OSError, KeyError) as exc:
                log.error("the journal names an upload of %s whose data is gone (%s)",
                          record.get("path"), exc)
                continue
            self._records[spool_id] = record
        try:
            self._compact()
            for record_path in earlier:
                record_path.unlink()
        except OSError as exc:  # the log still holds them all
            supervise.failure("compacting the journal", exc, logger=log)
        return found

    def _read_log(self) -> dict[str, dict]:
        """The open records in the log, the last of each spool winning."""
        records: dict[str, dict] = {}
        try:
            lines = self._log.read_bytes().split(b"\n")
        except FileNotFoundError:
            lines = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if "done" in record:
                    records.pop(record["done"], None)
                else:
                    records[str(record["spool"])] = record
            except (ValueError, KeyError, TypeError) as exc:
                log.error("journal line %d is unreadable (%s); skipped", number, exc)
        return records
