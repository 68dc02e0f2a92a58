"""Backoff with jitter, the retry budget, and the degradation ladder's hysteresis."""

from __future__ import annotations

import itertools
import random

import pytest

from interlock.resilience.degradation import (
    LadderConfig,
    LadderState,
    Level,
    Thresholds,
    evaluate,
    force,
)
from interlock.resilience.retry import BudgetConfig, RetryBudget, RetryConfig, backoff_s


def test_full_jitter_bounds() -> None:
    cfg = RetryConfig(base_delay_s=0.1, max_delay_s=1.0)
    rng = random.Random(1)
    for retry, cap in ((0, 0.1), (1, 0.2), (2, 0.4), (5, 1.0)):
        delays = [backoff_s(cfg, retry, rng) for _ in range(200)]
        assert min(delays) >= 0 and max(delays) <= cap
        assert max(delays) > cap * 0.8  # spread over the whole range


def test_retry_budget_is_a_share_of_traffic() -> None:
    now = [0.0]
    budget = RetryBudget(
        BudgetConfig(ratio=0.1, min_per_s=0.0, max_tokens=10), clock=lambda: now[0]
    )
    while budget.try_spend():
        pass
    assert not budget.try_spend()
    for _ in range(30):
        budget.on_request()
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


def test_retry_budget_floor_refills_over_time() -> None:
    now = [0.0]
    budget = RetryBudget(BudgetConfig(ratio=0.0, min_per_s=2.0, max_tokens=2), clock=lambda: now[0])
    assert budget.try_spend() and budget.try_spend() and not budget.try_spend()
    now[0] = 0.5
    assert budget.try_spend() and not budget.try_spend()


CFG = LadderConfig(signals={"error_rate": Thresholds(limited=0.1, cached=0.3, minimal=0.6),
                            "queue_depth": Thresholds(limited=100, cached=1000)},
                   down_after_s=2, up_after_s=10, recover_ratio=0.5)  # fmt: skip


def run(st: LadderState, t0: float, t1: float, **signals: float) -> LadderState:
    t = t0
    while t <= t1:
        st = evaluate(CFG, st, signals, t)
        t += 1
    return st


def test_steps_down_after_sustained_signal_only() -> None:
    st = run(LadderState(), 0, 1, error_rate=0.5)
    assert st.level is Level.FULL  # a blip shorter than down_after_s changes nothing
    st = run(st, 2, 2, error_rate=0.5)
    assert st.level is Level.CACHED
    st = run(st, 3, 5, error_rate=0.0, queue_depth=5000)
    assert st.level is Level.CACHED  # queue 5000 also asks for cached; no deeper


def test_recovers_one_level_at_a_time_with_hysteresis() -> None:
    st = run(LadderState(), 0, 3, error_rate=0.7)
    assert st.level is Level.MINIMAL
    # 0.2 is below cached's threshold but not under half of limited's: not calm.
    st = run(st, 4, 60, error_rate=0.2)
    assert st.level is Level.MINIMAL
    changes: list[tuple[float, Level]] = []
    for t in range(61, 120):
        before = st.level
        st = evaluate(CFG, st, {"error_rate": 0.01}, t)
        if st.level is not before:
            changes.append((t, st.level))
    assert [lvl for _, lvl in changes] == [Level.CACHED, Level.LIMITED, Level.FULL]
    times = [t for t, _ in changes]
    assert times[0] - 61 >= CFG.up_after_s
    assert all(b - a >= CFG.up_after_s for a, b in itertools.pairwise(times))


def test_no_flapping_around_a_threshold() -> None:
    st = run(LadderState(), 0, 3, error_rate=0.15)
    assert st.level is Level.LIMITED
    for t in range(4, 100):
        st = evaluate(CFG, st, {"error_rate": 0.09 if t % 2 else 0.11}, t)
        assert st.level is Level.LIMITED  # hovering near 10% never recovers, never flaps


def test_forced_level_wins_until_auto() -> None:
    st = force(LadderState(), Level.CACHED, 0)
    st = run(st, 0, 5, error_rate=0.0)
    assert st.effective is Level.CACHED
    assert force(st, None, 6).effective is Level.FULL


@pytest.mark.parametrize("name", ["full", "LIMITED", "cached", "minimal"])
def test_level_parse(name: str) -> None:
    assert Level.parse(name).label == name.lower()
