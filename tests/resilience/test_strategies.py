"""Load-balancing strategies order deployments as specified (seeded randomness)."""

from __future__ import annotations

import random
from collections import Counter

from interlock.routing import strategies
from interlock.routing.strategies import Candidate, rank


def names(cands: list[Candidate]) -> list[str]:
    return [c.name for c in cands]


def test_priority_keeps_config_order() -> None:
    cands = [Candidate("a"), Candidate("b"), Candidate("c")]
    assert names(rank("priority", cands, random.Random(0))) == ["a", "b", "c"]


def test_weighted_follows_weights() -> None:
    cands = [Candidate("a", weight=3), Candidate("b", weight=1), Candidate("z", weight=0)]
    rng = random.Random(42)
    firsts = Counter(rank("weighted", cands, rng)[0].name for _ in range(4000))
    assert firsts["z"] == 0
    assert 0.70 < firsts["a"] / 4000 < 0.80  # 3 / (3 + 1)


def test_least_latency_prefers_fast_and_explores_unknown() -> None:
    cands = [Candidate("slow", latency_s=0.9), Candidate("fast", latency_s=0.1), Candidate("new")]
    rng = random.Random(1)
    orders = [names(rank("least_latency", cands, rng)) for _ in range(2000)]
    first = Counter(o[0] for o in orders)
    assert first["new"] > 1800  # no recent sample: tried first, so it gets measured
    known = [Candidate("slow", latency_s=0.9), Candidate("fast", latency_s=0.1)]
    first = Counter(rank("least_latency", known, rng)[0].name for _ in range(2000))
    assert first["fast"] > 1850 and first["slow"] > 20  # exploration keeps probing


def test_least_busy_uses_relative_load() -> None:
    cands = [Candidate("a", in_flight=8, max_concurrency=10), Candidate("b", in_flight=3, max_concurrency=4),
             Candidate("c", in_flight=5, max_concurrency=20)]  # fmt: skip
    assert names(rank("least_busy", cands, random.Random(0))) == ["c", "b", "a"]


def test_lowest_cost_puts_unknown_prices_last() -> None:
    cands = [Candidate("pricey", cost=0.02), Candidate("unknown"), Candidate("cheap", cost=0.001)]
    assert names(rank("lowest_cost", cands, random.Random(0))) == ["cheap", "pricey", "unknown"]


def test_every_configurable_strategy_exists() -> None:
    from typing import get_args

    from interlock.settings import Strategy

    assert set(get_args(Strategy)) == set(strategies.STRATEGIES)
