"""Load-balancing strategies: the order in which an alias's deployments are tried.

Pure functions over a snapshot of per-deployment facts; randomness comes from the
``rng`` passed in, so tests are exact. :func:`is_slow` is the latency judgement applied
after every strategy, ``priority`` included (routing/health.py ``route_around_slow``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

# Least-latency explores: with this probability a random deployment goes first, so a
# recovered or slower-looking deployment keeps getting measured.
EXPLORE = 0.05


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    weight: float = 1.0
    latency_s: float | None = None  # None: unknown or stale
    in_flight: int = 0
    max_concurrency: int | None = None
    cost: float | None = None  # expected USD for this request; None: unknown price


def priority(cands: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    return list(cands)


def weighted(cands: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    """Weighted random order without replacement (Efraimidis–Spirakis keys)."""

    def key(c: Candidate) -> float:
        if c.weight <= 0:
            return -math.inf
        return math.log(rng.random() or 1e-300) / c.weight

    return sorted(cands, key=key, reverse=True)


def least_latency(cands: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    # Unknown latency sorts first: a deployment with no recent sample is tried (explored).
    ordered = sorted(
        cands, key=lambda c: (c.latency_s is not None, c.latency_s or 0.0, rng.random())
    )
    if len(ordered) > 1 and rng.random() < EXPLORE:
        i = rng.randrange(1, len(ordered))
        ordered.insert(0, ordered.pop(i))
    return ordered


def least_busy(cands: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    def load(c: Candidate) -> float:
        return c.in_flight / c.max_concurrency if c.max_concurrency else float(c.in_flight)

    return sorted(cands, key=lambda c: (load(c), rng.random()))


def lowest_cost(cands: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    # An unknown price sorts last: never assume it is free.
    return sorted(cands, key=lambda c: (c.cost is None, c.cost or 0.0, rng.random()))


# A deployment is routed around when its latency is above both SLOW_RATIO x its
# fastest peer's and the peer's + SLOW_GAP_S; it is back once below both
# RECOVER_RATIO x and + RECOVER_GAP_S (hysteresis: no flapping at the threshold).
SLOW_RATIO = 3.0
SLOW_GAP_S = 1.0
RECOVER_RATIO = 2.0
RECOVER_GAP_S = 0.5
# With nothing to compare with (no peer measured, no history of its own), a deployment
# that has not answered for this long while calls wait on it counts as slow.
UNCOMPARED_SLOW_S = 2.0


def is_slow(latency_s: float | None, peer_s: float | None, was_slow: bool) -> bool:
    """Whether a deployment of ``latency_s`` should be tried after its peers, the
    fastest of which answers in ``peer_s`` (None: nothing to compare with). An unknown
    latency keeps the current judgement."""
    if latency_s is None:
        return was_slow
    if peer_s is None:
        return latency_s > UNCOMPARED_SLOW_S * (0.75 if was_slow else 1.0)
    if was_slow:
        return latency_s > max(RECOVER_RATIO * peer_s, peer_s + RECOVER_GAP_S)
    return latency_s > max(SLOW_RATIO * peer_s, peer_s + SLOW_GAP_S)


STRATEGIES = {
    "priority": priority,
    "weighted": weighted,
    "least_latency": least_latency,
    "least_busy": least_busy,
    "lowest_cost": lowest_cost,
}


def rank(strategy: str, cands: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    return STRATEGIES[strategy](cands, rng)
