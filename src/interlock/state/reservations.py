"""Budget counters with reservations: reserve worst case, settle actual, release on failure.

Amounts are integers (nano-dollars). A counter key holds settled spend; each in-flight
reservation is a hold with an expiry, so a replica that dies mid-request cannot keep
budget locked beyond ``hold_s``. A reservation is all-or-nothing across every budget
that applies to the request.

``LocalReservations`` is the embedded single-writer path (plain Python between awaits,
so each call is atomic on the event loop); ``RedisReservations`` does the same in one
Lua script per call, so the check and the increment are one atomic step across
replicas. A counter that does not exist yet is reported as uninitialised, and the
caller seeds it from the ledger (``SET NX``) before retrying.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class Hold:
    key: str
    limit: int  # nano-USD; -1: no hard limit (counted for reporting only)
    ttl_s: int  # lifetime of the counter (the window's end plus slack)


@dataclass(frozen=True, slots=True)
class Reserved:
    ok: bool
    denied: int = -1  # index of the budget that refused
    spent: int = 0  # settled + held of the refusing budget
    uninitialised: tuple[str, ...] = ()


class StateUnavailable(Exception):
    """The shared state could not be reached in time."""


@dataclass(slots=True)
class _Counter:
    settled: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)
    expires: float = 0.0

    def held(self, now: float) -> int:
        for rid in [r for r, (_, exp) in self.holds.items() if exp <= now]:
            del self.holds[rid]
        return sum(a for a, _ in self.holds.values())


class LocalReservations:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._c: dict[str, _Counter] = {}
        self._clock = clock

    def _get(self, key: str, now: float) -> _Counter | None:
        c = self._c.get(key)
        if c is not None and c.expires <= now:
            del self._c[key]
            return None
        return c

    async def init(self, key: str, value: int, ttl_s: int) -> None:
        now = self._clock()
        if self._get(key, now) is None:
            self._c[key] = _Counter(value, expires=now + ttl_s)

    async def reserve(self, holds: list[Hold], amount: int, rid: str, hold_s: float) -> Reserved:
        now = self._clock()
        counters = [self._get(h.key, now) for h in holds]
        missing = tuple(h.key for h, c in zip(holds, counters, strict=True) if c is None)
        if missing:
            return Reserved(False, uninitialised=missing)
        for i, (h, c) in enumerate(zip(holds, counters, strict=True)):
            assert c is not None
            spent = c.settled + c.held(now)
            if h.limit >= 0 and spent + amount > h.limit:
                return Reserved(False, i, spent)
        for h, c in zip(holds, counters, strict=True):
            assert c is not None
            c.holds[rid] = (amount, now + hold_s)
            c.expires = max(c.expires, now + h.ttl_s)
        return Reserved(True)

    async def settle(self, keys: list[str], rid: str, actual: int) -> None:
        now = self._clock()
        for key in keys:
            c = self._get(key, now)
            if c is None:
                continue
            c.holds.pop(rid, None)
            c.settled += actual

    async def release(self, keys: list[str], rid: str) -> None:
        await self.settle(keys, rid, 0)

    async def read(self, key: str) -> tuple[int, int] | None:
        now = self._clock()
        c = self._get(key, now)
        return None if c is None else (c.settled, c.held(now))


_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local amount = tonumber(ARGV[1])
local hold = tonumber(ARGV[2])
local rid = ARGV[3]
local n = #KEYS
local missing = {}
for i = 1, n do
  if redis.call('EXISTS', KEYS[i]) == 0 then table.insert(missing, KEYS[i]) end
end
if #missing > 0 then return {-2, 0, missing} end
for i = 1, n do
  local k = KEYS[i]
  local expired = redis.call('ZRANGEBYSCORE', k .. ':h', '-inf', now)
  if #expired > 0 then
    for _, id in ipairs(expired) do
      local a = tonumber(redis.call('HGET', k .. ':a', id) or '0')
      redis.call('HDEL', k .. ':a', id)
      redis.call('DECRBY', k .. ':r', a)
    end
    redis.call('ZREMRANGEBYSCORE', k .. ':h', '-inf', now)
  end
  local spent = tonumber(redis.call('GET', k)) + tonumber(redis.call('GET', k .. ':r') or '0')
  local limit = tonumber(ARGV[3 + i])
  if limit >= 0 and spent + amount > limit then return {i - 1, spent, {}} end
end
for i = 1, n do
  local k = KEYS[i]
  local ttl = tonumber(ARGV[3 + n + i])
  redis.call('ZADD', k .. ':h', now + hold, rid)
  redis.call('HSET', k .. ':a', rid, amount)
  redis.call('INCRBY', k .. ':r', amount)
  redis.call('EXPIRE', k .. ':h', ttl)
  redis.call('EXPIRE', k .. ':a', ttl)
  redis.call('EXPIRE', k .. ':r', ttl)
end
return {-1, 0, {}}
"""

_SETTLE = """
local rid = ARGV[1]
local actual = tonumber(ARGV[2])
for i = 1, #KEYS do
  local k = KEYS[i]
  local a = redis.call('HGET', k .. ':a', rid)
  if a then
    redis.call('HDEL', k .. ':a', rid)
    redis.call('ZREM', k .. ':h', rid)
    redis.call('DECRBY', k .. ':r', tonumber(a))
  end
  -- A counter that vanished (Redis restarted) is re-seeded from the ledger instead.
  if actual ~= 0 and redis.call('EXISTS', k) == 1 then redis.call('INCRBY', k, actual) end
end
return 0
"""


class RedisReservations:
    def __init__(self, redis: Redis, prefix: str, timeout_s: float) -> None:
        self._r = redis
        self._prefix = prefix
        self._timeout = timeout_s
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def _bounded(self, aw: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await aw
        except Exception as exc:
            raise StateUnavailable(type(exc).__name__) from None

    async def init(self, key: str, value: int, ttl_s: int) -> None:
        await self._bounded(self._r.set(self._k(key), value, nx=True, ex=ttl_s))

    async def reserve(self, holds: list[Hold], amount: int, rid: str, hold_s: float) -> Reserved:
        keys = [self._k(h.key) for h in holds]
        args: list[str | int | float] = [amount, hold_s, rid]
        args += [h.limit for h in holds] + [h.ttl_s for h in holds]
        code, spent, missing = await self._bounded(self._reserve(keys=keys, args=args))
        if code == -2:
            plen = len(self._prefix)
            return Reserved(
                False,
                uninitialised=tuple(
                    m.decode()[plen:] if isinstance(m, bytes) else m[plen:] for m in missing
                ),
            )
        if code >= 0:
            return Reserved(False, int(code), int(spent))
        return Reserved(True)

    async def settle(self, keys: list[str], rid: str, actual: int) -> None:
        await self._bounded(self._settle(keys=[self._k(k) for k in keys], args=[rid, actual]))

    async def release(self, keys: list[str], rid: str) -> None:
        await self.settle(keys, rid, 0)

    async def read(self, key: str) -> tuple[int, int] | None:
        k = self._k(key)
        pipe = self._r.pipeline(transaction=False)
        pipe.get(k)
        pipe.get(k + ":r")
        settled, held = await self._bounded(pipe.execute())
        if settled is None:
            return None
        return int(settled), int(held or 0)
