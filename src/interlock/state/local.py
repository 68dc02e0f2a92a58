"""In-process shared state: one replica, nothing to share, nothing to fail."""

from __future__ import annotations

import time

from interlock.state.base import BreakerSnapshot


class LocalState:
    healthy = True

    def __init__(self) -> None:
        self._breakers: dict[str, BreakerSnapshot] = {}
        self._forced: str | None = None
        self._levels: dict[str, tuple[int, float]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def publish_breaker(self, deployment: str, snap: BreakerSnapshot) -> None:
        self._breakers[deployment] = snap

    async def fetch_breakers(self, deployments: list[str]) -> dict[str, BreakerSnapshot] | None:
        return {d: s for d, s in self._breakers.items() if d in deployments}

    async def set_forced_level(self, level: str | None) -> bool:
        self._forced = level
        return True

    async def report_level(self, replica: str, level: int, ttl_s: float) -> None:
        self._levels[replica] = (level, time.time() + ttl_s)

    async def cluster_levels(self) -> tuple[str | None, int] | None:
        now = time.time()
        live = [lvl for lvl, exp in self._levels.values() if exp > now]
        return self._forced, max(live, default=0)
