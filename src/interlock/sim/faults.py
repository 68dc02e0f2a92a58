"""Fault injection: decide, per request, which configured fault (if any) applies.

Faults are matched in order. ``latency`` faults add up (and do not stop the search);
the first other matching fault is returned. ``count`` limits how many requests a fault
applies to (``None`` = forever); ``probability`` draws come from a PRNG seeded by the
simulator seed, so a run is reproducible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

__all__ = ["FaultDecision", "FaultEngine"]


@dataclass(slots=True)
class FaultDecision:
    latency_ms: float = 0.0
    fault: dict[str, Any] | None = None


_NONE = FaultDecision()


class FaultEngine:
    """Holds the active faults with their remaining counts."""

    __slots__ = ("_faults", "_remaining", "_rng")

    def __init__(self, faults: list[dict[str, Any]], seed: int) -> None:
        self._faults = list(faults)
        self._remaining: list[int | None] = [f.get("count") for f in self._faults]
        self._rng = random.Random(seed)

    def __bool__(self) -> bool:
        return bool(self._faults)

    def state(self) -> list[dict[str, Any]]:
        return [{**f, "remaining": r} for f, r in zip(self._faults, self._remaining, strict=True)]

    @staticmethod
    def _matches(
        fault: dict[str, Any], path: str, model: str | None, fmt: str, stream: bool
    ) -> bool:
        if fault["type"] == "cut_stream" and not stream:
            return False
        match = fault.get("match")
        if not match:
            return True
        want_model = match.get("model")
        if want_model is not None and want_model != model:
            return False
        want_path = match.get("path")
        if want_path is not None and want_path not in path:
            return False
        want_fmt = match.get("format")
        if want_fmt is not None and want_fmt != fmt:
            return False
        want_stream = match.get("stream")
        return want_stream is None or want_stream == stream

    def decide(self, path: str, model: str | None, fmt: str, stream: bool) -> FaultDecision:
        if not self._faults:
            return _NONE
        latency = 0.0
        chosen: dict[str, Any] | None = None
        for i, fault in enumerate(self._faults):
            remaining = self._remaining[i]
            if remaining is not None and remaining <= 0:
                continue
            if not self._matches(fault, path, model, fmt, stream):
                continue
            prob = fault.get("probability", 1.0)
            if prob < 1.0 and self._rng.random() >= prob:
                continue
            if remaining is not None:
                self._remaining[i] = remaining - 1
            if fault["type"] == "latency":
                latency += float(fault.get("ms", 0.0))
                continue
            chosen = fault
            break
        if latency == 0.0 and chosen is None:
            return _NONE
        return FaultDecision(latency, chosen)
