"""Rate limits shared by every replica through Redis.

Each operation is one Lua script, so one round trip and atomic across replicas: the
GCRA check of every limit in a call happens before any of them is consumed, and no
other client's command runs in between. The scripts read the clock with Redis's
``TIME``, so replicas with skewed clocks still agree. TATs are float strings with a
PEXPIRE equal to the time until the bucket is full again (then the key means nothing
and vanishes); concurrency leases are a ZSET per key scored by expiry.

Every call is bounded by the :class:`~interlock.state.redis_call.RedisCalls` given (the
one the shared state uses, so the limiter fails fast once Redis is known to be down);
an unavailable Redis raises :class:`RateLimitBackendError` and the caller picks
fail-open (bounded: a local allowance per replica) or fail-closed.

For Redis Cluster, put a hash tag in the prefix (``"{rl}:"``): one call's keys must
share a slot.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis

from interlock.state.ratelimit_local import (
    EPSILON,
    MAX_PRIORITY,
    Decision,
    Limit,
    RateLimitBackendError,
    batch,
    effective_burst,
    validate,
    wait_for_capacity,
)
from interlock.state.redis_call import RedisCalls, RedisUnavailable

T = TypeVar("T")

# The admission test mirrors ratelimit_local.gcra term for term (same operation order,
# same epsilon) and returns each TAT as read, so Python rebuilds identical decisions.
# Numbers leave Lua as '%.17g' strings: a Lua number reply would be truncated to an int.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local eps = tonumber(ARGV[1])
local raws, ok = {}, 1
for i = 1, #KEYS do
  local interval = tonumber(ARGV[3 * i - 1])
  local cap = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local raw = redis.call('GET', KEYS[i])
  raws[i] = raw or ''
  local base = now
  if raw then base = math.max(tonumber(raw), now) end
  if cost > cap or (base + cost * interval) - cap * interval > now + eps then ok = 0 end
end
if ok == 1 then
  for i = 1, #KEYS do
    local interval = tonumber(ARGV[3 * i - 1])
    local cost = tonumber(ARGV[3 * i + 1])
    if cost > 0 then
      local base = now
      if raws[i] ~= '' then base = math.max(tonumber(raws[i]), now) end
      local tat = base + cost * interval
      redis.call('SET', KEYS[i], string.format('%.17g', tat),
                 'PX', string.format('%d', math.ceil((tat - now) * 1000) + 1))
    end
  end
end
local out = {ok, string.format('%.17g', now)}
for i = 1, #KEYS do out[#out + 1] = raws[i] end
return out
"""

_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local delta = tonumber(ARGV[2])
local raw = redis.call('GET', KEYS[1])
local tat = now
if raw then tat = math.max(tonumber(raw), now) end
tat = tat + delta * interval
if tat > now then
  redis.call('SET', KEYS[1], string.format('%.17g', tat),
             'PX', string.format('%d', math.ceil((tat - now) * 1000) + 1))
else
  redis.call('DEL', KEYS[1])
end
return string.format('%.17g', tat)
"""

_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
local ms = math.ceil(ttl * 1000) + 1
if redis.call('PTTL', KEYS[1]) < ms then redis.call('PEXPIRE', KEYS[1], string.format('%d', ms)) end
return 1
"""

_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not score or tonumber(score) <= now then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[2])
local ms = math.ceil(ttl * 1000) + 1
if redis.call('PTTL', KEYS[1]) < ms then redis.call('PEXPIRE', KEYS[1], string.format('%d', ms)) end
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRateLimiter:
    """The :class:`~interlock.state.ratelimit_local.RateLimiter` for N replicas.

    ``redis`` is owned by the caller (it may be shared; this class never closes it);
    ``calls`` bounds each call (default: a private :class:`RedisCalls` of ``timeout_s``).
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        timeout_s: float = 0.25,
        *,
        calls: RedisCalls | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._calls = calls or RedisCalls(timeout_s)
        self._acquire = redis.register_script(_ACQUIRE)
        self._adjust = redis.register_script(_ADJUST)
        self._lease = redis.register_script(_LEASE)
        self._renew = redis.register_script(_RENEW)

    def tat_key(self, key: str) -> str:
        return f"{self._prefix}rl:{key}"

    def lease_key(self, key: str) -> str:
        return f"{self._prefix}cc:{key}"

    async def _call(self, aw: Awaitable[T]) -> T:
        try:
            return await self._calls(aw)
        except RedisUnavailable as exc:
            raise RateLimitBackendError(f"rate-limit store unavailable: {exc}") from exc

    async def acquire(
        self,
        checks: list[tuple[Limit, int]],
        *,
        priority: int = MAX_PRIORITY,
        max_wait_s: float = 0.0,
    ) -> list[Decision]:
        """All-or-nothing over ``checks``; see :mod:`interlock.state.ratelimit_local`."""

        async def attempt() -> list[Decision]:
            return await self._try(checks, priority)

        return await wait_for_capacity(attempt, max_wait_s, time.monotonic, asyncio.sleep)

    async def _try(self, checks: Sequence[tuple[Limit, int]], priority: int) -> list[Decision]:
        if not checks:
            return []
        validate(checks)  # before the script consumes anything
        args: list[str | int | float] = [repr(EPSILON)]
        for limit, cost in checks:
            args += [repr(limit.interval), effective_burst(limit, priority), cost]
        keys = [self.tat_key(limit.key) for limit, _ in checks]
        reply = await self._call(self._acquire(keys=keys, args=args))
        now = float(_text(reply[1]))
        tats = [float(_text(r)) if _text(r) else None for r in reply[2:]]
        decisions, new = batch(tats, now, checks, priority)
        if (new is not None) != (int(reply[0]) == 1):  # pragma: no cover - a bug, not a state
            raise RuntimeError("rate-limit script and GCRA disagree")
        return decisions

    async def adjust(self, limit: Limit, delta: int) -> None:
        await self._call(
            self._adjust(keys=[self.tat_key(limit.key)], args=[repr(limit.interval), delta])
        )

    async def lease(self, key: str, max_concurrency: int, ttl_s: float) -> str | None:
        lease_id = secrets.token_hex(8)
        got = await self._call(
            self._lease(keys=[self.lease_key(key)], args=[max_concurrency, repr(ttl_s), lease_id])
        )
        return lease_id if int(got) == 1 else None

    async def renew(self, key: str, lease_id: str, ttl_s: float) -> bool:
        got = await self._call(
            self._renew(keys=[self.lease_key(key)], args=[repr(ttl_s), lease_id])
        )
        return int(got) == 1

    async def unlease(self, key: str, lease_id: str) -> None:
        await self._call(self._redis.zrem(self.lease_key(key), lease_id))

    async def close(self) -> None:
        return None


__all__ = ["RateLimitBackendError", "RedisRateLimiter"]
