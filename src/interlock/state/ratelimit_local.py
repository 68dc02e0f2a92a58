"""Rate limits: the GCRA core (pure, clock passed in) and the in-process limiter.

GCRA, the generic cell rate algorithm, is a token bucket kept as one number per limit:
the *theoretical arrival time* (TAT), the instant at which the bucket would be full
again if nothing else arrived. With the emission interval ``T = period_s / rate``, a
request of ``cost`` units is admitted when ``max(tat, now) + cost*T - capacity*T <= now``;
admitting it moves the TAT forward by ``cost*T``. One float per key, no background
refill, and the same arithmetic runs in :mod:`interlock.state.ratelimit_redis`'s Lua.

The pure part lives here rather than in ``interlock.spend`` because the state layer
sits below spend (see the import-linter layers contract): both backends need it, and
``interlock.spend.ratelimit`` re-exports it next to the HTTP header helpers.

Conventions shared by both backends:

* A call checks several limits (the key's RPM, its team's TPM, the deployment's RPM,
  ...) all-or-nothing: if any limit denies, none is consumed.
* The verdict is ``all(d.allowed for d in decisions)`` (:func:`admitted`). When the batch
  is denied, the limits that would have admitted report their untouched state.
* ``priority`` (0 lowest .. ``MAX_PRIORITY`` highest) shrinks the share of the burst a
  request may use (:func:`effective_burst`), so the last capacity of a shared limit
  goes to higher priorities.
* ``max_wait_s > 0`` makes the call wait, bounded, for capacity instead of returning a
  denial at once; it never waits when the denial's ``retry_after_s`` exceeds what is
  left of the budget.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

MAX_PRIORITY = 9
DEFAULT_RESERVE = 0.2
# Float slack for "admitted exactly when retry_after has elapsed": TATs near the Unix
# epoch's current value carry ~1e-7 s of rounding, far below anything observable.
EPSILON = 1e-6


class RateLimitBackendError(Exception):
    """The shared rate-limit store failed or timed out; the caller picks fail-open or
    fail-closed. Never raised by the in-process limiter."""


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` units per ``period_s`` for one ``key`` (e.g. ``"rpm:team:ml"``).

    ``burst`` is how many units may arrive at once from idle; it defaults to ``rate``:
    like OpenAI's limits, a full period's worth may be spent at once, then the bucket
    refills continuously at ``rate / period_s``. The key is the limit's identity in the
    store: two limits with different rates must have different keys.
    """

    key: str
    rate: int
    period_s: float = 60.0
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.rate < 1:
            raise ValueError(f"rate must be >= 1, got {self.rate}")
        if not self.period_s > 0:
            raise ValueError(f"period_s must be > 0, got {self.period_s}")
        if self.burst is not None and self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {self.burst}")

    @property
    def capacity(self) -> int:
        return self.rate if self.burst is None else self.burst

    @property
    def interval(self) -> float:
        """Seconds to refill one unit (the emission interval)."""
        return self.period_s / self.rate


