"""``interlock report capacity``: utilisation, quota headroom and replicas at N×.

Three figures per deployment, all from the ledger and the configuration:

* **in flight** by Little's law, L = λ·W: the arrival rate λ (average, and at the peak
  minute) times the mean time a call spends at the deployment W (its recorded latency).
  Against ``max_concurrency`` × replicas this is the deployment's utilisation.
* **quota headroom** at the observed peak minute: 1 − peak rpm / ``rpm`` (and tpm). A
  negative headroom means the peak already exceeded the quota (the gateway queued or
  refused the excess).
* **at N×**: the peak minute scaled by N against the same quotas.

For the gateway itself, a replica's capacity is a configured figure (``launch.replica_rps``,
default from the measured CPU per request in docs/benchmarks.md): a stream costs
``launch.stream_cost`` requests' worth of CPU, and replicas are sized to keep each below
``launch.target_utilisation`` at the peak, because a CPU-bound event loop's latency
grows steeply as it nears saturation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from interlock.capacity.peaks import MinuteLoad, per_minute
from interlock.capacity.traffic import Call
from interlock.settings import Settings

__all__ = [
    "DEFAULT_MULTIPLES",
    "CapacityParams",
    "CapacityReport",
    "capacity_report",
    "replicas_for",
]

DEFAULT_MULTIPLES = (1.0, 2.0, 3.0, 10.0)
_MIN_COVER_S = 10.0  # a minute seen for less than this is not scaled up to a full minute


@dataclass(frozen=True, slots=True)
class CapacityParams:
    replica_rps: float  # non-streaming requests/s one replica sustains at 100 % CPU
    stream_cost: float = 1.0  # one stream costs this many requests' worth of CPU
    target_utilisation: float = 0.7
    replicas: int = 1  # gateway replicas that served the recorded traffic
    multiples: tuple[float, ...] = DEFAULT_MULTIPLES

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> CapacityParams:
        launch = settings.launch
        values: dict[str, Any] = {
            "replica_rps": launch.replica_rps,
            "stream_cost": launch.stream_cost,
            "target_utilisation": launch.target_utilisation,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(slots=True)
class DeploymentCapacity:
    name: str
    requests: int
    mean_latency_ms: float
    avg_rps: float
    peak_rpm: float
    peak_tpm: float
    in_flight_avg: float
    in_flight_peak: float
    capacity: int | None  # max_concurrency × replicas
    utilisation: float | None  # in_flight_peak / capacity
    rpm_limit: int | None
    tpm_limit: int | None
    rpm_headroom: float | None  # 1 - peak/limit
    tpm_headroom: float | None
    fits_at: dict[str, bool] = field(default_factory=dict)  # "2x" -> peak × 2 within quotas


@dataclass(slots=True)
class GatewayCapacity:
    replicas: int
    replica_rps: float
    avg_rps: float
    peak_rps: float  # at the peak minute
    peak_cpu_rps: float  # streams weighted by stream_cost
    utilisation_per_replica: float
    in_flight_peak_per_replica: float
    replicas_needed: dict[str, int] = field(default_factory=dict)  # "2x" -> replicas


@dataclass(slots=True)
class CapacityReport:
    start: float
    end: float
    requests: int
    gateway: GatewayCapacity
    deployments: list[DeploymentCapacity]

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"schema": "interlock.capacity/1", **asdict(self)}


def label(multiple: float) -> str:
    return f"{multiple:g}x"


def replicas_for(cpu_rps: float, params: CapacityParams) -> int:
    """Replicas that keep each below the target utilisation (at least one)."""
    per_replica = params.replica_rps * params.target_utilisation
    return max(1, math.ceil(cpu_rps / per_replica - 1e-9))


def _peak_per_s(loads: list[MinuteLoad], lo: float, hi: float, attr: str) -> float:
    """The peak minute's count per second; a partly observed minute counts per second of
    the part observed (at least ``_MIN_COVER_S``, or the whole recording if shorter), so
    a few seconds at the edge of a window do not pass for a burst."""
    best = 0.0
    for m in loads:
        start = m.minute * 60.0
        cover = min(start + 60.0, hi) - max(start, lo)
        cover = min(60.0, max(cover, min(_MIN_COVER_S, hi - lo), 1e-3))
        best = max(best, float(getattr(m, attr)) / cover)
    return best


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def capacity_report(
    calls: list[Call], settings: Settings, params: CapacityParams
) -> CapacityReport:
    """The capacity figures for ``calls`` (sorted by arrival) under ``settings``."""
    lo = calls[0].at if calls else 0.0
    hi = max((c.at + c.latency_ms / 1000 for c in calls), default=lo)
    span = max(hi - lo, 1.0)
    names = list(settings.deployments)
    names += sorted({c.deployment for c in calls if c.deployment} - set(names))  # type: ignore[misc]
    deployments = [_deployment(n, calls, settings, params, lo, hi, span) for n in names]
    loads = per_minute(calls)
    peak_rps = _peak_per_s(loads, lo, hi, "requests")
    peak_streams = _peak_per_s(loads, lo, hi, "stream_requests")
    cpu_rps = peak_rps + peak_streams * (params.stream_cost - 1.0)
    latency_s = _mean([c.latency_ms for c in calls]) / 1000
    replicas = max(1, params.replicas)
    gateway = GatewayCapacity(
        replicas=replicas,
        replica_rps=params.replica_rps,
        avg_rps=len(calls) / span,
        peak_rps=peak_rps,
        peak_cpu_rps=cpu_rps,
        utilisation_per_replica=cpu_rps / (replicas * params.replica_rps),
        in_flight_peak_per_replica=peak_rps * latency_s / replicas,
        replicas_needed={label(m): replicas_for(cpu_rps * m, params) for m in params.multiples},
    )
    return CapacityReport(lo, hi, len(calls), gateway, deployments)


def _deployment(
    name: str,
    calls: list[Call],
    settings: Settings,
    params: CapacityParams,
    lo: float,
    hi: float,
    span: float,
) -> DeploymentCapacity:
    mine = [c for c in calls if c.upstream and c.deployment == name]
    loads = per_minute(mine)
    peak_rpm = _peak_per_s(loads, lo, hi, "requests") * 60
    peak_tpm = _peak_per_s(loads, lo, hi, "tokens") * 60
    latency_s = _mean([c.latency_ms for c in mine]) / 1000
    avg_rps = len(mine) / span
    cfg = settings.deployments.get(name)
    rpm = cfg.rpm if cfg is not None else None
    tpm = cfg.tpm if cfg is not None else None
    conc = cfg.max_concurrency if cfg is not None else None
    capacity = conc * max(1, params.replicas) if conc is not None else None
    in_peak = peak_rpm / 60 * latency_s
    fits = {
        label(m): (rpm is None or peak_rpm * m <= rpm) and (tpm is None or peak_tpm * m <= tpm)
        for m in params.multiples
    }
    return DeploymentCapacity(
        name=name,
        requests=len(mine),
        mean_latency_ms=latency_s * 1000,
        avg_rps=avg_rps,
        peak_rpm=peak_rpm,
        peak_tpm=peak_tpm,
        in_flight_avg=avg_rps * latency_s,
        in_flight_peak=in_peak,
        capacity=capacity,
        utilisation=in_peak / capacity if capacity else None,
        rpm_limit=rpm,
        tpm_limit=tpm,
        rpm_headroom=1 - peak_rpm / rpm if rpm else None,
        tpm_headroom=1 - peak_tpm / tpm if tpm else None,
        fits_at=fits,
    )
