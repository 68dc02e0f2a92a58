"""Load-balancing strategies: the order in which an alias's deployments are tried.

Pure functions over a snapshot of per-deployment facts; randomness comes from the
``rng`` passed in, so tests are exact.
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


STRATEGIES = {
    "priority": priority,
    "weighted": weighted,
    "least_latency": least_latency,
    "least_busy": least_busy,
    "lowest_cost": lowest_cost,
}


def rank(strategy: str, cands: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    return STRATEGIES[strategy](cands, rng)
