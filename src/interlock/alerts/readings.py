"""Readings: the few numbers the rules need, cut from one scrape of the metrics.

Counters and histograms only grow, so a rule over "the last five minutes" is the
difference between the newest reading and the one five minutes older, exactly as
Prometheus' ``rate()``/``increase()`` work. A reading keeps only what rules use (request
counts and latency buckets per route, team outcomes, queue depth, daily budgets), so the
hour of history a learned baseline needs stays small.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

Samples = Mapping[tuple[str, tuple[tuple[str, str], ...]], float]
ALL = "*"  # the pseudo-route: every inference route together


@dataclass(frozen=True, slots=True)
class BudgetReading:
    budget: str
    scope: str
    subject: str | None
    window: str
    spent_usd: float
    planned_usd: float | None
    remaining_usd: float | None = None  # what the hard limit still allows


@dataclass(slots=True)
class Reading:
    at: float
    # route -> [total, 5xx]; route ALL sums the routes that named a configured model
    requests: dict[str, list[float]] = field(default_factory=dict)
    # route -> {upper bound: cumulative count}
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)
    # team -> [total, error]
    teams: dict[str, list[float]] = field(default_factory=dict)
    queue_depth: float = 0.0
    budgets: list[BudgetReading] = field(default_factory=list)


def read(samples: Samples, at: float, budgets: list[BudgetReading]) -> Reading:
    r = Reading(at, budgets=budgets)
    for (name, labels), value in samples.items():
        if name == "interlock_requests_total":
            lab = dict(labels)
            if lab.get("model", "-") == "-":
                continue  # admin, health and unknown-model requests are not traffic
            five = lab.get("status", "").startswith("5")
            for route in (lab.get("route", ""), ALL):
                row = r.requests.setdefault(route, [0.0, 0.0])
                row[0] += value
                if five:
                    row[1] += value
        elif name == "interlock_request_duration_seconds_bucket":
            lab = dict(labels)
            if lab.get("model", "-") == "-":
                continue
            le = float(lab["le"])
            for route in (lab.get("route", ""), ALL):
                b = r.buckets.setdefault(route, {})
                b[le] = b.get(le, 0.0) + value
        elif name == "interlock_tenant_requests_total":
            lab = dict(labels)
            if lab.get("scope") != "team":
                continue
            row = r.teams.setdefault(lab.get("subject", ""), [0.0, 0.0])
            row[0] += value
            if lab.get("outcome") == "error":
                row[1] += value
        elif name == "interlock_jobs_queue_depth":
            r.queue_depth += value
    return r


def quantile(q: float, old: dict[float, float], new: dict[float, float]) -> float | None:
    """``histogram_quantile(q, increase(...))`` between two readings (None: no data)."""
    bounds = sorted(new)
    counts = [new[b] - old.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # Prometheus answers the highest finite bound
            span = count - prev_count
            frac = (rank - prev_count) / span if span > 0 else 1.0
            return prev_bound + (bound - prev_bound) * frac
        prev_bound, prev_count = bound, count
    return prev_bound


def count_between(old: dict[float, float], new: dict[float, float]) -> float:
    top = max(new, default=None)
    return new[top] - old.get(top, 0.0) if top is not None else 0.0
