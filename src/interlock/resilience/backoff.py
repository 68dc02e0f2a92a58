"""How long to wait before trying again: exponential, capped, jittered, at least Retry-After.

The one home of this mechanism. Three callers, each with its own bounds and jitter:

* the request path's retries (``routing/attempts.py``, :func:`interlock.resilience.retry.backoff_s`)
  and webhook redelivery (``webhooks/schedule.py``) use **full** jitter, a uniform draw
  from ``[0, ceiling]``: of the common schemes the one that spreads a herd of retries
  widest, so a provider or receiver that comes back is not hit by all of them at once;
* job retries (``jobs/worker.py``) use **equal** jitter, ``ceiling / 2`` plus a uniform
  half: a job goes back to a shared queue and should never come straight back.

``retry`` counts from 0 (the wait before the first retry is ``base_s`` at most). The
exponent is capped, so a huge count cannot overflow a float. ``rand`` is injected
(``random.random`` in production): tests assert exact delays instead of sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Backoff"]

# 2**60 seconds is far beyond any configured maximum; the cap avoids float overflow.
_MAX_EXPONENT = 60


@dataclass(frozen=True, slots=True)
class Backoff:
    base_s: float
    max_s: float
    jitter: Literal["full", "equal"] = "full"

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry number ``retry`` (0-based): ``base·2ⁿ``, capped."""
        return min(self.max_s, self.base_s * 2.0 ** min(max(retry, 0), _MAX_EXPONENT))

    def delay(
        self,
        retry: int,
        rand: Callable[[], float],
        retry_after_s: float | None = None,
        max_retry_after_s: float = math.inf,
    ) -> float:
        """The wait before retry ``retry``: the jittered backoff, but never less than the
        upstream's ``Retry-After`` (itself waited for ``max_retry_after_s`` at most)."""
        top = self.ceiling(retry)
        r = min(max(rand(), 0.0), 1.0)
        wait = r * top if self.jitter == "full" else top / 2 + r * top / 2
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, max_retry_after_s))
        return wait
