"""Redis timeouts measure Redis, not event-loop lag (state/redis_call.py).

* A healthy Redis and a busy event loop: no call is declared unavailable, while a plain
  ``asyncio.timeout`` of the same length, in the same conditions, is (the control).
* A frozen redis-server of the test's own: every call is bounded — by the timeout on an
  idle loop, by the hard bound on a busy one — later calls fail fast, and the first
  probe after SIGCONT brings Redis back. The same through each Redis caller of the
  request path (reservations, rate limiter, shared state, cache tier).

Each scenario runs on asyncio's loop and on uvloop (what ``interlock serve`` uses).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from interlock.cache.redis_tier import RedisTier
from interlock.state.ratelimit_local import Limit, RateLimitBackendError
from interlock.state.ratelimit_redis import RedisRateLimiter
from interlock.state.redis import RedisState
from interlock.state.redis_call import RedisCalls, RedisUnavailable
from interlock.state.redis_connect import connect
from interlock.state.reservations import Hold, RedisReservations, StateUnavailable
from tests.support.own_redis import start_own_redis
from tests.support.services import REDIS_URL, require

pytestmark = pytest.mark.redis

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run(loop: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(main())


class Hog:
    """Keeps the event loop busy: ``block_s`` of CPU work per turn, forever."""

    def __init__(self, block_s: float) -> None:
        self._block = block_s
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            end = time.perf_counter() + self._block
            while time.perf_counter() < end:
                pass
            await asyncio.sleep(0)

    async def __aenter__(self) -> Hog:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


async def _plain(aw: Awaitable[Any], timeout_s: float) -> Any:
    """What every Redis caller did before: the loop's lag is charged to Redis."""
    async with asyncio.timeout(timeout_s):
        return await aw


@pytest.mark.parametrize("loop", list(LOOPS))
def test_busy_loop_is_not_charged_to_redis(loop: str) -> None:
    require("Redis", "127.0.0.1", 6379)

    async def main() -> None:
        ours = connect(REDIS_URL, timeout_s=5.0)
        plain = connect(REDIS_URL, timeout_s=5.0)
        calls = RedisCalls(0.05, max_s=3.0)
        key = f"test:lag:{secrets.token_hex(4)}"
        try:
            await ours.ping()
            await plain.ping()
            async with Hog(0.03):
                results = await asyncio.gather(
                    *(calls(ours.incr(key)) for _ in range(150)), return_exceptions=True
                )
                control = await asyncio.gather(
                    *(_plain(plain.incr(key), 0.05) for _ in range(150)), return_exceptions=True
                )
            failed = [r for r in results if isinstance(r, BaseException)]
            assert failed == [], failed[:3]
            assert calls.healthy
            # Every increment landed exactly once.
            assert sorted(int(r) for r in results) == list(range(1, 151))  # type: ignore[call-overload]
            # The control: the same bound as a plain timeout calls a healthy Redis dead.
            timeouts = [r for r in control if isinstance(r, TimeoutError)]
            assert len(timeouts) > 0
        finally:
            await ours.delete(key)
            await ours.aclose()
            await plain.aclose()

    run(loop, main)


def _timed_failure(elapsed: list[float]) -> Callable[[Awaitable[Any]], Awaitable[None]]:
    async def call(aw: Awaitable[Any]) -> None:
        t = time.monotonic()
        try:
            await aw
        except (RedisUnavailable, StateUnavailable, RateLimitBackendError):
            elapsed.append(time.monotonic() - t)
            return
        raise AssertionError("a frozen Redis answered")

    return call


@pytest.mark.parametrize("loop", list(LOOPS))
def test_frozen_redis_is_bounded_then_fails_fast_then_recovers(loop: str, tmp_path: Path) -> None:
    with start_own_redis(tmp_path / "redis") as server:

        async def main() -> None:
            client = connect(server.url, timeout_s=2.0)
            calls = RedisCalls(0.1, max_s=0.6, probe_every_s=0.3)
            try:
                await calls(client.ping())
                server.freeze()
                # Idle loop: the first call waits its timeout (plus the grace turns).
                t = time.monotonic()
                with pytest.raises(RedisUnavailable):
                    await calls(client.ping())
                first = time.monotonic() - t
                # The timeout, stretched at most to the hard bound when this busy host
                # keeps the loop's thread off a CPU (that time is not Redis's).
                assert 0.09 <= first < 0.6 + 0.2, first
                assert not calls.healthy
                # Known down: 50 concurrent callers fail at once, nothing is sent.
                t = time.monotonic()
                results = await asyncio.gather(
                    *(calls(client.ping()) for _ in range(50)), return_exceptions=True
                )
                assert all(isinstance(r, RedisUnavailable) for r in results)
                assert time.monotonic() - t < 0.2
                # A probe is due after probe_every_s; on a saturated loop it is cut by
                # the hard bound, not stretched by the lag.
                await asyncio.sleep(0.35)
                async with Hog(0.05):
                    t = time.monotonic()
                    with pytest.raises(RedisUnavailable):
                        await calls(client.ping())
                    probe = time.monotonic() - t
                # The bound, plus the turns (50 ms each here) that deliver the cancellation.
                assert probe < 0.6 + 0.2, probe
                server.thaw()
                await asyncio.sleep(0.35)
                assert await calls(client.ping()) is True
                assert calls.healthy
            finally:
                server.thaw()
                await client.aclose()

        run(loop, main)


def test_every_request_path_caller_is_bounded(tmp_path: Path) -> None:
    """Reservations, rate limits, shared state and the cache tier, on a frozen Redis:
    each call ends within the bound with its own "unavailable" answer."""
    with start_own_redis(tmp_path / "redis") as server:

        async def main() -> None:
            state = RedisState(server.url, timeout_s=0.1, max_s=0.5, prefix="t:")
            await state.start()
            assert state.healthy
            reservations = RedisReservations(state.client, "t:", 0.1, calls=state.calls)
            limiter = RedisRateLimiter(state.client, "t:", calls=state.calls)
            tier = RedisTier(state.client, "t:", 0.1)
            await reservations.init("budget", 0, 60)
            server.freeze()
            elapsed: list[float] = []
            call = _timed_failure(elapsed)
            try:
                await call(reservations.reserve([Hold("budget", 10**9, 60)], 5, "r1", 30))
                await call(limiter.acquire([(Limit("k", 10), 1)]))  # fails fast: known down
                t = time.monotonic()
                assert await state.fetch_breakers(["a"]) is None
                elapsed.append(time.monotonic() - t)
                t = time.monotonic()
                with pytest.raises(RedisUnavailable):
                    await tier.get("x")  # its own view of Redis: it waits its timeout
                elapsed.append(time.monotonic() - t)
                assert max(elapsed) < 0.5 + 0.2, elapsed  # the hard bound, at worst
                assert elapsed[1] < 0.05 and elapsed[2] < 0.05, elapsed  # fail fast
                assert not state.healthy
            finally:
                server.thaw()
            await asyncio.sleep(0.3)
            assert await state.fetch_breakers(["a"]) == {}
            assert state.healthy
            got = await reservations.reserve([Hold("budget", 10**9, 60)], 5, "r2", 30)
            assert got.ok
            await state.close()

        run("uvloop", main)
