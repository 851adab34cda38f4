"""Injected faults: which requests fail, stall or lose their connection.

Rules match route names with ``fnmatch``; ``after`` lets the first N matches
through, ``times`` spends a rule after N matches, ``rate`` fires it with that
probability (seeded, so a run repeats).
The first rule that fires for a request decides its fate; latency adds up
(the global ``latency_ms`` plus every matching rule's). A rule that could
only fail a request an earlier rule already fails is not spent on it, so
``{"status": 503, "times": 1}`` then ``{"status": 429, "times": 1}`` on one
route fail two requests, one each. The middleware in
``app.py`` applies the decision.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass

_RULE_KEYS = {"route", "status", "retry_after", "times", "rate", "cut_after", "latency_ms",
              "garble", "after"}


class FaultError(ValueError):
    """A fault configuration that cannot be applied (the message says why)."""


@dataclass
class Decision:
    latency_ms: float = 0
    status: int | None = None
    retry_after: float | None = None
    cut_after: int | None = None
    garble: bool = False  # a 200 whose body does not decode as its Content-Encoding says


class Faults:
    def __init__(self, link_ttl: int):
        self._lock = threading.Lock()
        self._default_ttl = link_ttl  # --link-ttl: what a config without link_ttl means
        self._set({})

    def _set(self, config: dict) -> None:
        self.latency_ms = float(config.get("latency_ms", 0))
        self.seed = config.get("seed")
        self.rules = [dict(rule) for rule in config.get("rules", [])]
        self.archive_delay_ms = float(config.get("archive_delay_ms", 0))
        self.link_ttl = int(config.get("link_ttl", self._default_ttl))
        self._random = random.Random(self.seed)

    def replace(self, config: object) -> None:
        """Replace the whole configuration (``PUT /_admin/faults``); what it leaves out
        goes back to its default. A malformed config is refused whole."""
        if not isinstance(config, dict):
            raise FaultError("faults must be a JSON object")
        rules = config.get("rules", [])
        if not isinstance(rules, list):
            raise FaultError("rules must be a list")
        for rule in rules:
            if not isinstance(rule, dict) or not isinstance(rule.get("route"), str):
                raise FaultError("each rule needs a route pattern")
            unknown = set(rule) - _RULE_KEYS
            if unknown:
                raise FaultError(f"unknown rule field(s): {', '.join(sorted(unknown))}")
        try:
            with self._lock:
                self._set(config)
        except (TypeError, ValueError) as exc:
            raise FaultError(f"bad fault value: {exc}") from None

    def clear(self) -> None:
        """Back to the start: no rules, no latency, the command line's link lifetime."""
        with self._lock:
            self._set({})

    def snapshot(self) -> dict:
        with self._lock:
            return {"latency_ms": self.latency_ms, "rules": [dict(r) for r in self.rules],
                    "link_ttl": self.link_ttl, "archive_delay_ms": self.archive_delay_ms,
                    "seed": self.seed}

    def decide(self, route: str) -> Decision:
        decision = Decision(latency_ms=self.latency_ms)
        with self._lock:
            for rule in self.rules:
                if not fnmatch.fnmatchcase(route, rule["route"]):
                    continue
                if rule.get("after", 0) > 0:  # spare the first N matches (page 1 of a listing)
                    rule["after"] -= 1
                    continue
                if rule.get("times") is not None and rule["times"] <= 0:
                    continue
                acts = rule.get("status") is not None or rule.get("cut_after") is not None \
                    or bool(rule.get("garble"))
                decided = decision.status is not None or decision.cut_after is not None \
                    or decision.garble
                latency = float(rule.get("latency_ms", 0))
                if acts and decided and not latency:
                    continue  # nothing left for it to do here: not spent, kept for the next
                if rule.get("rate") is not None and self._random.random() >= rule["rate"]:
                    continue
                decision.latency_ms += latency
                if acts and not decided:
                    decision.status = rule.get("status")
                    decision.retry_after = rule.get("retry_after")
                    decision.cut_after = rule.get("cut_after")
                    decision.garble = bool(rule.get("garble"))
                if rule.get("times") is not None:
                    rule["times"] -= 1
        return decision
