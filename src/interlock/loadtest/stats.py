"""Turn a run's outcomes into the result document (the JSON report).

Percentiles are exact (sorted samples, nearest rank): a load test holds at most a few
million outcomes, and an approximate sketch would make the p99 that gates a launch an
estimate of an estimate.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from interlock.loadtest.runner import Outcome, RunResult

__all__ = ["SCHEMA", "histogram", "percentile", "summarise", "summary_ms"]

SCHEMA = "interlock.loadtest/1"


def percentile(sorted_xs: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted samples (None when there are none)."""
    if not sorted_xs:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_xs)))
    return sorted_xs[min(rank, len(sorted_xs)) - 1]


def summary_ms(values_s: Iterable[float]) -> dict[str, float | int | None]:
    xs = sorted(v * 1000 for v in values_s)
    out: dict[str, float | int | None] = {"count": len(xs)}
    for p in (50, 90, 95, 99):
        v = percentile(xs, p)
        out[f"p{p}"] = None if v is None else round(v, 3)
    out["mean"] = round(sum(xs) / len(xs), 3) if xs else None
    out["max"] = round(xs[-1], 3) if xs else None
    return out


def histogram(values_ms: Sequence[float], bins: int = 40) -> dict[str, list[float] | list[int]]:
    """Log-spaced bins: latencies span orders of magnitude (a cache hit and a timeout)."""
    if not values_ms:
        return {"edges_ms": [], "counts": []}
    lo, hi = max(min(values_ms), 0.01), max(max(values_ms), 0.02)
    if hi <= lo * 1.01:
        hi = lo * 1.1
    ratio = (hi / lo) ** (1 / bins)
    edges = [lo * ratio**i for i in range(bins + 1)]
    counts = [0] * bins
    log_lo, log_r = math.log(lo), math.log(ratio)
    for v in values_ms:
        i = int((math.log(max(v, lo)) - log_lo) / log_r)
        counts[min(max(i, 0), bins - 1)] += 1
    return {"edges_ms": [round(e, 4) for e in edges], "counts": counts}


def _timeline(outcomes: Sequence[Outcome], bucket_s: float) -> list[dict[str, Any]]:
    """Per bucket of intended send time: sends, errors and latency percentiles."""
    buckets: dict[int, list[Outcome]] = {}
    for o in outcomes:
        buckets.setdefault(int(o.intended_s // bucket_s), []).append(o)
    rows = []
    for b in sorted(buckets):
        group = buckets[b]
        lat = sorted(
            o.latency_s * 1000 for o in group if o.error is None and o.latency_s is not None
        )
        rows.append(
            {
                "t_s": round(b * bucket_s, 3),
                "sent": len(group),
                "ok": len(lat),
                "errors": sum(1 for o in group if o.error is not None),
                "p50_ms": _r(percentile(lat, 50)),
                "p95_ms": _r(percentile(lat, 95)),
                "p99_ms": _r(percentile(lat, 99)),
            }
        )
    return rows


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def summarise(result: RunResult, *, target: str, config: dict[str, Any], target_rate: float,
              planned: int) -> dict[str, Any]:  # fmt: skip
    """The result document: everything the HTML report, ``--slo`` and ``interlock check``
    read. ``target_rate`` is the schedule's peak rate (the rate a ramp reaches)."""
    outs = result.outcomes
    sent = len(outs)
    ok = [o for o in outs if o.error is None and o.latency_s is not None]
    errors = Counter(o.error for o in outs if o.error is not None)
    finished = sum(1 for o in outs if o.latency_s is not None)
    window = result.last_send_s - result.first_send_s
    achieved = (sent - 1) / window if sent > 1 and window > 0 else None
    scheduled_window = outs[-1].intended_s - outs[0].intended_s if sent > 1 else 0.0
    scheduled_rate = (sent - 1) / scheduled_window if scheduled_window > 0 else None
    lags = sorted(o.lag_s * 1000 for o in outs)
    duration = max(result.wall_s, 1e-9)
    bucket = 1.0 if (outs and outs[-1].intended_s >= 5) else 0.25
    by_kind: dict[str, Any] = {}
    for kind in sorted({o.kind for o in outs}):
        group = [o for o in outs if o.kind == kind]
        good = [o for o in group if o.error is None and o.latency_s is not None]
        by_kind[kind] = {
            "sent": len(group),
            "ok": len(good),
            "errors": len(group) - len(good),
            "latency_ms": summary_ms(o.latency_s for o in good if o.latency_s is not None),
            "ttft_ms": summary_ms(o.ttft_s for o in good if o.ttft_s is not None)
            if kind == "stream"
            else None,
        }
    return {
        "schema": SCHEMA,
        "target": target,
        "started_at": result.started_at,
        "config": config,
        "requests": {
            "planned": planned,
            "sent": sent,
            "finished": finished,
            "ok": len(ok),
            "errors": sent - len(ok),
            "unfinished": sent - finished,
            "stopped_early": result.stopped_early,
        },
        "arrival": {
            "target_rps": target_rate,
            # over the schedule's own window: equals target_rps for a constant rate
            "scheduled_rps": _r(scheduled_rate),
            "achieved_rps": _r(achieved),
            "error_pct": _r(abs(achieved / scheduled_rate - 1) * 100)
            if achieved and scheduled_rate
            else None,
            # actual send - intended send; latencies count from the actual send
            "lag_ms": {
                "min": _r(lags[0] if lags else None),
                "p50": _r(percentile(lags, 50)),
                "p99": _r(percentile(lags, 99)),
                "max": _r(lags[-1] if lags else None),
            },
        },
        "latency_ms": summary_ms(o.latency_s for o in ok if o.latency_s is not None),
        "ttft_ms": summary_ms(o.ttft_s for o in ok if o.ttft_s is not None),
        "throughput": {
            "duration_s": round(duration, 3),
            "ok_rps": round(len(ok) / duration, 3),
            "output_tokens_per_s": round(sum(o.output_tokens for o in ok) / duration, 3),
        },
        "error_rate": round((sent - len(ok)) / sent, 6) if sent else 0.0,
        "errors": dict(sorted(errors.items(), key=lambda kv: (-kv[1], kv[0] or ""))),
        "by_kind": by_kind,
        "timeline": _timeline(outs, bucket),
        "histogram": histogram([o.latency_s * 1000 for o in ok if o.latency_s is not None]),
    }
