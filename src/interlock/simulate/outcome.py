"""What a simulated run predicts, as numbers a capacity review reads.

Money is summed exactly (Decimal) and extrapolated per day from the simulated span
(the recorded span: scaling adds copies, it does not stretch time). Percentiles are
nearest-rank, as ``interlock loadtest`` computes them, so a 1× prediction and a load
test's report are compared like for like. Deployment peaks are the busiest sliding
minute of calls started there (a recording shorter than a minute is scaled up to one),
which is what an rpm/tpm quota must cover.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from interlock.capacity.report import CapacityParams, replicas_for
from interlock.simulate.demand import Demand

if TYPE_CHECKING:
    from interlock.simulate.engine import SimOptions
    from interlock.simulate.routing import Candidate, RoutePlan

__all__ = ["Served", "SimResult", "compare", "percentile", "summarise"]

_DAY_S = 86_400.0
_ZERO = Decimal(0)


def percentile(sorted_xs: list[float], p: float) -> float | None:
    """Nearest-rank percentile (as loadtest/stats.py)."""
    if not sorted_xs:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_xs)))
    return sorted_xs[min(rank, len(sorted_xs)) - 1]


@dataclass(slots=True)
class Served:
    """One simulated request's fate."""

    demand: Demand
    outcome: str = "pending"
    end: float = 0.0
    deployment: str | None = None
    cost: Decimal = _ZERO
    saved: Decimal = _ZERO
    cache_hit: bool = False
    queue_depth: int = 0
    route: RoutePlan | None = None
    reserved: tuple[tuple[str, ...], Decimal] = ((), _ZERO)

    def finish(
        self, end: float, *, deployment: str | None, cost: Decimal, saved: Decimal, cache_hit: bool
    ) -> None:
        self.outcome, self.end, self.deployment = "ok", end, deployment
        self.cost, self.saved, self.cache_hit = cost, saved, cache_hit

    def refuse(self, now: float, code: str) -> None:
        self.outcome, self.end = code, now

    @property
    def latency_ms(self) -> float:
        return (self.end - self.demand.at) * 1000


@dataclass(slots=True)
class SimResult:
    scale: float
    span_s: float
    requests: int
    ok: int
    errors: dict[str, int]
    latency_ms: dict[str, float | None]
    cost_usd: Decimal
    cost_per_day_usd: Decimal
    cache_hits: int
    cache_saved_usd: Decimal
    cache_saved_per_day_usd: Decimal
    queue_depth: dict[str, float]
    peak_rps: float
    replicas: int
    replicas_needed: int
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def rate_limited(self) -> int:
        return sum(n for code, n in self.errors.items() if code in _HTTP_429)

    def to_json(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "span_s": round(self.span_s, 3),
            "requests": self.requests,
            "ok": self.ok,
            "errors": dict(self.errors),
            "http_429": self.rate_limited,
            "latency_ms": self.latency_ms,
            "cost_usd": str(self.cost_usd),
            "cost_per_day_usd": str(self.cost_per_day_usd),
            "cache_hits": self.cache_hits,
            "cache_saved_usd": str(self.cache_saved_usd),
            "cache_saved_per_day_usd": str(self.cache_saved_per_day_usd),
            "queue_depth": self.queue_depth,
            "peak_rps": round(self.peak_rps, 3),
            "replicas": self.replicas,
            "replicas_needed": self.replicas_needed,
            "deployments": self.deployments,
        }


_HTTP_429 = frozenset({"rate_limited", "deployment_busy", "budget_exceeded"})


def _peak_minute(starts: list[tuple[float, int]], span_s: float) -> tuple[float, float]:
    """(requests, tokens) in the busiest sliding minute of ``starts`` (sorted by time)."""
    if not starts:
        return 0.0, 0.0
    if span_s < 60.0:
        factor = 60.0 / max(span_s, 1.0)
        return len(starts) * factor, sum(t for _, t in starts) * factor
    best_n = best_t = 0
    lo = tokens = 0
    for hi, (at, tok) in enumerate(starts):
        tokens += tok
        while starts[lo][0] <= at - 60.0:
            tokens -= starts[lo][1]
            lo += 1
        best_n, best_t = max(best_n, hi - lo + 1), max(best_t, tokens)
    return float(best_n), float(best_t)


