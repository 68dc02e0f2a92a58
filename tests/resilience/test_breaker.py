"""Circuit breaker state machine, driven with a fake clock and exact call sequences."""

from __future__ import annotations

from interlock.resilience.breaker import (
    BreakerConfig,
    BreakerState,
    CircuitState,
    allow,
    is_available,
    record,
)

CFG = BreakerConfig(window_s=10, min_calls=4, failure_rate=0.5, consecutive_failures=3,
                    open_s=5, open_max_s=40, backoff=2, half_open_probes=2, probe_timeout_s=3)  # fmt: skip


def call(st: BreakerState, now: float, ok: bool, duration: float = 0.01) -> BreakerState:
    admitted, st = allow(CFG, st, now)
    assert admitted
    return record(CFG, st, now, ok=ok, duration_s=duration)


def test_consecutive_failures_trip() -> None:
    st = BreakerState()
    st = call(st, 0.0, False)
    st = call(st, 0.1, False)
    assert st.state is CircuitState.CLOSED
    st = call(st, 0.2, False)
    assert st.state is CircuitState.OPEN and st.open_until == 5.2


def test_failure_rate_needs_min_calls() -> None:
    st = BreakerState()
    for t, ok in ((0, True), (1, False), (2, True)):
        st = call(st, t, ok)
    assert st.state is CircuitState.CLOSED  # 1/3 and below min_calls
    st = call(st, 3, False)  # 2/4 = 50%
    assert st.state is CircuitState.OPEN


def test_old_calls_leave_the_window() -> None:
    st = BreakerState()
    st = call(st, 0, False)
    st = call(st, 0.5, False)
    for t in (11, 12, 13):  # the two failures are now older than window_s
        st = call(st, t, True)
    st = call(st, 14, False)
    assert st.state is CircuitState.CLOSED  # 1/4 < 50% within the window


def test_open_rejects_until_wait_elapsed_then_half_opens() -> None:
    st = BreakerState()
    for t in (0, 0, 0):
        st = call(st, t, False)
    assert allow(CFG, st, 4.99)[0] is False
    assert not is_available(CFG, st, 4.99) and is_available(CFG, st, 5.0)
    ok, st = allow(CFG, st, 5.0)
    assert ok and st.state is CircuitState.HALF_OPEN


def test_half_open_bounds_probes_and_closes_after_successes() -> None:
    st = BreakerState(CircuitState.OPEN, open_until=5, trips=1)
    ok1, st = allow(CFG, st, 5)
    ok2, st = allow(CFG, st, 5.1)
    ok3, st = allow(CFG, st, 5.2)
    assert (ok1, ok2, ok3) == (True, True, False)  # two probes at most
    st = record(CFG, st, 5.3, ok=True)
    assert st.state is CircuitState.HALF_OPEN
    st = record(CFG, st, 5.4, ok=True)
    assert st.state is CircuitState.CLOSED and st.trips == 0


def test_failed_probe_reopens_with_backoff() -> None:
    st = BreakerState()
    for _ in range(3):
        st = call(st, 0, False)
    waits = []
    now = 0.0
    for _ in range(5):
        waits.append(st.open_until - now)
        now = st.open_until
        ok, st = allow(CFG, st, now)
        assert ok
        st = record(CFG, st, now, ok=False)
    assert waits == [5, 10, 20, 40, 40]  # doubling, capped at open_max_s


def test_hung_probe_does_not_pin_half_open() -> None:
    st = BreakerState(CircuitState.OPEN, open_until=5, trips=0)
    ok, st = allow(CFG, st, 5)
    ok, st = allow(CFG, st, 5)
    assert allow(CFG, st, 7.9)[0] is False  # both probe slots taken, none reported
    ok, st = allow(CFG, st, 8.0)  # probe_timeout_s = 3 elapsed: counts as a failure
    assert not ok and st.state is CircuitState.OPEN and st.open_until == 8 + 5


def test_slow_calls_trip_when_configured() -> None:
    cfg = BreakerConfig(min_calls=2, slow_call_s=1.0, slow_rate=0.5, consecutive_failures=99)
    st = BreakerState()
    for t in (0, 1):
        _, st = allow(cfg, st, t)
        st = record(cfg, st, t, ok=True, duration_s=2.0)
    assert st.state is CircuitState.OPEN


def test_late_result_while_open_is_ignored() -> None:
    st = BreakerState(CircuitState.OPEN, open_until=5, trips=1)
    assert record(CFG, st, 1, ok=True) == st
