"""Budget counters with reservations: reserve worst case, settle actual, charge the lost.

Amounts are integers (nano-dollars). A counter key holds settled spend; each in-flight
reservation is a hold with an expiry. A reservation is all-or-nothing across every
budget that applies to the request.

A hold is never silently released. It ends in exactly one of these ways:

* **settle** (``actual``): the hold is replaced by the actual cost (release = settle at 0);
* **expire**: its owner vanished (or the request outlived ``hold_s``): the hold becomes
  settled spend at its *reserved* amount, and its id and amount are kept next to the
  counter (``<key>:x``, with the counter's lifetime) so that a late settle of that id
  *corrects* the counter (``settled += actual − charged``) and a late release refunds it;
* **charge** (mode ``"c"``): a request admitted while the shared state was unreachable
  (no hold was ever placed) adds its actual cost once, when the state is back; its id is
  remembered (``<key>:c``) so a retried charge never adds twice.

A settle of an id the counter knows nothing of (already settled, or never reserved there)
is a no-op, so settling twice — a retried settle, a replayed spool — never double-counts.
Because expired holds stay counted, settled + held never reads below what was admitted,
with or without the owner's help: the hard limit holds when a replica dies.

``LocalReservations`` is the embedded single-writer path (plain Python between awaits,
so each call is atomic on the event loop); ``RedisReservations`` does the same in one
Lua script per call, so the check and the increment are one atomic step across
replicas. A counter that does not exist yet is reported as uninitialised, and the
caller seeds it from the ledger (``SET NX``) before retrying.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from interlock.state.redis_call import RedisCalls, RedisUnavailable


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
    # settled + held of every counter as this reservation saw it (its own hold included):
    # what a replica last knew, for a bounded allowance while the state is unreachable.
    seen: tuple[int, ...] = ()


class StateUnavailable(Exception):
    """The shared state could not be reached in time."""


# Settle modes: settle (or correct) a hold; charge an admission that placed no hold.
HOLD, CHARGE = "h", "c"


@dataclass(slots=True)
class _Counter:
    settled: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)
    expires: float = 0.0
    charged_holds: dict[str, int] = field(default_factory=dict)  # expired: id -> amount
    charges: set[str] = field(default_factory=set)  # ids charged without a hold

    def held(self, now: float) -> int:
        for rid in [r for r, (_, exp) in self.holds.items() if exp <= now]:
            amount, _ = self.holds.pop(rid)
            self.settled += amount  # the owner is gone: charged, never released
            self.charged_holds[rid] = amount
        return sum(a for a, _ in self.holds.values())

    def settle(self, rid: str, actual: int, mode: str) -> None:
        hold = self.holds.pop(rid, None)
        if hold is not None:
            self.settled += actual
        elif rid in self.charged_holds:
            self.settled += actual - self.charged_holds.pop(rid)
        elif mode == CHARGE and rid not in self.charges:
            self.charges.add(rid)
            self.settled += actual


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
        seen: list[int] = []
        for i, (h, c) in enumerate(zip(holds, counters, strict=True)):
            assert c is not None
            spent = c.held(now) + c.settled
            if h.limit >= 0 and spent + amount > h.limit:
                return Reserved(False, i, spent)
            seen.append(spent + amount)
        for h, c in zip(holds, counters, strict=True):
            assert c is not None
            c.holds[rid] = (amount, now + hold_s)
            c.expires = max(c.expires, now + h.ttl_s)
        return Reserved(True, seen=tuple(seen))

    async def settle(self, keys: list[str], rid: str, actual: int, mode: str = HOLD) -> None:
        now = self._clock()
        for key in keys:
            c = self._get(key, now)
            if c is not None:
                c.settle(rid, actual, mode)

    async def release(self, keys: list[str], rid: str) -> None:
        await self.settle(keys, rid, 0)

    async def read(self, key: str) -> tuple[int, int] | None:
        now = self._clock()
        c = self._get(key, now)
        if c is None:
            return None
        held = c.held(now)
        return c.settled, held


# KEYS: counters. ARGV: amount, hold_s, rid, limits..., ttls...
# -> {-1, 0, {}, seen...} | {refusing index, spent, {}} | {-2, 0, missing keys}
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
local seen = {}
for i = 1, n do
  local k = KEYS[i]
  local expired = redis.call('ZRANGEBYSCORE', k .. ':h', '-inf', now)
  if #expired > 0 then
    -- The owner is gone (or the request outlived its hold): charge the reserved amount,
    -- never release it; remember it so that a late settle corrects instead of adding.
    for _, id in ipairs(expired) do
      local a = tonumber(redis.call('HGET', k .. ':a', id) or '0')
      redis.call('HDEL', k .. ':a', id)
      redis.call('DECRBY', k .. ':r', a)
      redis.call('INCRBY', k, a)
      redis.call('HSET', k .. ':x', id, a)
    end
    redis.call('ZREMRANGEBYSCORE', k .. ':h', '-inf', now)
    local ttl = redis.call('TTL', k)
    if ttl > 0 then redis.call('EXPIRE', k .. ':x', ttl) end
  end
  local spent = tonumber(redis.call('GET', k)) + tonumber(redis.call('GET', k .. ':r') or '0')
  local limit = tonumber(ARGV[3 + i])
  if limit >= 0 and spent + amount > limit then return {i - 1, spent, {}} end
  seen[i] = spent + amount
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
return {-1, 0, {}, seen}
"""

