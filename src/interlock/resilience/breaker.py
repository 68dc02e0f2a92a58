"""Circuit breaker per deployment: closed → open → half-open, as pure functions.

``allow`` and ``record`` take the current :class:`BreakerState` and the time and return
the next state; nothing here reads a clock or shares memory, so the state can live in
this process or in Redis, and tests drive it with exact call sequences and a fake clock.

Trips on either condition, in the closed state:
* ``consecutive_failures`` failures in a row, or
* at least ``min_calls`` calls in the sliding ``window_s`` with a failure rate or a
  slow-call rate at or above its threshold.
Open waits ``open_s``, doubling (``backoff``) on each trip that follows a failed probe,
up to ``open_max_s``. Half-open admits at most ``half_open_probes`` probes; all must
succeed to close. A probe that has not reported within ``probe_timeout_s`` counts as a
failure, so a hung probe cannot pin the breaker half-open.

A call is judged by when it *started* (``now - duration_s``), not by when its result
arrives: a hung call times out long after it was sent, and by then the deployment may
have recovered. So:

* results land in the window bucket of their start (a result that started before the
  window is dropped);
* a failure that started before the start of a success already recorded is *stale* —
  a later call got through, so the failure says nothing about the deployment now — and
  changes nothing; likewise a success that started before a counted failure does not
  reset the consecutive count (a long stream finishing must not hide fresh failures);
* half-open judges only its probes: a result of a call that started before the breaker
  went half-open (e.g. a hung call from before the trip) is ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum

_BUCKETS = 10


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    window_s: float = 30.0
    min_calls: int = 10
    failure_rate: float = 0.5
    consecutive_failures: int = 5
    slow_call_s: float = 30.0
    slow_rate: float = 1.01  # above 1: slow calls alone never trip
    open_s: float = 5.0
    open_max_s: float = 120.0
    backoff: float = 2.0
    half_open_probes: int = 1
    probe_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class Bucket:
    start: float
    calls: int = 0
    failures: int = 0
    slow: int = 0


@dataclass(frozen=True, slots=True)
class BreakerState:
    state: CircuitState = CircuitState.CLOSED
    open_until: float = 0.0
    trips: int = 0  # consecutive trips since the breaker last closed
    consecutive: int = 0
    buckets: tuple[Bucket, ...] = ()
    probes: tuple[float, ...] = field(default=())  # start times of probes in flight
    probe_successes: int = 0
    half_open_at: float = 0.0  # when the breaker last went half-open
    # Start times of the latest-starting success and counted failure (see the docstring).
    last_ok_started: float = float("-inf")
    last_fail_started: float = float("-inf")


def _open(cfg: BreakerConfig, st: BreakerState, now: float) -> BreakerState:
    wait = min(cfg.open_max_s, cfg.open_s * cfg.backoff**st.trips)
    return BreakerState(
        CircuitState.OPEN,
        now + wait,
        st.trips + 1,
        last_ok_started=st.last_ok_started,
        last_fail_started=st.last_fail_started,
    )


def allow(cfg: BreakerConfig, st: BreakerState, now: float) -> tuple[bool, BreakerState]:
    """May a call go to this deployment now? Returns the decision and the new state."""
    if st.state is CircuitState.CLOSED:
        return True, st
    if st.state is CircuitState.OPEN:
        if now < st.open_until:
            return False, st
        st = replace(
            st,
            state=CircuitState.HALF_OPEN,
            open_until=0.0,
            consecutive=0,
            buckets=(),
            probes=(),
            probe_successes=0,
            half_open_at=now,
        )
    # Half-open: expire hung probes first.
    if any(now - t >= cfg.probe_timeout_s for t in st.probes):
        return False, _open(cfg, st, now)
    if len(st.probes) + st.probe_successes >= cfg.half_open_probes:
        return False, st
    return True, replace(st, probes=(*st.probes, now))


def is_available(cfg: BreakerConfig, st: BreakerState, now: float) -> bool:
    """Like :func:`allow` without taking a probe slot (for planning)."""
    if st.state is CircuitState.CLOSED:
        return True
    if st.state is CircuitState.OPEN:
        return now >= st.open_until
    return len(st.probes) + st.probe_successes < cfg.half_open_probes


def _window(
    cfg: BreakerConfig,
    buckets: tuple[Bucket, ...],
    now: float,
    at: float,
    *,
    failed: bool,
    slow: bool,
) -> tuple[Bucket, ...] | None:
    """The live buckets with one result counted in the bucket of ``at`` (its start);
    None when ``at`` is already outside the window."""
    horizon = now - cfg.window_s
    if at <= horizon:
        return None
    width = cfg.window_s / _BUCKETS
    slot = at - at % width
    live = [b for b in buckets if b.start > horizon]
    for i, b in enumerate(live):
        if b.start == slot:
            live[i] = Bucket(slot, b.calls + 1, b.failures + failed, b.slow + slow)
            break
    else:
        live.append(Bucket(slot, 1, int(failed), int(slow)))
        live.sort(key=lambda b: b.start)
    return tuple(live[-_BUCKETS:])


# A result may start this much before a probe was admitted (the two clocks round).
_CLOCK_SLACK_S = 0.005


def record(
    cfg: BreakerConfig, st: BreakerState, now: float, *, ok: bool, duration_s: float = 0.0
) -> BreakerState:
    """The outcome of one call that :func:`allow` admitted, ``duration_s`` after it started."""
    started = now - max(0.0, duration_s)
    if st.state is CircuitState.OPEN:
        return st  # a late answer from before the trip changes nothing
    if st.state is CircuitState.HALF_OPEN:
        if started + _CLOCK_SLACK_S < st.half_open_at:
            return st  # not a probe: sent before the breaker went half-open
        probes = st.probes[1:] if st.probes else ()
        if not ok:
            return _open(cfg, st, now)
        successes = st.probe_successes + 1
        if successes >= cfg.half_open_probes:
            return BreakerState(
                last_ok_started=max(st.last_ok_started, started),
                last_fail_started=st.last_fail_started,
            )
        return replace(
            st,
            probes=probes,
            probe_successes=successes,
            last_ok_started=max(st.last_ok_started, started),
        )
    if not ok and started < st.last_ok_started:
        return st  # stale: a call that started later has succeeded since
    slow = duration_s >= cfg.slow_call_s
    buckets = _window(cfg, st.buckets, now, started, failed=not ok, slow=slow)
    if ok:
        fresh = started >= st.last_fail_started
        st = replace(
            st,
            consecutive=0 if fresh else st.consecutive,
            last_ok_started=max(st.last_ok_started, started),
        )
    else:
        st = replace(
            st,
            consecutive=st.consecutive + 1,
            last_fail_started=max(st.last_fail_started, started),
        )
    if st.consecutive >= cfg.consecutive_failures:
        return _open(cfg, replace(st, buckets=buckets or st.buckets), now)
    if buckets is None:
        return st  # started before the window: the rate does not change
    st = replace(st, buckets=buckets)
    calls = sum(b.calls for b in buckets)
    if calls >= cfg.min_calls:
        failures = sum(b.failures for b in buckets)
        slows = sum(b.slow for b in buckets)
        if failures / calls >= cfg.failure_rate or slows / calls >= cfg.slow_rate:
            return _open(cfg, st, now)
    return st
