"""Shared fast state between replicas: circuit breakers and the degradation level.

``local`` keeps it in this process (one replica, the embedded default); ``redis`` shares
it through Redis. Every Redis call is time-bounded and a failing Redis never fails a
request: callers get ``None`` and go on with their local view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    state: str  # closed | open | half_open
    open_until: float  # wall-clock seconds
    trips: int
    updated_at: float  # wall-clock seconds


class SharedState(Protocol):
    @property
    def healthy(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish_breaker(self, deployment: str, snap: BreakerSnapshot) -> None: ...

    async def fetch_breakers(self, deployments: list[str]) -> dict[str, BreakerSnapshot] | None: ...

    async def set_forced_level(self, level: str | None) -> bool: ...

    async def report_level(self, replica: str, level: int, ttl_s: float) -> None: ...

    async def cluster_levels(self) -> tuple[str | None, int] | None:
        """(forced level or None, worst level reported by a live replica); None if unknown."""
        ...
