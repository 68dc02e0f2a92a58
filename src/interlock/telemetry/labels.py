"""Bounded label values for subjects that operators name (keys, users, teams, features).

Prometheus keeps one time series per label combination forever (per process), so a label
fed from anything open-ended is a memory leak with a dashboard attached. Subjects here
are admin-made (key ids, user and team names) or request tags, which clients can choose:
each scope therefore keeps its first ``limit`` distinct values and counts the rest as
``other``, and every value is cut to a safe alphabet and length first.
"""

from __future__ import annotations

import re

OTHER = "other"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@/-]")
_MAX_LEN = 64


class LabelCap:
    """The first ``limit`` distinct values pass through; later new ones become ``other``."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: dict[str, str] = {}

    def label(self, raw: str) -> str:
        known = self._seen.get(raw)
        if known is not None:
            return known
        if len(self._seen) >= self._limit:
            return OTHER
        value = _UNSAFE.sub("_", raw[:_MAX_LEN]) or "_"
        self._seen[raw] = value
        return value
