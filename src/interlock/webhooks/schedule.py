"""When to try a failed webhook delivery again: exponential backoff, full jitter, Retry-After.

Pure and injectable (``rand`` and ``now`` are parameters), so tests assert exact delays
instead of sleeping. Full jitter (a uniform draw from ``[0, min(max, base·2ⁿ)]``) rather
than a fixed doubling, so that a receiver that came back after an outage is not hit by
every queued delivery at the same instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from interlock.resilience.backoff import Backoff


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Bounds for one delivery: attempts, per-retry delay, total time, Retry-After cap."""

    max_attempts: int = 8  # first attempt included
    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    max_total_s: float = 900.0  # from the first attempt until we give up, waits included
    max_retry_after_s: float = 300.0  # a longer Retry-After is waited for this long only

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name in ("base_delay_s", "max_delay_s", "max_total_s", "max_retry_after_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite, non-negative number")

    @property
    def _backoff(self) -> Backoff:
        return Backoff(self.base_delay_s, self.max_delay_s)

    def ceiling(self, retry: int) -> float:
        """Upper bound of the jittered delay before retry number ``retry`` (0-based)."""
        return self._backoff.ceiling(retry)

    def backoff(self, retry: int, rand: Callable[[], float]) -> float:
        """Full jitter: uniform in ``[0, ceiling(retry)]`` given ``rand()`` in ``[0, 1]``."""
        return self._backoff.delay(retry, rand)

    def delay(
        self, retry: int, rand: Callable[[], float], retry_after: float | None = None
    ) -> float:
        """The wait before retry ``retry``: backoff, but never less than a (capped) Retry-After."""
        return self._backoff.delay(retry, rand, retry_after, self.max_retry_after_s)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), else None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())
