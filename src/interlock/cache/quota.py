"""Per-tenant byte quotas for the application cache (``/v1/cache/...``).

A write is charged before the value is stored: the entry's size replaces what the same
entry held before, entries count until their TTL ends (or they are deleted), and a write
that would take the tenant past its quota is refused. Evictions by a tier's own memory
bound are not seen, so the count errs on the safe side (never below what is stored).

Two backends with one interface: :class:`RedisQuota` (one Lua script per call, so the
quota holds across every replica; the clock is Redis's ``TIME``) and
:class:`LocalQuota` (this process: the embedded default, where the cache tiers are
per-process too).
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from redis.asyncio import Redis, RedisCluster

from interlock.cache.redis_tier import RedisTier
from interlock.cache.tiered import TieredCache
from interlock.state.redis_call import RedisCalls, RedisUnavailable

ENTRY_OVERHEAD = 256  # bytes charged per entry on top of its value and name


class QuotaUnavailable(Exception):
    """The shared quota state cannot be read (Redis down or slow): refuse the write."""


@dataclass(frozen=True, slots=True)
class Charge:
    ok: bool
    used: int  # bytes the tenant holds after the call (before it, when refused)
    retry_after_s: float | None = None  # refused: when the tenant's next entry expires


class StorageQuota(Protocol):
    limit: int

    async def charge(self, tenant: str, entry: str, size: int, ttl_s: float) -> Charge: ...

    async def release(self, tenant: str, entry: str) -> None: ...


def entry_size(name: str, value: bytes) -> int:
    return len(value) + len(name.encode()) + ENTRY_OVERHEAD


@dataclass(slots=True)
class _Tenant:
    used: int = 0
    entries: dict[str, tuple[int, float]] = field(default_factory=dict)  # size, expires at
    expiries: list[tuple[float, str]] = field(default_factory=list)  # heap; may hold stale

    def purge(self, now: float) -> None:
        while self.expiries and self.expiries[0][0] <= now:
            at, entry = heapq.heappop(self.expiries)
            held = self.entries.get(entry)
            if held is not None and held[1] == at:
                del self.entries[entry]
                self.used -= held[0]
        if len(self.expiries) > 2 * len(self.entries) + 64:  # overwrites left stale items
            self.expiries = [(at, e) for e, (_, at) in self.entries.items()]
            heapq.heapify(self.expiries)


class LocalQuota:
    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._tenants: dict[str, _Tenant] = {}

    async def charge(self, tenant: str, entry: str, size: int, ttl_s: float) -> Charge:
        now = self._clock()
        t = self._tenants.setdefault(tenant, _Tenant())
        t.purge(now)
        old = t.entries.get(entry, (0, 0.0))[0]
        if t.used - old + size > self.limit:
            wait = t.expiries[0][0] - now if t.expiries else None
            return Charge(False, t.used, wait)
        t.used += size - old
        t.entries[entry] = (size, now + ttl_s)
        heapq.heappush(t.expiries, (now + ttl_s, entry))
        return Charge(True, t.used)

    async def release(self, tenant: str, entry: str) -> None:
        t = self._tenants.get(tenant)
        if t is None:
            return
        held = t.entries.pop(entry, None)
        if held is not None:
            t.used -= held[0]
        if not t.entries:
            del self._tenants[tenant]


# KEYS[1]: hash entry -> size (field "" holds the total); KEYS[2]: zset entry -> expiry ms.
# At most 1,000 expired entries are dropped per call, so one call stays short.
_CHARGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local total = tonumber(redis.call('HGET', KEYS[1], '') or '0')
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, e in ipairs(gone) do
  total = total - tonumber(redis.call('HGET', KEYS[1], e) or '0')
  redis.call('HDEL', KEYS[1], e)
  redis.call('ZREM', KEYS[2], e)
end
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local size = tonumber(ARGV[2])
if total - old + size > tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], '', total)
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local wait = -1
  if first[2] then wait = tonumber(first[2]) - now end
  return {0, total, wait}
end
total = total - old + size
redis.call('HSET', KEYS[1], ARGV[1], size, '', total)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local keep = math.max(1000, tonumber(last[2]) - now + 1000)
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
return {1, total, 0}
"""

_RELEASE = """
local size = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if size > 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HINCRBY', KEYS[1], '', -size)
end
return size
"""


class RedisQuota:
    def __init__(
        self, client: Redis | RedisCluster, prefix: str, limit: int, calls: RedisCalls
    ) -> None:
        self.limit = limit
        self._r = client
        self._prefix = prefix + "kvq:"
        # Its own RedisCalls: a slow quota check fails this write, and must not make the
        # budgets or rate limits think Redis is down.
        self._calls = calls
        self._charge = client.register_script(_CHARGE)
        self._release = client.register_script(_RELEASE)

    def _keys(self, tenant: str) -> list[str]:
        # A hash tag keeps both keys of a tenant in one Redis Cluster slot; the tenant
        # (a team or key name) is hashed so no character of it can break the tag.
        tag = hashlib.sha256(tenant.encode()).hexdigest()[:24]
        return [f"{self._prefix}{{{tag}}}:s", f"{self._prefix}{{{tag}}}:e"]

    async def charge(self, tenant: str, entry: str, size: int, ttl_s: float) -> Charge:
        args: list[str | int] = [entry, size, max(1, int(ttl_s * 1000)), self.limit]
        try:
            ok, used, wait_ms = await self._calls(self._charge(keys=self._keys(tenant), args=args))
        except RedisUnavailable as exc:
            raise QuotaUnavailable(str(exc)) from None
        wait = int(wait_ms) / 1000 if int(wait_ms) >= 0 else None
        return Charge(bool(int(ok)), int(used), None if int(ok) else wait)

    async def release(self, tenant: str, entry: str) -> None:
        try:
            await self._calls(self._release(keys=self._keys(tenant), args=[entry]))
        except RedisUnavailable as exc:
            raise QuotaUnavailable(str(exc)) from None


def quota_for(
    limit: int,
    cache: TieredCache | None,
    shared: Redis | None,
    prefix: str,
    timeout_s: float,
    max_s: float | None = None,
) -> StorageQuota:
    """Redis when entries (an L2 tier) or the shared state live there, else this process.
    ``timeout_s``/``max_s``: the Redis call bounds (state.redis_timeout_s, _max_s)."""
    client: Redis | RedisCluster | None = shared
    for tier in cache.tiers if cache is not None else ():
        if isinstance(tier, RedisTier):
            client = tier.client
    if client is None:
        return LocalQuota(limit)
    calls = RedisCalls(timeout_s, max_s, name="redis (app cache quota)")
    return RedisQuota(client, prefix, limit, calls)