@dataclass(frozen=True, slots=True)
class Decision:
    """One limit's answer.

    ``limit`` is the rate (what ``x-ratelimit-limit-*`` shows), ``remaining`` the units
    that could still be spent now, ``reset_s`` the time until the bucket is full again,
    ``retry_after_s`` 0 when allowed, else when this same cost would be admitted.
    ``too_large`` marks a cost no wait can admit (above the burst, or above the share
    of it this priority may use); then ``retry_after_s`` is ``inf`` and the caller
    should refuse without a Retry-After.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_s: float
    retry_after_s: float
    too_large: bool = False
    key: str = ""


def effective_burst(
    limit: Limit, priority: int, max_priority: int = MAX_PRIORITY, reserve: float = DEFAULT_RESERVE
) -> int:
    """The part of ``limit``'s burst a request of ``priority`` may use.

    ``max_priority`` may use all of it, priority 0 only ``1 - reserve`` of it, linear in
    between (priorities outside ``0..max_priority`` are clamped). All priorities drain
    the same bucket, so once it is more than ``1 - reserve`` full only higher
    priorities are admitted: under contention the last capacity goes to them. Never
    below 1, so a burst of 1 keeps no reserve.
    """
    p = min(max(priority, 0), max_priority)
    share = 1.0 - reserve * (max_priority - p) / max_priority if max_priority > 0 else 1.0
    return max(1, math.floor(limit.capacity * share + EPSILON))


def _remaining(limit: Limit, tat: float, now: float) -> int:
    return max(0, math.floor(limit.capacity - (tat - now) / limit.interval + EPSILON))


def gcra(
    tat: float | None, now: float, limit: Limit, cost: int, *, capacity: int | None = None
) -> tuple[Decision, float]:
    """Decide ``cost`` units against ``limit`` whose state is ``tat`` (None: idle).

    Returns the decision and the new TAT (unchanged when denied). ``cost == 0`` peeks.
    ``capacity`` is the admission threshold (default the full burst; see
    :func:`effective_burst`); ``remaining``/``reset_s`` always describe the full bucket.
    """
    if cost < 0:
        raise ValueError(f"cost must be >= 0, got {cost}")
    cap = limit.capacity if capacity is None else min(capacity, limit.capacity)
    t = limit.interval
    base = now if tat is None else max(tat, now)
    new_tat = base + cost * t
    if cost > cap:
        return Decision(False, limit.rate, _remaining(limit, base, now), base - now,
                        math.inf, too_large=True, key=limit.key), base  # fmt: skip
    # Same operation order as the Lua script, so both agree to the last bit.
    allow_at = new_tat - cap * t
    if allow_at <= now + EPSILON:
        return Decision(True, limit.rate, _remaining(limit, new_tat, now), new_tat - now,
                        0.0, key=limit.key), new_tat  # fmt: skip
    return Decision(False, limit.rate, _remaining(limit, base, now), base - now,
                    allow_at - now, key=limit.key), base  # fmt: skip


def adjust(tat: float | None, now: float, limit: Limit, delta_cost: int) -> float:
    """Correct a limit after the fact (e.g. real tokens vs the estimate admitted).

    A positive delta debits without a check (the bucket may go into debt, delaying
    later requests); a negative one credits back, but never past a full bucket (``now``).
    """
    base = now if tat is None else max(tat, now)
    moved = base + delta_cost * limit.interval
    return moved if delta_cost >= 0 else max(now, moved)


def admitted(decisions: Sequence[Decision]) -> bool:
    return all(d.allowed for d in decisions)


def retry_after(decisions: Sequence[Decision]) -> float:
    """When the whole batch would be admitted (0 if it was; ``inf`` if never)."""
    return max((d.retry_after_s for d in decisions if not d.allowed), default=0.0)


def validate(checks: Sequence[tuple[Limit, int]]) -> None:
    if len({limit.key for limit, _ in checks}) != len(checks):
        raise ValueError("each limit key may appear once per call")
    if any(cost < 0 for _, cost in checks):
        raise ValueError("cost must be >= 0")


def batch(
    tats: Sequence[float | None], now: float, checks: Sequence[tuple[Limit, int]], priority: int
) -> tuple[list[Decision], list[float] | None]:
    """All-or-nothing over ``checks``: the decisions and the new TATs, or None if denied.

    Each limit key may appear once (a second check of one key would not see the first's
    cost)."""
    validate(checks)
    results = [
        gcra(tat, now, limit, cost, capacity=effective_burst(limit, priority))
        for tat, (limit, cost) in zip(tats, checks, strict=True)
    ]
    decisions = [d for d, _ in results]
    if admitted(decisions):
        return decisions, [new for _, new in results]
    # Nothing is consumed: the limits that would have admitted show their state as is.
    shown = [
        d if not d.allowed else gcra(tat, now, limit, 0)[0]
        for d, tat, (limit, _) in zip(decisions, tats, checks, strict=True)
    ]
    return shown, None


async def wait_for_capacity(
    attempt: Callable[[], Awaitable[list[Decision]]],
    max_wait_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> list[Decision]:
    """Retry ``attempt`` after each denial's retry_after while ``max_wait_s`` allows."""
    deadline = clock() + max_wait_s
    while True:
        decisions = await attempt()
        wait = retry_after(decisions)
        if wait <= 0 or wait > deadline - clock():
            return decisions
        await sleep(wait)


