"""The in-process rate limiter: all-or-nothing, bounded waiting, priorities, leases."""

from __future__ import annotations

import asyncio
import time

import pytest

from interlock.state.ratelimit_local import Limit, LocalRateLimiter, admitted


class FakeClock:
    """A clock whose sleep advances it, so waiting is deterministic and instant."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> LocalRateLimiter:
    return LocalRateLimiter(clock=clock, sleep=clock.sleep)


async def test_all_or_nothing_across_two_limits(limiter: LocalRateLimiter) -> None:
    rpm, tpm = Limit("rpm:k", rate=2), Limit("tpm:k", rate=100)
    assert admitted(await limiter.acquire([(rpm, 1), (tpm, 60)]))
    denied = await limiter.acquire([(rpm, 1), (tpm, 60)])
    assert not admitted(denied)
    assert denied[0].allowed and denied[0].remaining == 1  # the RPM slot was not spent
    assert not denied[1].allowed and denied[1].remaining == 40
    ok = await limiter.acquire([(rpm, 1), (tpm, 40)])
    assert admitted(ok) and [d.remaining for d in ok] == [0, 0]
    assert not admitted(await limiter.acquire([(rpm, 1)]))


async def test_waits_up_to_max_wait_then_admitted(
    limiter: LocalRateLimiter, clock: FakeClock
) -> None:
    lim = Limit("k", rate=1, period_s=1.0)
    assert admitted(await limiter.acquire([(lim, 1)]))
    # Capacity is 1 s away: a 0.5 s budget does not wait at all...
    d = await limiter.acquire([(lim, 1)], max_wait_s=0.5)
    assert not admitted(d) and d[0].retry_after_s == pytest.approx(1.0)
    assert clock.sleeps == []
    # ...a 2 s budget waits exactly until capacity is back.
    d = await limiter.acquire([(lim, 1)], max_wait_s=2.0)
    assert admitted(d)
    assert clock.sleeps == [pytest.approx(1.0)] and clock.now == pytest.approx(1_001.0)


async def test_waiting_is_bounded_under_contention(clock: FakeClock) -> None:
    lim = Limit("k", rate=1, period_s=1.0)
    rival = LocalRateLimiter(clock=clock, sleep=clock.sleep)

    async def sleep_then_lose(seconds: float) -> None:  # someone else takes each refill
        await clock.sleep(seconds)
        await rival_take()

    limiter = LocalRateLimiter(clock=clock, sleep=sleep_then_lose)
    limiter._tats = rival._tats  # one shared bucket

    async def rival_take() -> None:
        assert admitted(await rival.acquire([(lim, 1)]))

    await rival_take()
    d = await limiter.acquire([(lim, 1)], max_wait_s=3.5)
    assert not admitted(d)
    assert clock.now - 1_000.0 <= 3.5


async def test_too_large_never_waits(limiter: LocalRateLimiter, clock: FakeClock) -> None:
    d = await limiter.acquire([(Limit("tpm", rate=100), 101)], max_wait_s=60)
    assert d[0].too_large and clock.sleeps == []


async def test_high_priority_admitted_first(limiter: LocalRateLimiter, clock: FakeClock) -> None:
    lim = Limit("deployment:a", rate=10, period_s=10.0)
    for _ in range(8):
        assert admitted(await limiter.acquire([(lim, 1)], priority=0))
    assert not admitted(await limiter.acquire([(lim, 1)], priority=0))
    assert admitted(await limiter.acquire([(lim, 1)], priority=9))
    # At 9 of 10 used the last unit is reserved for the high priority.
    low = await limiter.acquire([(lim, 1)], priority=0)
    high = await limiter.acquire([(lim, 1)], priority=9)
    assert high[0].allowed and not low[0].allowed
    assert admitted(await limiter.acquire([(lim, 1)], priority=9, max_wait_s=1.0))
    assert clock.sleeps == [pytest.approx(1.0)]


async def test_adjust(limiter: LocalRateLimiter) -> None:
    tpm = Limit("tpm", rate=1000)
    await limiter.acquire([(tpm, 500)])
    await limiter.adjust(tpm, 200)
    assert (await limiter.acquire([(tpm, 0)]))[0].remaining == 300
    await limiter.adjust(tpm, -600)
    assert (await limiter.acquire([(tpm, 0)]))[0].remaining == 900
    await limiter.adjust(tpm, -10_000)
    assert limiter._tats == {}  # a full bucket keeps no state


async def test_leases_and_expiry(limiter: LocalRateLimiter, clock: FakeClock) -> None:
    a = await limiter.lease("c", 2, ttl_s=30)
    b = await limiter.lease("c", 2, ttl_s=30)
    assert a and b and a != b
    assert await limiter.lease("c", 2, ttl_s=30) is None
    assert await limiter.lease("other", 2, ttl_s=30) is not None
    await limiter.unlease("c", a)
    c = await limiter.lease("c", 2, ttl_s=30)
    assert c is not None
    assert await limiter.lease("c", 2, ttl_s=30) is None
    clock.now += 20
    assert await limiter.renew("c", b, ttl_s=30)
    clock.now += 11  # c expired (a crashed holder), b was renewed
    assert not await limiter.renew("c", c, ttl_s=30)
    assert await limiter.lease("c", 2, ttl_s=30) is not None
    assert await limiter.lease("c", 2, ttl_s=30) is None
    await limiter.unlease("c", "unknown")
    await limiter.unlease("nothing", "unknown")


async def test_idle_state_is_swept() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(clock=clock, sleep=clock.sleep)
    for i in range(100):
        await limiter.acquire([(Limit(f"k{i}", rate=1, period_s=1.0), 1)])
        await limiter.lease(f"c{i}", 1, ttl_s=1.0)
    clock.now += 2
    for _ in range(LocalRateLimiter._SWEEP_EVERY):
        await limiter.acquire([(Limit("hot", rate=10**6), 1)])
    assert set(limiter._tats) <= {"hot"} and limiter._leases == {}


async def test_real_clock_wait() -> None:
    limiter = LocalRateLimiter()
    lim = Limit("k", rate=10, period_s=1.0, burst=1)
    assert admitted(await limiter.acquire([(lim, 1)]))
    start = time.monotonic()
    d = await limiter.acquire([(lim, 1)], max_wait_s=0.5)
    elapsed = time.monotonic() - start
    assert admitted(d)
    assert 0.05 < elapsed < 0.3
    results = await asyncio.gather(*(limiter.acquire([(lim, 1)]) for _ in range(5)))
    assert sum(admitted(r) for r in results) <= 1


async def test_bad_checks_are_rejected(limiter: LocalRateLimiter) -> None:
    lim = Limit("k", rate=10)
    with pytest.raises(ValueError):
        await limiter.acquire([(lim, 1), (lim, 1)])
    with pytest.raises(ValueError):
        await limiter.acquire([(lim, -1)])
    assert await limiter.acquire([]) == []
