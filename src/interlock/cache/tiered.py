"""The tiered answer cache: L1 memory → L2 Redis → L3 SQL, read-through with promotion.

Reads try the tiers in order, each bounded by ``cache.tier_timeout_s``; a tier that
fails or is slow counts as a miss (logged once), never as an error. A hit in a slower
tier is copied into the faster ones. Writes go to every tier in the background, off
the request path. Entries outlive their freshness by ``max_stale_s`` so the
degradation ladder's ``cached`` level can still serve them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import orjson

from interlock.types import Usage

log = logging.getLogger("interlock.cache")


class Tier(Protocol):
    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def delete(self, key: str) -> None: ...


@dataclass(slots=True)
class CachedAnswer:
    body: bytes  # the OpenAI-shaped answer (chat.completion, text_completion or embeddings list)
    usage: Usage | None
    deployment: str
    provider: str
    cost_usd: Decimal  # what computing it cost: what each hit saves
    created: float
    fresh_until: float
    tier: str = ""

    def encode(self) -> bytes:
        u = self.usage
        return orjson.dumps(
            {
                "v": 1,
                "body": self.body.decode(),
                # An entry written before cache writes were kept has 4 numbers (read as 0).
                "usage": [
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.cached_tokens,
                    u.reasoning_tokens,
                    u.cache_write_tokens,
                    u.cache_write_1h_tokens,
                ]
                if u
                else None,
                "deployment": self.deployment,
                "provider": self.provider,
                "cost": str(self.cost_usd),
                "created": self.created,
                "fresh_until": self.fresh_until,
            }
        )

    @classmethod
    def decode(cls, raw: bytes) -> CachedAnswer | None:
        try:
            d = orjson.loads(raw)
            u = d["usage"]
            return cls(
                d["body"].encode(),
                _usage(u) if u else None,
                d["deployment"],
                d["provider"],
                Decimal(d["cost"]),
                float(d["created"]),
                float(d["fresh_until"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            return None  # a foreign or damaged entry is a miss


def _usage(u: list[int]) -> Usage:
    """A stored usage list: 6 numbers, or the 4 of an entry stored before cache writes."""
    writes = (int(u[4]), int(u[5])) if len(u) >= 6 else (0, 0)
    return Usage(
        int(u[0]),
        int(u[1]),
        int(u[2]),
        int(u[3]),
        cache_write_tokens=writes[0],
        cache_write_1h_tokens=writes[1],
    )


class TieredCache:
    def __init__(
        self, tiers: list[Tier], *, max_stale_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.tiers = tiers
        self._stale = max_stale_s
        self._clock = clock
        self._down: set[str] = set()
        self._pending: set[asyncio.Task[None]] = set()
        self._flights: dict[str, asyncio.Future[Any]] = {}

    async def _guard(self, tier: Tier, aw: Awaitable[Any]) -> Any:
        try:
            result = await aw
        except Exception as exc:
            if tier.name not in self._down:
                self._down.add(tier.name)
                log.warning(
                    "cache tier %s unavailable (%s): treated as a miss",
                    tier.name,
                    type(exc).__name__,
                )
            raise
        self._down.discard(tier.name)
        return result

    async def get(
        self, key: str, *, max_age_s: float | None = None, allow_stale: bool = False
    ) -> CachedAnswer | None:
        now = self._clock()
        for i, tier in enumerate(self.tiers):
            try:
                raw = await self._guard(tier, tier.get(key))
            except Exception:  # logged by _guard: a tier that is down is a miss
                raw = None
            if raw is None:
                continue
            ans = CachedAnswer.decode(raw)
            if ans is None:
                continue
            fresh = now < ans.fresh_until and (max_age_s is None or now - ans.created <= max_age_s)
            if not fresh and not allow_stale:
                return None
            ans.tier = tier.name
            for faster in self.tiers[:i]:
                self._background(
                    faster, faster.set(key, raw, max(1.0, ans.fresh_until + self._stale - now))
                )
            return ans
        return None

    def put(self, key: str, ans: CachedAnswer) -> None:
        raw = ans.encode()
        ttl = max(1.0, ans.fresh_until + self._stale - self._clock())
        for tier in self.tiers:
            self._background(tier, tier.set(key, raw, ttl))

    def _background(self, tier: Tier, aw: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await self._guard(tier, aw)
            except Exception:
                return

        task = asyncio.get_running_loop().create_task(run())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        """Wait for background writes (tests, shutdown)."""
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    # -- application values (the KV API): written through to every tier, awaited ---------

    async def set_value(self, key: str, value: bytes, ttl_s: float) -> None:
        results = await asyncio.gather(
            *(self._guard(t, t.set(key, value, ttl_s)) for t in self.tiers), return_exceptions=True
        )
        if all(isinstance(r, BaseException) for r in results):
            raise ConnectionError("no cache tier accepted the value")

    async def get_value(self, key: str) -> bytes | None:
        for tier in self.tiers:
            raw: bytes | None
            try:
                raw = await self._guard(tier, tier.get(key))
            except Exception:  # logged by _guard: a tier that is down is a miss
                raw = None
            if raw is not None:
                return raw
        return None

    def put_value(self, key: str, value: bytes, ttl_s: float) -> None:
        """Like :meth:`set_value`, in the background (off the request path)."""
        for tier in self.tiers:
            self._background(tier, tier.set(key, value, ttl_s))

    async def delete_value(self, key: str) -> None:
        await asyncio.gather(
            *(self._guard(t, t.delete(key)) for t in self.tiers), return_exceptions=True
        )

    # -- single flight ----------------------------------------------------------------

    def leader(self, key: str) -> asyncio.Future[Any] | None:
        """None: the caller leads (and must call :meth:`land`); else a future to await."""
        fut = self._flights.get(key)
        if fut is not None:
            return fut
        self._flights[key] = asyncio.get_running_loop().create_future()
        return None

    def land(self, key: str, result: Any = None, error: BaseException | None = None) -> None:
        fut = self._flights.pop(key, None)
        if fut is None or fut.done():
            return
        if error is not None:
            fut.set_exception(error)
            fut.exception()  # mark retrieved: followers may all have gone
        else:
            fut.set_result(result)
