"""Bad input from the server side: listings and links a client must survive.

A store is input too. When switched on (``PUT /_admin/bad-input`` or
``--bad-input JSON``), listings of the chosen folders carry extra entries no
client should trust: names with ``/``, ``.``, ``..``, NUL, control characters,
a lone surrogate, an empty or missing (``null``) name, names over 255 bytes
(and over FUSE's 1024), sizes of -1 and 2**64, an item whose ``id`` and
``size`` are not numbers, and a second entry under an existing name. These
entries have ids or paths that do not exist (a download answers 404).
``size_delta`` makes listings (and Vagon's download-link reply) declare a
file's size off by that many bytes while the object store keeps serving the
real bytes; ``unsized`` makes downloads stop stating the file's size (so a
client must count what arrives); ``link_host`` puts another host name (same
port) into Vagon download links, ``relative_links`` leaves scheme and host out
of them (a path the client resolves against the API's URL).

Also kept here: how many object-store requests carried an ``Authorization``
header, and which ``Host`` they named, so a test can check that a client
follows a link to its host and never sends its credentials there.

The bad entries go on the last page of a Vagon listing (so the first page,
which clients size their paging by, stays honest) and at the end of a tenant
listing. Replies are rendered with ``ensure_ascii`` so a lone surrogate
survives as ``\\ud800`` on the wire, as a misbehaving server would send it.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import urlsplit, urlunsplit

from starlette.responses import Response

FAKE_ID = 2_000_000_000
KINDS = ("slash", "dot", "dotdot", "nul", "control", "surrogate", "empty", "null", "long",
         "size", "malformed", "duplicate")
_NAMES: dict[str, list[str | None]] = {
    "slash": ["bad/slash.txt"],
    "dot": ["."],
    "dotdot": [".."],
    "nul": ["nul\x00name.txt"],
    "control": ["ctl\x01\x1bname.txt"],
    "surrogate": ["sur\ud800rogate.txt"],
    "empty": [""],
    "null": [None],
    "long": ["L" * 300, "M" * 1100],  # over NAME_MAX; over FUSE_NAME_MAX
}
# kind -> (name, fields that replace the entry's own)
_ODD: dict[str, list[tuple[str, dict[str, object]]]] = {
    "size": [("negative-size.bin", {"size": -1}), ("huge-size.bin", {"size": 2 ** 64})],
    "malformed": [("malformed.bin", {"id": "not-a-number", "size": "big"})],
}
_KEYS = {"vagon", "tenant", "kinds", "size_delta", "link_host", "relative_links", "unsized"}


class BadInputError(ValueError):
    """A configuration that cannot be applied (the message says why)."""


class BadInput:
    """The switches (replaced whole, under the lock) and what the object store saw.

    Protects (``_lock``): the counters, and the switches while they change;
    handlers read the switches without it (each is replaced, never mutated)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.credentials_seen = 0
        self.hosts_seen: set[str] = set()
        self._set({})

    def _set(self, config: dict) -> None:
        # all parsed first: a bad value changes nothing
        vagon = {int(p) for p in config.get("vagon", [])}
        tenant = {str(p).strip("/") for p in config.get("tenant", [])}
        kinds = [str(k) for k in config.get("kinds", KINDS)]
        size_delta = {str(k): int(v) for k, v in config.get("size_delta", {}).items()}
        link_host: str | None = config.get("link_host")
        relative_links = bool(config.get("relative_links", False))
        unsized = bool(config.get("unsized", False))
        self.vagon, self.tenant, self.kinds = vagon, tenant, kinds
        self.size_delta, self.link_host, self.unsized = size_delta, link_host, unsized
        self.relative_links = relative_links

    def replace(self, config: object) -> None:
        if not isinstance(config, dict):
            raise BadInputError("bad-input must be a JSON object")
        unknown = set(config) - _KEYS
        if unknown:
            raise BadInputError(f"unknown field(s): {', '.join(sorted(unknown))}")
        wrong = set(config.get("kinds", [])) - set(KINDS)
        if wrong:
            raise BadInputError(f"unknown kind(s): {', '.join(sorted(wrong))}; "
                                f"known: {', '.join(KINDS)}")
        if config.get("link_host") is not None and not isinstance(config["link_host"], str):
            raise BadInputError("link_host must be a host name")
        try:
            with self._lock:
                self._set(config)
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadInputError(f"bad value: {exc}") from None

    def snapshot(self) -> dict:
        with self._lock:
            return {"vagon": sorted(self.vagon), "tenant": sorted(self.tenant),
                    "kinds": list(self.kinds), "size_delta": dict(self.size_delta),
                    "link_host": self.link_host, "relative_links": self.relative_links,
                    "unsized": self.unsized,
                    "credentials_seen": self.credentials_seen,
                    "hosts_seen": sorted(self.hosts_seen)}

    def saw_request(self, headers) -> None:
        """Note an object-store request: the host it named, and whether it carried
        credentials it should not have."""
        with self._lock:
            self.hosts_seen.add(headers.get("host", ""))
            if headers.get("authorization"):
                self.credentials_seen += 1

    # -- what handlers ask ---------------------------------------------------------

    def link_base(self, public_url: str) -> str:
        """The base of download links: ``public_url`` with ``link_host`` as its
        host, or nothing with ``relative_links``."""
        if self.relative_links:
            return ""
        if not self.link_host:
            return public_url
        parts = urlsplit(public_url)
        netloc = self.link_host if parts.port is None else f"{self.link_host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def unsize(self, response):
        """With ``unsized``: a download that does not state the file's size (no
        Content-Length, so chunked; ``Content-Range: bytes a-b/*``)."""
        if self.unsized and response.status in (200, 206):
            response.headers.pop("content-length", None)
            if "content-range" in response.headers:
                span = response.headers["content-range"].rpartition("/")[0]
                response.headers["content-range"] = f"{span}/*"
        return response

    def declared(self, name, size: int) -> int:
        return max(0, size + self.size_delta.get(name, 0)) if isinstance(name, str) else size

    def _bad_entries(self, existing: list[str]) -> list[tuple[str | None, dict[str, object]]]:
        """(name, fields to override) of each bad entry to add."""
        bad: list[tuple[str | None, dict[str, object]]] = [
            (n, {}) for kind in self.kinds for n in _NAMES.get(kind, [])]
        bad += [odd for kind in self.kinds for odd in _ODD.get(kind, [])]
        if "duplicate" in self.kinds and existing:
            bad.append((existing[0], {}))
        return bad

    def vagon_listing(self, body: dict, parent_id: int, make_row) -> Response | None:
        """The listing with bad entries added (last page), or None when not switched on."""
        if parent_id not in self.vagon and not self.size_delta:
            return None
        items = body["files"]
        for item in items:
            fields = item.get("attributes", item)
            if fields.get("object_type") == "file":
                fields["size"] = self.declared(fields.get("name"), fields["size"])
        if parent_id in self.vagon and body.get("next_page") is None:
            existing = [i.get("attributes", i).get("name") for i in items]
            for n, (name, fields) in enumerate(self._bad_entries(existing)):
                items.append(make_row({"id": FAKE_ID + n, "name": name, **fields}))
        return ascii_json(body)

    def tenant_listing(self, files: list[dict], path: str) -> Response | None:
        if path not in self.tenant and not self.size_delta:
            return None
        for item in files:
            if not item.get("is_dir"):
                item["size"] = self.declared(item["name"], item["size"])
        if path in self.tenant:
            for n, (name, fields) in enumerate(self._bad_entries([f["name"] for f in files])):
                shown = name if isinstance(name, str) else f"null-{n}"
                files.append({"name": name, "path": f"{path}/{shown}" if path else shown,
                              "size": 7 + n, "is_dir": False,
                              "updated_at": "2026-01-01T00:00:00Z", **fields})
                files[-1].pop("id", None)
        return ascii_json({"files": files})


def ascii_json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=True, separators=(",", ":")), status,
                    media_type="application/json")