def _per_day(amount: Decimal, span_s: float) -> Decimal:
    return (amount * Decimal(_DAY_S) / Decimal(repr(max(span_s, 1e-9)))).quantize(Decimal("1e-6"))


def summarise(
    served: list[Served],
    span_s: float,
    cand: Candidate,
    starts: Mapping[str, list[tuple[float, int]]],
    peak_in_flight: Mapping[str, int],
    opts: SimOptions,
) -> SimResult:
    ok = [s for s in served if s.outcome == "ok"]
    lat = sorted(s.latency_ms for s in ok)
    errors = Counter(s.outcome for s in served if s.outcome != "ok")
    cost = sum((s.cost for s in ok), _ZERO)
    saved = sum((s.saved for s in ok), _ZERO)
    depth = sorted(float(s.queue_depth) for s in served)
    arrivals = sorted((s.demand.at, 0) for s in served)
    streams = sorted((s.demand.at, 0) for s in served if s.demand.stream)
    peak_rps = _peak_minute(arrivals, span_s)[0] / 60.0
    cpu_rps = peak_rps + _peak_minute(streams, span_s)[0] / 60.0 * (opts.stream_cost - 1.0)
    params = CapacityParams(opts.replica_rps, opts.stream_cost, opts.target_utilisation)
    deployments: dict[str, dict[str, Any]] = {}
    for name, plan in cand.deployments.items():
        mine = [s for s in ok if s.deployment == name]
        if not mine and not starts.get(name):
            continue
        rpm, tpm = _peak_minute(starts.get(name, []), span_s)
        dep_cost = sum((s.cost for s in mine), _ZERO)
        deployments[name] = {
            "requests": len(mine),
            "cost_usd": str(dep_cost),
            "cost_per_day_usd": str(_per_day(dep_cost, span_s)),
            "peak_rpm": round(rpm, 1),
            "peak_tpm": round(tpm, 1),
            "rpm_limit": plan.rpm,
            "tpm_limit": plan.tpm,
            "peak_in_flight": peak_in_flight.get(name, 0),
            "max_concurrency": plan.max_concurrency,
        }
    return SimResult(
        scale=opts.scale,
        span_s=span_s,
        requests=len(served),
        ok=len(ok),
        errors=dict(sorted(errors.items())),
        latency_ms={
            f"p{p}": None if (v := percentile(lat, p)) is None else round(v, 3)
            for p in (50, 90, 95, 99)
        }
        | {"mean": round(sum(lat) / len(lat), 3) if lat else None},
        cost_usd=cost,
        cost_per_day_usd=_per_day(cost, span_s),
        cache_hits=sum(1 for s in ok if s.cache_hit),
        cache_saved_usd=saved,
        cache_saved_per_day_usd=_per_day(saved, span_s),
        queue_depth={
            "p50": percentile(depth, 50) or 0.0,
            "p95": percentile(depth, 95) or 0.0,
            "max": depth[-1] if depth else 0.0,
        },
        peak_rps=peak_rps,
        replicas=opts.replicas,
        replicas_needed=replicas_for(cpu_rps, params),
        deployments=deployments,
    )


def compare(base: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
    """Candidate minus baseline for the headline figures of two ``to_json`` results."""
    out: dict[str, Any] = {}
    for key in ("cost_per_day_usd", "cache_saved_per_day_usd"):
        out[key] = str(Decimal(candidate[key]) - Decimal(base[key]))
    for key in ("http_429", "ok", "replicas_needed"):
        out[key] = candidate[key] - base[key]
    b95, c95 = base["latency_ms"]["p95"], candidate["latency_ms"]["p95"]
    out["p95_ms"] = None if b95 is None or c95 is None else round(c95 - b95, 3)
    return out