# KEYS: counters. ARGV: rid, actual, mode ('h' settle a hold | 'c' charge without one).
_SETTLE = """
local rid = ARGV[1]
local actual = tonumber(ARGV[2])
local mode = ARGV[3]
for i = 1, #KEYS do
  local k = KEYS[i]
  -- A counter that vanished (Redis restarted) is re-seeded from the ledger instead.
  local live = redis.call('EXISTS', k) == 1
  local a = redis.call('HGET', k .. ':a', rid)
  if a then
    redis.call('HDEL', k .. ':a', rid)
    redis.call('ZREM', k .. ':h', rid)
    redis.call('DECRBY', k .. ':r', tonumber(a))
    if live and actual ~= 0 then redis.call('INCRBY', k, actual) end
  else
    local x = redis.call('HGET', k .. ':x', rid)
    if x then
      -- Expired and charged at its reserved amount: correct to the actual cost.
      redis.call('HDEL', k .. ':x', rid)
      if live then redis.call('INCRBY', k, actual - tonumber(x)) end
    elseif mode == 'c' and live and redis.call('HSETNX', k .. ':c', rid, actual) == 1 then
      redis.call('INCRBY', k, actual)
      local ttl = redis.call('TTL', k)
      if ttl > 0 then redis.call('EXPIRE', k .. ':c', ttl) end
    end
    -- Otherwise already settled (or never held here): nothing to add, ever.
  end
end
return 0
"""


class RedisReservations:
    def __init__(
        self, redis: Redis, prefix: str, timeout_s: float, *, calls: RedisCalls | None = None
    ) -> None:
        self._r = redis
        self._prefix = prefix
        self._timeout = timeout_s
        # The shared state's RedisCalls when given: one view of whether Redis is up.
        self._calls = calls or RedisCalls(timeout_s)
        self._reserve = redis.register_script(_RESERVE)
        self._settle = redis.register_script(_SETTLE)

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def _bounded(self, aw: Awaitable[Any]) -> Any:
        """Every Redis call of this class: bounded by Redis's own time, not loop lag
        (state/redis_call.py); an unavailable Redis raises StateUnavailable."""
        try:
            return await self._calls(aw)
        except RedisUnavailable as exc:
            raise StateUnavailable(str(exc)) from None

    async def init(self, key: str, value: int, ttl_s: int) -> None:
        await self._bounded(self._r.set(self._k(key), value, nx=True, ex=ttl_s))

    async def reserve(self, holds: list[Hold], amount: int, rid: str, hold_s: float) -> Reserved:
        keys = [self._k(h.key) for h in holds]
        args: list[str | int | float] = [amount, hold_s, rid]
        args += [h.limit for h in holds] + [h.ttl_s for h in holds]
        reply = await self._bounded(self._reserve(keys=keys, args=args))
        code, spent, missing = reply[0], reply[1], reply[2]
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
        return Reserved(True, seen=tuple(int(s) for s in reply[3]))

    async def settle(self, keys: list[str], rid: str, actual: int, mode: str = HOLD) -> None:
        await self._bounded(self._settle(keys=[self._k(k) for k in keys], args=[rid, actual, mode]))

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
