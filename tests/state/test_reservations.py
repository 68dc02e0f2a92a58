"""The hold lifecycle, on both backends: reserve, settle, release, expire, late settle, charge.

A hypothesis state machine drives ``LocalReservations`` and ``RedisReservations`` (the
real server) through any interleaving of those operations and checks them against a
model: a hold is never silently released (an expired hold is charged at its reserved
amount, a late settle corrects it), settling the same id twice never double-counts, and
settled + held stays within the limit whatever happens to the holds' owners.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)
from redis.asyncio import Redis

from interlock.state.reservations import CHARGE, Hold, LocalReservations, RedisReservations
from tests.support.services import REDIS_URL, delete_redis_keys, require

LIMITS = {"a": 1_000, "b": 600}
TTL = 30 * 86400  # the counter outlives every step of a run
LONG_S = 3600.0
SHORT_S = 0.001  # a hold whose owner "dies" at once: expired by the next operation


@dataclass
class _Hold:
    keys: tuple[str, ...]
    amount: int
    state: str = "open"  # open | settled
    actual: int = 0


class HoldLifecycle(RuleBasedStateMachine):
    """Model: per key, the sum settled + held = open amounts (expired or not: an expired
    hold is charged at its amount) + actual amounts of settled holds + charges."""

    backend = "local"
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.now = [1_000_000.0]
        self.client: Redis | None = None
        self.prefix = f"test:res:{secrets.token_hex(4)}:"
        self.res: LocalReservations | RedisReservations
        if self.backend == "redis":
            self.client = Redis.from_url(REDIS_URL)
            self.res = RedisReservations(self.client, self.prefix, timeout_s=5.0)
        else:
            self.res = LocalReservations(clock=lambda: self.now[0])
        self.model: dict[str, _Hold] = {}
        self.charges: dict[str, tuple[tuple[str, ...], int]] = {}
        self.n = 0

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        if self.client is not None:
            delete_redis_keys(self.prefix)
            self.run(self.client.aclose())
        self.loop.close()

    def _sum(self, key: str) -> int:
        total = 0
        for h in self.model.values():
            if key in h.keys:
                total += h.amount if h.state == "open" else h.actual
        total += sum(a for keys, a in self.charges.values() if key in keys)
        return total

    def _pass_time(self, short: bool) -> None:
        if not short:
            return
        if self.backend == "redis":
            time.sleep(0.002)
        else:
            self.now[0] += 0.01

    @initialize()
    def counters(self) -> None:
        for k in LIMITS:
            self.run(self.res.init(k, 0, TTL))

    @rule(
        target=holds,
        keys=st.sampled_from([("a",), ("b",), ("a", "b")]),
        amount=st.integers(1, 400),
        short=st.booleans(),
    )
    def reserve(self, keys: tuple[str, ...], amount: int, short: bool):  # type: ignore[no-untyped-def]
        self.n += 1
        rid = f"r{self.n}"
        fits = all(self._sum(k) + amount <= LIMITS[k] for k in keys)
        got = self.run(
            self.res.reserve(
                [Hold(k, LIMITS[k], TTL) for k in keys], amount, rid, SHORT_S if short else LONG_S
            )
        )
        assert got.ok == fits, (keys, amount, [self._sum(k) for k in keys])
        if not got.ok:
            return multiple()
        assert got.seen == tuple(self._sum(k) + amount for k in keys)
        self.model[rid] = _Hold(keys, amount)
        self._pass_time(short)
        return rid

    @rule(rid=holds, fraction=st.floats(0, 1))
    def settle(self, rid: str, fraction: float) -> None:
        """Settle (or settle again: a retry, a replayed spool) at most the reserved amount."""
        h = self.model[rid]
        actual = int(h.amount * fraction)
        self.run(self.res.settle(list(h.keys), rid, actual))
        if h.state == "open":
            h.state, h.actual = "settled", actual

    @rule(rid=consumes(holds))
    def release(self, rid: str) -> None:
        h = self.model[rid]
        self.run(self.res.release(list(h.keys), rid))
        if h.state == "open":
            h.state, h.actual = "settled", 0

    @rule(
        keys=st.sampled_from([("a",), ("a", "b")]), actual=st.integers(0, 50), twice=st.booleans()
    )
    def charge_without_hold(self, keys: tuple[str, ...], actual: int, twice: bool) -> None:
        """An admission made while the state was unreachable lands once, however often sent."""
        self.n += 1
        rid = f"c{self.n}"
        for _ in range(2 if twice else 1):
            self.run(self.res.settle(list(keys), rid, actual, CHARGE))
        self.charges[rid] = (keys, actual)

    @rule(actual=st.integers(0, 50))
    def settle_unknown(self, actual: int) -> None:
        """A settle for an id never reserved here adds nothing."""
        self.run(self.res.settle(["a", "b"], "never-reserved", actual))

    @rule()
    def owners_die(self) -> None:
        """Every open hold's owner vanishes: time passes beyond every hold's expiry."""
        if self.backend == "redis":
            return  # Redis's own clock: only short holds expire (already past)
        self.now[0] += LONG_S + 1

    @invariant()
    def counters_match_the_model(self) -> None:
        charged_blind = sum(a for _, a in self.charges.values())
        for k, limit in LIMITS.items():
            got = self.run(self.res.read(k))
            assert got is not None
            settled, held = got
            assert settled + held == self._sum(k), (k, settled, held)
            assert settled + held <= limit + charged_blind


@pytest.mark.parametrize("backend", ["local", "redis"])
def test_hold_lifecycle(backend: str) -> None:
    if backend == "redis":
        require("Redis", "127.0.0.1", 6379)
    machine = type(f"HoldLifecycle_{backend}", (HoldLifecycle,), {"backend": backend})
    runner = settings(
        max_examples=40 if backend == "local" else 15,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        derandomize=True,
    )(machine)
    runner.TestCase().runTest()


async def test_expired_hold_is_charged_and_a_late_settle_corrects_it() -> None:
    now = [0.0]
    r = LocalReservations(clock=lambda: now[0])
    await r.init("k", 0, TTL)
    assert (await r.reserve([Hold("k", 100, TTL)], 80, "lost", 10)).ok
    now[0] += 11  # its replica died: the hold expires
    assert await r.read("k") == (80, 0)  # charged at the reserved amount, not released
    assert not (await r.reserve([Hold("k", 100, TTL)], 30, "next", 10)).ok
    await r.settle(["k"], "lost", 25)  # a replayed spool knows the actual cost
    assert await r.read("k") == (25, 0)
    await r.settle(["k"], "lost", 25)  # and replaying it again changes nothing
    assert await r.read("k") == (25, 0)


@pytest.mark.redis
async def test_redis_expired_hold_is_charged_and_corrected() -> None:
    require("Redis", "127.0.0.1", 6379)
    prefix = f"test:res:{secrets.token_hex(4)}:"
    client = Redis.from_url(REDIS_URL)
    try:
        r = RedisReservations(client, prefix, timeout_s=5.0)
        await r.init("k", 0, TTL)
        assert (await r.reserve([Hold("k", 100, TTL)], 80, "lost", 0.001)).ok
        await asyncio.sleep(0.01)
        refused = await r.reserve([Hold("k", 100, TTL)], 30, "next", 10)
        assert not refused.ok and refused.spent == 80
        assert await r.read("k") == (80, 0)  # converted: settled, kept for a late settle
        assert await client.hget(prefix + "k:x", "lost") == b"80"
        assert 0 < await client.ttl(prefix + "k:x") <= TTL
        await r.settle(["k"], "lost", 25)
        await r.settle(["k"], "lost", 25)
        assert await r.read("k") == (25, 0)
        await r.release(["k"], "lost")  # nothing left to release
        assert await r.read("k") == (25, 0)
    finally:
        delete_redis_keys(prefix)
        await client.aclose()
