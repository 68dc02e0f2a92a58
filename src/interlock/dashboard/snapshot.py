"""One dashboard sample: everything the page shows, computed from the gateway's own state.

The page polls this every 1-2 s and derives rates (requests/s, recent percentiles, hit
rate) from the differences between successive samples, so the server keeps no history
and any worker can answer any poll. Counters and gauges come from the Prometheus values
(process-wide, as ``/metrics``); spend from the ledger; budgets, breakers and the
degradation level from the objects that enforce them.
"""

from __future__ import annotations

import os
import time
from typing import Any

from interlock.dashboard.promread import Samples, collect
from interlock.dashboard.spend import SpendCache
from interlock.dashboard.traffic import traffic
from interlock.gateway import Gateway
from interlock.resilience.degradation import Level

_CIRCUIT_NAMES = {0: "closed", 1: "half_open", 2: "open"}
_CIRCUIT_VALUES = {v: k for k, v in _CIRCUIT_NAMES.items()}


def circuits(gw: Gateway, samples: Samples) -> list[dict[str, Any]]:
    """Breaker per deployment: the worst state any worker reports (a max gauge) wins over
    this worker's own view, so one worker's open circuit is not hidden by another's."""
    reported = {
        labels.get("deployment", ""): int(v)
        for labels, v in samples.rows("interlock_circuit_state")
    }
    out = []
    for name in gw.deployments:
        d = gw.health.describe(name)
        local = _CIRCUIT_VALUES.get(str(d["circuit"]), 0)
        state = _CIRCUIT_NAMES.get(max(local, reported.get(name, 0)), "closed")
        latency = d["latency_ewma_s"]
        out.append(
            {
                "deployment": name,
                "provider": d["provider"],
                "model": d["model"],
                "state": state,
                "trips": d["trips"],
                "open_for_s": d["open_for_s"],
                "in_flight": d["in_flight"],
                "latency_ms": round(latency * 1000, 1) if isinstance(latency, float) else None,
            }
        )
    return out


def degradation(gw: Gateway, samples: Samples) -> dict[str, Any]:
    ladder = gw.ladder
    gauge = int(samples.total("interlock_degradation_level"))
    level = Level(max(int(ladder.effective), min(gauge, int(Level.MINIMAL))))
    return {
        "level": level.label,
        "value": int(level),
        "mode": "forced" if ladder.state.forced is not None else "auto",
        "reason": ladder.state.reason,
        "signals": ladder.signals,
    }


def queue(samples: Samples) -> dict[str, Any]:
    by_priority = samples.sum_by("interlock_jobs_queue_depth", "priority")
    published = bool(samples.rows("interlock_jobs_queue_depth")) or bool(
        samples.rows("interlock_jobs_oldest_queued_age_seconds")
    )
    return {
        "depth": int(sum(by_priority.values())) if published else None,
        "by_priority": {k: int(v) for k, v in sorted(by_priority.items())},
        "oldest_age_s": samples.total("interlock_jobs_oldest_queued_age_seconds"),
        "finished": {
            k: int(v) for k, v in samples.sum_by("interlock_jobs_finished_total", "status").items()
        },
    }


async def snapshot(gw: Gateway, spend_cache: SpendCache) -> dict[str, Any]:
    """``spend_cache``: the process's one cache of the ledger's spend figures (built by
    the app, :class:`interlock.api.services.Services`)."""
    samples = collect(gw.metrics)
    spend, budgets = await spend_cache.get()
    figures = traffic(samples, typed_errors=hasattr(gw.metrics, "errors"))
    # The gauge counts this very poll as in flight; the operator asked about the others.
    figures["in_flight"] = max(0, figures["in_flight"] - 1)
    return {
        "object": "dashboard.sample",
        "time": time.time(),
        "started_at": gw.started_at,
        "pid": os.getpid(),
        "workers_aggregated": gw.metrics.multiprocess,
        "traffic": figures,
        "error_types": figures.pop("error_types"),
        "spend": spend,
        "budgets": budgets,
        "queue": queue(samples),
        "circuits": circuits(gw, samples),
        "degradation": degradation(gw, samples),
    }
