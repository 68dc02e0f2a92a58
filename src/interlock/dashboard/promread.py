"""Read the gateway's own Prometheus values, process-wide, into plain numbers.

The dashboard must show the same numbers ``/metrics`` shows. With ``serve --workers N``
each worker keeps its values in files under ``PROMETHEUS_MULTIPROC_DIR``; reading only
this process's registry would show one worker's share. So this module collects exactly
as :meth:`interlock.telemetry.metrics.Metrics.render` does (a fresh registry with a
``MultiProcessCollector``, or the process's own registry), then sums the samples the
page needs. Everything after :func:`collect` is pure and unit-tested.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client import multiprocess as _mp

from interlock.telemetry.metrics import Metrics

Labels = Mapping[str, str]


@dataclass(slots=True)
class Samples:
    """Every sample by name: a list of (labels, value)."""

    by_name: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    families: set[str] = field(default_factory=set)  # registered, even with no samples yet

    def add(self, name: str, labels: dict[str, str], value: float) -> None:
        self.by_name.setdefault(name, []).append((labels, value))

    def rows(self, name: str) -> list[tuple[dict[str, str], float]]:
        return self.by_name.get(name, [])

    def total(self, name: str, **where: str) -> float:
        return sum(
            v for labels, v in self.rows(name) if all(labels.get(k) == x for k, x in where.items())
        )

    def sum_by(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for labels, v in self.rows(name):
            key = labels.get(label, "")
            out[key] = out.get(key, 0.0) + v
        return out


def collect(metrics: Metrics) -> Samples:
    """All samples, aggregated over worker processes the way ``/metrics`` aggregates them."""
    if metrics.multiprocess:
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        assert metrics.registry is not None
        registry = metrics.registry
    out = Samples()
    for family in registry.collect():
        out.families.add(family.name)
        for s in family.samples:
            out.add(s.name, dict(s.labels), float(s.value))
    return out


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative bucket counts (``le`` ascending, +Inf last), summed over label sets."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]
    total: float
    sum: float


def histogram(samples: Samples, name: str, keep: Iterable[Labels] | None = None) -> Histogram:
    """Merge a histogram's series; ``keep`` (one label dict per series) filters them."""
    wanted = None if keep is None else {frozenset(k.items()) for k in keep}
    buckets: dict[float, float] = {}
    for labels, v in samples.rows(name + "_bucket"):
        series = frozenset((k, x) for k, x in labels.items() if k != "le")
        if wanted is not None and series not in wanted:
            continue
        le = float(labels["le"])
        buckets[le] = buckets.get(le, 0.0) + v
    total = 0.0
    summed = 0.0
    for labels, v in samples.rows(name + "_count"):
        if wanted is None or frozenset(labels.items()) in wanted:
            total += v
    for labels, v in samples.rows(name + "_sum"):
        if wanted is None or frozenset(labels.items()) in wanted:
            summed += v
    bounds = tuple(sorted(buckets))
    return Histogram(bounds, tuple(buckets[b] for b in bounds), total, summed)


def quantile(q: float, bounds: tuple[float, ...], counts: tuple[float, ...]) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket.

    ``counts`` are cumulative. None when there are no observations. A quantile that
    falls in the +Inf bucket answers the largest finite bound (Prometheus does the same).
    """
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound
