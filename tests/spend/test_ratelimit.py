"""The pure GCRA core and the HTTP header helpers, on a fake clock."""

from __future__ import annotations

import math

import pytest

from interlock.spend.ratelimit import (
    Decision,
    Limit,
    adjust,
    admitted,
    effective_burst,
    format_reset,
    gcra,
    ratelimit_headers,
    retry_after,
    retry_after_headers,
)
from interlock.state.ratelimit_local import batch

T0 = 1_800_000_000.0  # a realistic epoch value, where float rounding is coarsest


def run(
    limit: Limit, times_costs: list[tuple[float, int]], tat: float | None = None
) -> list[Decision]:
    out = []
    for now, cost in times_costs:
        d, tat = gcra(tat, now, limit, cost)
        out.append(d)
    return out


def test_burst_then_steady_rate() -> None:
    lim = Limit("k", rate=3, period_s=3.0)  # one unit per second, burst 3
    got = run(lim, [(T0, 1), (T0, 1), (T0, 1), (T0, 1), (T0 + 1, 1), (T0 + 1, 1), (T0 + 2, 1)])
    assert [d.allowed for d in got] == [True, True, True, False, True, False, True]
    assert [d.remaining for d in got[:4]] == [2, 1, 0, 0]
    assert got[2].reset_s == pytest.approx(3.0)
    assert got[3].retry_after_s == pytest.approx(1.0)
    assert all(d.retry_after_s == 0.0 for d in got if d.allowed)
    assert all(d.limit == 3 and d.key == "k" for d in got)


def test_explicit_burst_smaller_than_rate() -> None:
    lim = Limit("k", rate=60, period_s=60.0, burst=5)
    got = run(lim, [(T0, 1)] * 6)
    assert [d.allowed for d in got] == [True] * 5 + [False]
    assert got[5].retry_after_s == pytest.approx(1.0)
    assert got[4].reset_s == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("rate", "period", "burst", "cost"),
    [(50, 60.0, 50, 1), (7, 1.0, 3, 2), (1000, 60.0, 1000, 333)],
)
def test_admitted_exactly_when_retry_after_has_elapsed(
    rate: int, period: float, burst: int, cost: int
) -> None:
    lim = Limit("k", rate=rate, period_s=period, burst=burst)
    tat: float | None = None
    now = T0
    while True:  # drain the bucket
        d, tat = gcra(tat, now, lim, cost)
        if not d.allowed:
            break
    for _ in range(5):  # several steps of the steady state, each exactly on time
        wait = d.retry_after_s
        assert wait > 0
        early, _ = gcra(tat, now + wait - 1e-3, lim, cost)
        assert not early.allowed
        assert early.retry_after_s == pytest.approx(1e-3, abs=1e-5)
        now += wait
        d, tat = gcra(tat, now, lim, cost)
        assert d.allowed
        d, _ = gcra(tat, now, lim, cost)
        assert not d.allowed


def test_tokens_per_minute_with_costs() -> None:
    lim = Limit("tpm", rate=1000, period_s=60.0)  # 60 ms per token
    d1, tat = gcra(None, T0, lim, 600)
    assert (d1.allowed, d1.remaining) == (True, 400)
    d2, tat2 = gcra(tat, T0, lim, 500)
    assert not d2.allowed and tat2 == tat
    assert d2.remaining == 400
    assert d2.retry_after_s == pytest.approx(100 * 0.06)
    d3, tat = gcra(tat, T0, lim, 400)
    assert (d3.allowed, d3.remaining) == (True, 0)
    assert d3.reset_s == pytest.approx(60.0)


def test_a_cost_above_the_burst_is_too_large_not_retryable() -> None:
    lim = Limit("tpm", rate=1000, period_s=60.0)
    d, tat = gcra(None, T0, lim, 1001)
    assert not d.allowed and d.too_large and math.isinf(d.retry_after_s)
    assert tat == T0 and d.remaining == 1000
    assert not gcra(None, T0, lim, 1000)[0].too_large


def test_peek_consumes_nothing() -> None:
    lim = Limit("k", rate=10, period_s=10.0)
    _, tat = gcra(None, T0, lim, 4)
    p, tat2 = gcra(tat, T0 + 1, lim, 0)
    assert p.allowed and tat2 == tat and p.remaining == 7 and p.reset_s == pytest.approx(3.0)
    p, _ = gcra(None, T0, lim, 0)
    assert p.allowed and p.remaining == 10 and p.reset_s == 0.0


def test_negative_cost_is_an_error() -> None:
    with pytest.raises(ValueError):
        gcra(None, T0, Limit("k", 1), -1)


@pytest.mark.parametrize(
    "kwargs", [{"rate": 0}, {"rate": 1, "period_s": 0}, {"rate": 1, "burst": 0}]
)
def test_limit_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Limit("k", **kwargs)  # type: ignore[arg-type]


