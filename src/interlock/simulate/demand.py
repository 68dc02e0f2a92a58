"""What arrives: recorded calls or a synthetic profile, and the same traffic at N×.

**Scaling.** N× is ``ceil(N)`` superimposed copies of the traffic; copy ``j`` keeps each
arrival with probability ``min(1, N - j)`` (so 2.5× is two full copies and half of a
third) and is shifted by a seeded offset of up to a minute, wrapped inside the recorded
span. Compressing time instead would also compress the service times' effect and move
the daily peak; superimposing keeps the shape of the day and multiplies each minute's
rate by N, which is what "10× our traffic" means to a capacity review.

**Imputed tokens.** A call refused before it reached a provider (a 429 from a rate limit,
a budget refusal) recorded no usage, yet under another configuration it might be served:
it is given its model's mean token counts from the calls that were served.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from interlock.capacity.traffic import Call

__all__ = ["Demand", "ProfileError", "demands_from_calls", "scaled", "synthetic"]

_MAX_SHIFT_S = 60.0


class ProfileError(ValueError):
    """A synthetic profile the simulator cannot use."""


@dataclass(frozen=True, slots=True)
class Demand:
    at: float  # seconds since the start of the replay
    model: str
    deployment: str | None  # where it was served when recorded
    endpoint: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_hit: bool
    key_id: str | None = None
    team_id: str | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def demands_from_calls(calls: list[Call]) -> tuple[list[Demand], float]:
    """Calls (sorted by arrival) as demands from t=0, and the recorded span in seconds."""
    if not calls:
        return [], 0.0
    t0 = calls[0].at
    span = max(max(c.at + c.latency_ms / 1000 for c in calls) - t0, 1e-3)
    served: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for c in calls:
        if c.prompt_tokens or c.completion_tokens:
            served[c.model].append((c.prompt_tokens, c.completion_tokens))
    means = {
        m: (round(sum(p for p, _ in v) / len(v)), round(sum(o for _, o in v) / len(v)))
        for m, v in served.items()
    }
    out = []
    for c in calls:
        prompt, completion = c.prompt_tokens, c.completion_tokens
        if not (prompt or completion):
            prompt, completion = means.get(c.model, (0, 0))
        out.append(
            Demand(
                c.at - t0,
                c.model,
                c.deployment,
                c.endpoint,
                c.stream,
                prompt,
                completion,
                c.cached_tokens,
                c.cache_hit,
                c.key_id,
                c.team_id,
            )
        )
    return out, span


def scaled(demands: list[Demand], n: float, span: float, seed: int = 0) -> list[Demand]:
    """The traffic at ``n``× (see the module docstring), sorted by arrival."""
    if n <= 0:
        raise ValueError("the scale must be > 0")
    rng = random.Random(seed)
    out: list[Demand] = []
    for j in range(math.ceil(n)):
        keep = min(1.0, n - j)
        shift = 0.0 if j == 0 else rng.uniform(0.0, min(_MAX_SHIFT_S, span))
        for d in demands:
            if keep < 1.0 and rng.random() >= keep:
                continue
            at = d.at + shift
            out.append(d if not shift else replace(d, at=at - span if at >= span else at))
    out.sort(key=lambda d: d.at)
    return out


def _tokens(value: Any, rng: random.Random, where: str) -> int:
    """``N`` or ``[MIN, MAX]`` (uniform)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return rng.randint(min(value), max(value))
    raise ProfileError(f"{where}: expected a token count or [min, max]")


def synthetic(profile: Mapping[str, Any]) -> tuple[list[Demand], float]:
    """Poisson arrivals from a profile::

    duration_s: 3600
    rps: 12               # mean arrival rate
    seed: 1
    mix:
      - {model: chat, weight: 3, prompt_tokens: [200, 800], completion_tokens: 150,
         stream: false, cache_hit_rate: 0.2}
      - {model: embed, weight: 1, endpoint: embeddings, prompt_tokens: 300}
    """
    try:
        duration = float(profile["duration_s"])
        rps = float(profile["rps"])
        mix = list(profile["mix"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProfileError(f"a profile needs duration_s, rps and mix ({exc})") from None
    if duration <= 0 or rps <= 0 or not mix:
        raise ProfileError("duration_s and rps must be > 0 and mix non-empty")
    rng = random.Random(int(profile.get("seed", 0)))
    weights = [float(m.get("weight", 1.0)) for m in mix]
    out: list[Demand] = []
    t = rng.expovariate(rps)
    while t < duration:
        m = rng.choices(mix, weights)[0]
        where = f"mix entry {m.get('model')!r}"
        out.append(
            Demand(
                at=t,
                model=str(m["model"]),
                deployment=None,
                endpoint=str(m.get("endpoint", "chat")),
                stream=bool(m.get("stream", False)),
                prompt_tokens=_tokens(m.get("prompt_tokens", 500), rng, where),
                completion_tokens=_tokens(m.get("completion_tokens", 200), rng, where),
                cached_tokens=0,
                cache_hit=rng.random() < float(m.get("cache_hit_rate", 0.0)),
                key_id=m.get("key"),
                team_id=m.get("team"),
            )
        )
        t += rng.expovariate(rps)
    return out, duration
