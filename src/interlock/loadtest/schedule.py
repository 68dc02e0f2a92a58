"""Arrival schedules: the offsets (seconds from the start) at which requests are due.

The schedule is computed, not reacted to: it never looks at responses, which is what
keeps the generator open-loop. A ramp rises linearly from ``start_rate`` to ``rate``
over ``ramp_s`` seconds and then holds ``rate``; the k-th arrival of a ramp is where the
integral of the rate reaches k, so the achieved rate follows the ramp exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = ["Arrival", "Schedule"]

Arrival = Literal["constant", "poisson"]


@dataclass(frozen=True)
class Schedule:
    """``rate`` requests/s (after an optional ramp), stopping at whichever bound comes
    first: ``requests`` arrivals or ``duration_s`` seconds."""

    rate: float
    duration_s: float
    requests: int | None = None
    ramp_s: float = 0.0
    start_rate: float = 0.0
    arrival: Arrival = "constant"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.rate <= 0 or not math.isfinite(self.rate):
            raise ValueError("rate must be a positive number")
        if self.duration_s <= 0 or not math.isfinite(self.duration_s):
            raise ValueError("duration must be positive: a load test always stops by itself")
        if self.requests is not None and self.requests < 1:
            raise ValueError("requests must be at least 1")
        if self.ramp_s < 0 or self.start_rate < 0:
            raise ValueError("ramp_s and start_rate must not be negative")

    @property
    def peak_rate(self) -> float:
        return max(self.rate, self.start_rate)

    def expected_count(self) -> int:
        """How many arrivals the schedule produces (the progress bar's total)."""
        expected = self._cumulative(self.duration_s)
        # constant: one arrival at each whole count in [0, expected)
        n = math.ceil(expected - 1e-9) if self.arrival == "constant" else round(expected)
        return n if self.requests is None else min(n, self.requests)

    def _cumulative(self, t: float) -> float:
        """Expected arrivals in [0, t)."""
        ramp = min(t, self.ramp_s)
        if ramp > 0:
            slope = (self.rate - self.start_rate) / self.ramp_s
            n = self.start_rate * ramp + slope * ramp * ramp / 2
        else:
            n = 0.0
        return n + max(0.0, t - self.ramp_s) * self.rate

    def _time_of(self, n: float) -> float:
        """Inverse of :meth:`_cumulative`: when the expected count reaches ``n``."""
        if self.ramp_s > 0:
            in_ramp = self._cumulative(self.ramp_s)
            if n <= in_ramp:
                slope = (self.rate - self.start_rate) / self.ramp_s
                if abs(slope) < 1e-12:
                    return n / self.start_rate
                # slope/2 t^2 + r0 t - n = 0, the positive root
                disc = self.start_rate**2 + 2 * slope * n
                return (-self.start_rate + math.sqrt(max(disc, 0.0))) / slope
            return self.ramp_s + (n - in_ramp) / self.rate
        return n / self.rate

    def offsets(self) -> Iterator[float]:
        """Send offsets in seconds, ascending, within ``[0, duration_s)``."""
        limit = self.requests if self.requests is not None else math.inf
        count = 0
        if self.arrival == "constant":
            while count < limit:
                t = self._time_of(count)
                if t >= self.duration_s:
                    return
                yield t
                count += 1
            return
        # Poisson: unit-rate exponential gaps in "expected count" space, mapped through
        # the inverse integral, give a non-homogeneous Poisson process that follows the ramp.
        rng = random.Random(self.seed)
        n = rng.expovariate(1.0)
        while count < limit:
            t = self._time_of(n)
            if t >= self.duration_s:
                return
            yield t
            count += 1
            n += rng.expovariate(1.0)
