"""How long a deployment takes: ``base + per_token × completion tokens + noise``, fitted
from the ledger.

A provider's latency is roughly time to first token plus output tokens over decode
speed, so a least-squares line of latency on completion tokens recovers both (the
intercept is the fixed part, the slope 1 / tokens per second) and lets a rerouted or
longer request be predicted, not just replayed. The residuals are kept and sampled
(seeded) so the simulated distribution keeps the recorded tail, which a mean would hide:
the p95 is what the validation compares.

The recorded latency is the gateway's (upstream plus the gateway's own time), so the
model predicts what clients see, not the provider alone.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from interlock.capacity.traffic import Call

__all__ = ["DEFAULT_CACHE_HIT_MS", "LatencyModel", "fit_latency_models", "parse_latency"]

DEFAULT_CACHE_HIT_MS = 2.0
_MIN_POINTS = 3


@dataclass(frozen=True, slots=True)
class LatencyModel:
    base_ms: float
    per_token_ms: float = 0.0
    residuals_ms: tuple[float, ...] = ()  # observed minus fitted, sampled as noise
    samples: int = 0
    ttft_ms: float | None = None  # median of recorded streams' time to first token
    source: str = "ledger"

    def sample(self, completion_tokens: int, rng: random.Random) -> float:
        """One service time in milliseconds (never negative)."""
        ms = self.base_ms + self.per_token_ms * completion_tokens
        if self.residuals_ms:
            ms += self.residuals_ms[rng.randrange(len(self.residuals_ms))]
        return max(0.0, ms)

    @property
    def tokens_per_s(self) -> float | None:
        return 1000.0 / self.per_token_ms if self.per_token_ms > 0 else None

    def to_json(self) -> dict[str, object]:
        return {
            "base_ms": round(self.base_ms, 3),
            "per_token_ms": round(self.per_token_ms, 4),
            "tokens_per_s": None if self.tokens_per_s is None else round(self.tokens_per_s, 1),
            "ttft_ms": self.ttft_ms,
            "samples": self.samples,
            "source": self.source,
        }


@dataclass(slots=True)
class _Points:
    tokens: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)


def _fit(points: _Points) -> LatencyModel:
    xs, ys = points.tokens, points.latency
    ttft = statistics.median(points.ttft) if points.ttft else None
    if len(xs) < _MIN_POINTS or max(xs) == min(xs):
        base = statistics.median(ys)
        return LatencyModel(base, 0.0, tuple(y - base for y in ys), len(ys), ttft)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = max(0.0, sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx)
    base = max(0.0, my - slope * mx)
    residuals = tuple(y - (base + slope * x) for x, y in zip(xs, ys, strict=True))
    return LatencyModel(base, slope, residuals, len(ys), ttft)


def fit_latency_models(calls: Iterable[Call]) -> tuple[dict[str, LatencyModel], LatencyModel]:
    """Per deployment, from its successful upstream calls; and the cache-hit model (from
    recorded hits, else a flat :data:`DEFAULT_CACHE_HIT_MS`)."""
    points: dict[str, _Points] = defaultdict(_Points)
    hits: list[float] = []
    for c in calls:
        if c.outcome != "ok":
            continue
        if c.cache_hit:
            hits.append(c.latency_ms)
        elif c.deployment:
            p = points[c.deployment]
            p.tokens.append(float(c.completion_tokens))
            p.latency.append(c.latency_ms)
            if c.stream and c.ttft_ms is not None:
                p.ttft.append(c.ttft_ms)
    models = {name: _fit(p) for name, p in points.items()}
    if hits:
        base = statistics.median(hits)
        hit_model = LatencyModel(base, 0.0, tuple(h - base for h in hits), len(hits))
    else:
        hit_model = LatencyModel(DEFAULT_CACHE_HIT_MS, source="default")
    return models, hit_model


def parse_latency(spec: str) -> tuple[str, LatencyModel]:
    """``DEPLOYMENT=TTFT_MS:TOKENS_PER_S`` -> a noise-free model (for a deployment the
    ledger has never seen, or to ask "what if it were this fast")."""
    name, sep, rest = spec.partition("=")
    ttft, sep2, tps = rest.partition(":")
    try:
        base = float(ttft)
        rate = float(tps) if sep2 else 0.0
    except ValueError:
        raise ValueError(f"{spec!r}: expected DEPLOYMENT=TTFT_MS:TOKENS_PER_S") from None
    if not (sep and name) or base < 0 or rate < 0:
        raise ValueError(f"{spec!r}: expected DEPLOYMENT=TTFT_MS:TOKENS_PER_S")
    return name, LatencyModel(base, 1000.0 / rate if rate else 0.0, source="given")


def default_model(models: Mapping[str, LatencyModel]) -> LatencyModel:
    """For a deployment without a model: the pooled average of the known ones."""
    known = [m for m in models.values() if m.samples]
    if not known:
        return LatencyModel(500.0, 20.0, source="default")
    n = sum(m.samples for m in known)
    base = sum(m.base_ms * m.samples for m in known) / n
    slope = sum(m.per_token_ms * m.samples for m in known) / n
    return LatencyModel(base, slope, source="pooled")
