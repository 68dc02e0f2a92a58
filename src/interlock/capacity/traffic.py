"""Ledger rows as calls: when each request arrived, what it asked for, how long it took.

The ledger stamps a record when the request *finished* (``created_at``) and keeps its
latency, so the arrival is ``created_at - latency_ms``: replaying by finish times would
bunch slow requests together and understate the rate at the moment they were admitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.storage.tables import ledger

__all__ = ["CACHE_MISSES", "Call", "calls_from_rows", "read_calls"]

# Ledger ``cache`` values that mean the upstream was called.
CACHE_MISSES = frozenset({"miss", "bypass", ""})


@dataclass(frozen=True, slots=True)
class Call:
    """One recorded request, reduced to what capacity and simulation need."""

    at: float  # arrival, seconds since the epoch
    model: str  # the alias the client asked for
    deployment: str | None
    endpoint: str
    stream: bool
    outcome: str  # "ok" or the error code
    status: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache: str  # "miss", "bypass", "hit", "semantic", ...
    cost_usd: Decimal
    saved_usd: Decimal
    latency_ms: float
    ttft_ms: float | None
    key_id: str | None = None
    team_id: str | None = None

    @property
    def cache_hit(self) -> bool:
        return self.cache not in CACHE_MISSES

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def upstream(self) -> bool:
        """It reached a deployment (not a cache hit, not refused before routing)."""
        return not self.cache_hit and self.deployment is not None


def _aware(moment: datetime | str) -> datetime:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def calls_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Call]:
    """Ledger rows (column name -> value) as calls, sorted by arrival."""
    out: list[Call] = []
    for r in rows:
        latency = float(r["latency_ms"] or 0.0)
        end = _aware(r["created_at"]).timestamp()
        out.append(
            Call(
                at=end - latency / 1000.0,
                model=str(r["model"] or ""),
                deployment=r["deployment"] or None,
                endpoint=str(r["endpoint"]),
                stream=bool(r["stream"]),
                outcome=str(r["outcome"]),
                status=int(r["status"]),
                prompt_tokens=int(r["prompt_tokens"] or 0),
                completion_tokens=int(r["completion_tokens"] or 0),
                cached_tokens=int(r["cached_tokens"] or 0),
                cache=str(r["cache"] or ""),
                cost_usd=Decimal(str(r["cost_usd"] or 0)),
                saved_usd=Decimal(str(r["saved_usd"] or 0)),
                latency_ms=latency,
                ttft_ms=None if r["ttft_ms"] is None else float(r["ttft_ms"]),
                key_id=r.get("key_id"),
                team_id=r.get("team_id"),
            )
        )
    out.sort(key=lambda c: c.at)
    return out


async def read_calls(engine: AsyncEngine, since: datetime, until: datetime | None) -> list[Call]:
    """The raw ledger rows of ``[since, until)`` (roll-ups have no timing: left out)."""
    cond = [ledger.c.created_at >= since.astimezone(UTC)]
    if until is not None:
        cond.append(ledger.c.created_at < until.astimezone(UTC))
    query = select(ledger).where(*cond).order_by(ledger.c.created_at)
    async with engine.connect() as conn:
        rows = [dict(r._mapping) for r in (await conn.execute(query)).fetchall()]
    return calls_from_rows(rows)
