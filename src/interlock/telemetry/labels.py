"""Bounded label values for subjects that operators name (keys, users, teams, features).

Prometheus keeps one time series per label combination forever (per process), so a label
fed from anything open-ended is a memory leak with a dashboard attached. Subjects here
are admin-made only: key ids, user and team names, and the feature tags declared on a key
by the operator (a request's own tags stay ledger dimensions, never labels).

Each scope keeps its first ``limit`` distinct values and counts the rest as ``other``,
and every value is cut to a safe alphabet and length first. So that one tenant cannot
crowd the others out, a tenant (a team, or a key without one) may also introduce at most
``per_tenant`` new values per scope: past that, *its* new values become ``other`` while
everyone else's still get their own series. A value already admitted is shared by all.
"""

from __future__ import annotations

import re

OTHER = "other"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:@/-]")
_MAX_LEN = 64


class LabelCap:
    """The first ``limit`` distinct values pass through (at most ``per_tenant`` of them
    first seen from one tenant); later new ones become ``other``."""

    __slots__ = ("_by_tenant", "_limit", "_per_tenant", "_seen")

    def __init__(self, limit: int, per_tenant: int | None = None) -> None:
        self._limit = limit
        self._per_tenant = per_tenant
        self._seen: dict[str, str] = {}
        # Admissions per tenant; at most ``limit`` entries since each admission counts.
        self._by_tenant: dict[str, int] = {}

    def label(self, raw: str, tenant: str | None = None) -> str:
        known = self._seen.get(raw)
        if known is not None:
            return known
        if len(self._seen) >= self._limit:
            return OTHER
        if self._per_tenant is not None and tenant is not None:
            used = self._by_tenant.get(tenant, 0)
            if used >= self._per_tenant:
                return OTHER
            self._by_tenant[tenant] = used + 1
        value = _UNSAFE.sub("_", raw[:_MAX_LEN]) or "_"
        self._seen[raw] = value
        return value
