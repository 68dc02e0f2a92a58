"""Retry decisions: backoff with full jitter, Retry-After, and a retry budget.

Pure functions and a small budget object with an injected clock; the executor applies
them. The budget keeps retries to a share of live traffic (``ratio`` of requests, plus
a small floor per second), so a failing provider is not hammered by its own retries.

What counts against it (routing/attempts.py ``_next``): an attempt that goes back to a
deployment this request already tried, and a hedge's second call. Failing over to a
deployment of the alias not tried yet is free: it adds nothing to the load of the
deployment that failed, and refusing it turned one hung provider into client-facing
504s while a healthy deployment sat idle.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from interlock.resilience.backoff import Backoff


@dataclass(frozen=True, slots=True)
class RetryConfig:
    max_attempts: int = 3  # attempts in total across deployments, first included
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0
    # Wait for a deployment's Retry-After only up to this; beyond it, fail over or give up.
    max_retry_after_s: float = 10.0


def backoff_s(cfg: RetryConfig, retry: int, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**retry)] (retry counts from 0)."""
    return Backoff(cfg.base_delay_s, cfg.max_delay_s).delay(retry, rng.random)


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    ratio: float = 0.2  # retries allowed per request seen
    min_per_s: float = 5.0  # floor, so light traffic can still retry
    max_tokens: float = 100.0


class RetryBudget:
    """Token bucket: each request deposits ``ratio``; each retry withdraws one."""

    def __init__(self, cfg: BudgetConfig, clock: Callable[[], float]) -> None:
        self._cfg = cfg
        self._clock = clock
        self._tokens = cfg.max_tokens
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._cfg.max_tokens, self._tokens + elapsed * self._cfg.min_per_s)

    def on_request(self) -> None:
        self._refill()
        self._tokens = min(self._cfg.max_tokens, self._tokens + self._cfg.ratio)

    def try_spend(self) -> bool:
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def tokens(self) -> float:
        return self._tokens
