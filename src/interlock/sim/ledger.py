"""The simulator's own record of what it served, to check a gateway's accounting."""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from interlock.sim.config import SimConfig

__all__ = ["Ledger", "LedgerEntry"]

MAX_ENTRIES = 10_000


@dataclass(slots=True)
class LedgerEntry:
    id: str
    format: str
    model: str
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    status: int  # HTTP status sent; 0 when no response was sent (reset / timeout)
    cost_usd: float
    completed: bool
    fault: str | None = None


def _zero() -> dict[str, Any]:
    return {
        "requests": 0,
        "ok": 0,
        "errors": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost_usd": 0.0,
    }


class Ledger:
    """Entries (the last :data:`MAX_ENTRIES`) plus running totals, overall and per model."""

    __slots__ = ("_by_model", "_entries", "_totals")

    def __init__(self) -> None:
        self._entries: deque[LedgerEntry] = deque(maxlen=MAX_ENTRIES)
        self._totals = _zero()
        self._by_model: dict[str, dict[str, Any]] = {}

    def clear(self) -> None:
        self._entries.clear()
        self._totals = _zero()
        self._by_model = {}

    def record(
        self,
        cfg: SimConfig,
        *,
        id: str,
        format: str,
        model: str,
        stream: bool,
        prompt_tokens: int,
        completion_tokens: int,
        status: int,
        completed: bool = True,
        fault: str | None = None,
    ) -> LedgerEntry:
        price = cfg.price_for(model)
        cost = 0.0
        if price is not None:
            cost = (
                prompt_tokens * price["input_per_mtok"]
                + completion_tokens * price["output_per_mtok"]
            ) / 1_000_000
        entry = LedgerEntry(
            id,
            format,
            model,
            stream,
            prompt_tokens,
            completion_tokens,
            status,
            cost,
            completed,
            fault,
        )
        self._entries.append(entry)
        ok = status == 200 and completed and fault is None
        for agg in (self._totals, self._by_model.setdefault(model, _zero())):
            agg["requests"] += 1
            agg["ok" if ok else "errors"] += 1
            agg["prompt_tokens"] += prompt_tokens
            agg["completion_tokens"] += completion_tokens
            agg["cost_usd"] += cost
        return entry

    def snapshot(self) -> dict[str, Any]:
        return {
            "totals": dict(self._totals),
            "by_model": {m: dict(v) for m, v in self._by_model.items()},
            "entries": [asdict(e) for e in self._entries],
        }
