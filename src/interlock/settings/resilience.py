"""Breakers, retries, the retry budget and the degradation ladder."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interlock.settings.base import SettingsModel


class BreakerSettings(SettingsModel):
    window_s: float = Field(default=30.0, gt=0)
    min_calls: int = Field(default=10, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    consecutive_failures: int = Field(default=5, ge=1)
    slow_call_s: float = Field(default=30.0, gt=0)
    slow_rate: float = Field(default=1.01, gt=0)  # above 1: slow calls alone never trip
    open_s: float = Field(default=5.0, gt=0)
    open_max_s: float = Field(default=120.0, gt=0)
    backoff: float = Field(default=2.0, ge=1)
    half_open_probes: int = Field(default=1, ge=1)
    probe_timeout_s: float = Field(default=10.0, gt=0)


class RetrySettings(SettingsModel):
    max_attempts: int = Field(default=3, ge=1, le=10)
    base_delay_s: float = Field(default=0.05, ge=0)
    max_delay_s: float = Field(default=2.0, ge=0)
    max_retry_after_s: float = Field(default=10.0, ge=0)


class BudgetSettings(SettingsModel):
    ratio: float = Field(default=0.2, ge=0)
    min_per_s: float = Field(default=5.0, ge=0)


class ThresholdSettings(SettingsModel):
    limited: float | None = None
    cached: float | None = None
    minimal: float | None = None


def _default_signals() -> dict[str, ThresholdSettings]:
    return {
        "error_rate": ThresholdSettings(limited=0.10, cached=0.30, minimal=0.60),
        "open_circuit_ratio": ThresholdSettings(limited=0.34, cached=0.67, minimal=1.0),
        "queue_depth": ThresholdSettings(limited=1000, cached=10000),
        "latency_ratio": ThresholdSettings(limited=2.0, cached=5.0),
        "budget_burn": ThresholdSettings(limited=1.2, cached=1.5),
    }


class DegradationSettings(SettingsModel):
    mode: Literal["auto", "full", "limited", "cached", "minimal"] = "auto"
    evaluate_every_s: float = Field(default=1.0, gt=0)
    # Error rate and latency are measured over it; short, so that errors of a cause that has
    # gone away stop counting within seconds (docs/decisions.md: ladder recovery).
    window_s: float = Field(default=5.0, gt=0)
    min_requests: int = Field(default=20, ge=1)  # fewer in the window: error rate not judged
    latency_slo_s: float | None = Field(default=None, gt=0)
    down_after_s: float = Field(default=5.0, ge=0)
    up_after_s: float = Field(default=2.0, ge=0)  # calm needed per level stepped up
    recover_ratio: float = Field(default=0.5, gt=0, le=1)
    max_stale_s: float = Field(default=3600.0, ge=0)
    signals: dict[str, ThresholdSettings] = Field(default_factory=_default_signals)


class ResilienceSettings(SettingsModel):
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    retry_budget: BudgetSettings = Field(default_factory=BudgetSettings)
    degradation: DegradationSettings = Field(default_factory=DegradationSettings)
    # Bounds for a client's x-interlock-timeout header (seconds).
    client_timeout_min_s: float = Field(default=1.0, gt=0)
    client_timeout_max_s: float = Field(default=600.0, gt=0)