def test_adjust_debits_without_a_check_and_credits_down_to_full() -> None:
    lim = Limit("tpm", rate=1000, period_s=60.0)
    _, tat = gcra(None, T0, lim, 500)  # estimate 500
    tat = adjust(tat, T0, lim, +200)  # really 700
    assert gcra(tat, T0, lim, 0)[0].remaining == 300
    debt = adjust(tat, T0, lim, +900)  # far more than the bucket: in debt
    peek = gcra(debt, T0, lim, 0)[0]
    assert peek.remaining == 0 and not peek.allowed
    assert peek.retry_after_s == pytest.approx(600 * 0.06)
    tat = adjust(tat, T0, lim, -400)  # really 300
    assert gcra(tat, T0, lim, 0)[0].remaining == 700
    assert adjust(tat, T0, lim, -10_000) == T0  # never beyond a full bucket
    assert adjust(None, T0, lim, -5) == T0
    assert adjust(None, T0, lim, 5) == pytest.approx(T0 + 0.3)


def test_effective_burst_is_linear_in_priority() -> None:
    lim = Limit("k", rate=100)
    assert effective_burst(lim, 9) == 100
    assert effective_burst(lim, 0) == 80
    assert effective_burst(lim, 4) == 88  # 100 * (1 - 0.2 * 5/9) = 88.9
    assert effective_burst(lim, 99) == 100 and effective_burst(lim, -3) == 80
    assert effective_burst(lim, 0, reserve=0.5) == 50
    assert effective_burst(Limit("one", rate=1), 0) == 1


def test_low_priority_denied_while_high_priority_still_admitted() -> None:
    lim = Limit("team", rate=10, period_s=60.0)
    low, high = effective_burst(lim, 0), effective_burst(lim, 9)
    tat: float | None = None
    admitted_low = 0
    while True:
        d, tat = gcra(tat, T0, lim, 1, capacity=low)
        if not d.allowed:
            break
        admitted_low += 1
    assert admitted_low == 8
    assert d.remaining == 2  # remaining describes the whole bucket
    assert d.retry_after_s == pytest.approx(6.0)  # one unit refilled at 6 s per unit
    for _ in range(2):
        h, tat = gcra(tat, T0, lim, 1, capacity=high)
        assert h.allowed
    assert not gcra(tat, T0, lim, 1, capacity=high)[0].allowed
    # A cost above a priority's share is never admitted at that priority.
    assert gcra(None, T0, lim, 9, capacity=low)[0].too_large


def test_batch_is_all_or_nothing() -> None:
    rpm, tpm = Limit("rpm", rate=2), Limit("tpm", rate=100)
    checks = [(rpm, 1), (tpm, 80)]
    decisions, new = batch([None, None], T0, checks, 9)
    assert admitted(decisions) and new is not None
    decisions, none = batch(new, T0, checks, 9)
    assert none is None and not admitted(decisions)
    assert decisions[0].allowed and decisions[0].remaining == 1  # untouched, shown as is
    assert not decisions[1].allowed
    assert retry_after(decisions) == pytest.approx(60 * 0.6)
    assert retry_after([]) == 0.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (-1, "0s"), (0.12, "120ms"), (0.0001, "1ms"), (0.9999, "1s"), (1, "1s"),
     (2.5, "2.5s"), (8.64, "8.64s"), (59.9991, "1m0s"), (360, "6m0s"), (90.5, "1m30.5s"),
     (3600, "1h0m0s"), (3725.25, "1h2m5.25s")],
)  # fmt: skip
def test_format_reset_like_openai(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_ratelimit_headers() -> None:
    req = Decision(True, limit=60, remaining=59, reset_s=1.0, retry_after_s=0.0)
    tok = Decision(True, limit=150_000, remaining=149_000, reset_s=0.4, retry_after_s=0.0)
    assert ratelimit_headers(req, tok) == [
        (b"x-ratelimit-limit-requests", b"60"),
        (b"x-ratelimit-remaining-requests", b"59"),
        (b"x-ratelimit-reset-requests", b"1s"),
        (b"x-ratelimit-limit-tokens", b"150000"),
        (b"x-ratelimit-remaining-tokens", b"149000"),
        (b"x-ratelimit-reset-tokens", b"400ms"),
    ]
    assert [k for k, _ in ratelimit_headers(None, tok)] == [
        b"x-ratelimit-limit-tokens", b"x-ratelimit-remaining-tokens", b"x-ratelimit-reset-tokens"
    ]  # fmt: skip
    assert ratelimit_headers(None, None) == []


def test_retry_after_headers() -> None:
    assert retry_after_headers(1.2) == [(b"retry-after", b"2"), (b"retry-after-ms", b"1200")]
    assert retry_after_headers(0.0004) == [(b"retry-after", b"1"), (b"retry-after-ms", b"1")]
    assert retry_after_headers(6.0) == [(b"retry-after", b"6"), (b"retry-after-ms", b"6000")]
    assert retry_after_headers(math.inf) == []