class RateLimiter(Protocol):
    """What the admit stage needs; :class:`LocalRateLimiter` and ``RedisRateLimiter``."""

    async def acquire(
        self,
        checks: list[tuple[Limit, int]],
        *,
        priority: int = MAX_PRIORITY,
        max_wait_s: float = 0.0,
    ) -> list[Decision]: ...

    async def adjust(self, limit: Limit, delta: int) -> None: ...

    async def lease(self, key: str, max_concurrency: int, ttl_s: float) -> str | None: ...

    async def renew(self, key: str, lease_id: str, ttl_s: float) -> bool: ...

    async def unlease(self, key: str, lease_id: str) -> None: ...


class LocalRateLimiter:
    """Rate limits and concurrency leases for one process (the embedded default)."""

    _SWEEP_EVERY = 1024

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._tats: dict[str, float] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._ops = 0

    async def acquire(
        self,
        checks: list[tuple[Limit, int]],
        *,
        priority: int = MAX_PRIORITY,
        max_wait_s: float = 0.0,
    ) -> list[Decision]:
        async def attempt() -> list[Decision]:
            return self._try(checks, priority)

        return await wait_for_capacity(attempt, max_wait_s, self._clock, self._sleep)

    def _try(self, checks: Sequence[tuple[Limit, int]], priority: int) -> list[Decision]:
        # No await between reading and writing the TATs: atomic on the event loop.
        now = self._clock()
        self._sweep(now)
        decisions, new = batch(
            [self._tats.get(lim.key) for lim, _ in checks], now, checks, priority
        )
        if new is not None:
            for (lim, _), tat in zip(checks, new, strict=True):
                self._store(lim.key, tat, now)
        return decisions

    async def adjust(self, limit: Limit, delta: int) -> None:
        now = self._clock()
        self._store(limit.key, adjust(self._tats.get(limit.key), now, limit, delta), now)

    def _store(self, key: str, tat: float, now: float) -> None:
        if tat > now:
            self._tats[key] = tat
        else:
            self._tats.pop(key, None)  # a full bucket is the same as no entry

    def _sweep(self, now: float) -> None:
        self._ops += 1
        if self._ops % self._SWEEP_EVERY:
            return
        self._tats = {k: t for k, t in self._tats.items() if t > now}
        for key in [k for k, held in self._leases.items() if not self._live(held, now)]:
            del self._leases[key]

    @staticmethod
    def _live(held: dict[str, float], now: float) -> dict[str, float]:
        for lease_id in [i for i, exp in held.items() if exp <= now]:
            del held[lease_id]
        return held

    async def lease(self, key: str, max_concurrency: int, ttl_s: float) -> str | None:
        """A slot of ``key``'s concurrency, or None when all are held. The lease
        expires after ``ttl_s`` unless renewed, so a lost holder cannot leak it."""
        now = self._clock()
        held = self._live(self._leases.setdefault(key, {}), now)
        if len(held) >= max_concurrency:
            return None
        lease_id = secrets.token_hex(8)
        held[lease_id] = now + ttl_s
        return lease_id

    async def renew(self, key: str, lease_id: str, ttl_s: float) -> bool:
        """Extend a live lease to ``ttl_s`` from now; False if it already expired."""
        now = self._clock()
        held = self._live(self._leases.get(key, {}), now)
        if lease_id not in held:
            return False
        held[lease_id] = now + ttl_s
        return True

    async def unlease(self, key: str, lease_id: str) -> None:
        held = self._leases.get(key)
        if held is not None:
            held.pop(lease_id, None)
            if not held:
                del self._leases[key]

    async def close(self) -> None:
        return None
