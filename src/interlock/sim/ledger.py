"""The simulator's own record of what it served, to check a gateway's accounting.

Besides the entries and totals, usage is kept per minute, model and endpoint kind (as a
provider's usage API reports it: ``sim/usage.py`` serves OpenAI's
``/v1/organization/usage/*`` from it), for the last :data:`USAGE_KEEP_S` seconds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from interlock.sim.config import SimConfig

__all__ = ["Ledger", "LedgerEntry"]

MAX_ENTRIES = 10_000
USAGE_KEEP_S = 8 * 24 * 3600  # OpenAI's per-minute buckets reach back a week (1,440 a page)


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
    at: float = field(default_factory=time.time)  # when it was recorded (billed), Unix s
    endpoint: str = "completions"  # completions | embeddings (the usage API's families)


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

    __slots__ = ("_by_model", "_clock", "_entries", "_totals", "_usage")

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._entries: deque[LedgerEntry] = deque(maxlen=MAX_ENTRIES)
        self._totals = _zero()
        self._by_model: dict[str, dict[str, Any]] = {}
        # (minute start, format, endpoint, model) -> [input, output, requests]
        self._usage: dict[tuple[int, str, str, str], list[int]] = {}

    def clear(self) -> None:
        self._entries.clear()
        self._totals = _zero()
        self._by_model = {}
        self._usage = {}

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
        endpoint: str = "completions",
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
            self._clock(),
            endpoint,
        )
        self._entries.append(entry)
        if prompt_tokens or completion_tokens or status == 200:
            self._count_usage(entry)
        ok = status == 200 and completed and fault is None
        for agg in (self._totals, self._by_model.setdefault(model, _zero())):
            agg["requests"] += 1
            agg["ok" if ok else "errors"] += 1
            agg["prompt_tokens"] += prompt_tokens
            agg["completion_tokens"] += completion_tokens
            agg["cost_usd"] += cost
        return entry

    def _count_usage(self, e: LedgerEntry) -> None:
        minute = int(e.at // 60) * 60
        u = self._usage.setdefault((minute, e.format, e.endpoint, e.model), [0, 0, 0])
        u[0] += e.prompt_tokens
        u[1] += e.completion_tokens
        u[2] += 1
        if len(self._usage) > 100_000:
            horizon = minute - USAGE_KEEP_S
            self._usage = {k: v for k, v in self._usage.items() if k[0] >= horizon}

    def usage(
        self, start: float, end: float, *, formats: tuple[str, ...], endpoint: str
    ) -> list[tuple[int, str, int, int, int]]:
        """Billed usage per minute in [start, end): (minute, model, input, output,
        requests), for entries of ``formats`` and ``endpoint``."""
        return sorted(
            (minute, model, u[0], u[1], u[2])
            for (minute, fmt, ep, model), u in self._usage.items()
            if start <= minute < end and fmt in formats and ep == endpoint
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "totals": dict(self._totals),
            "by_model": {m: dict(v) for m, v in self._by_model.items()},
            "entries": [asdict(e) for e in self._entries],
        }
