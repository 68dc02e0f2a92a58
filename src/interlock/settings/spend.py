"""Money: budgets, rate limits, unknown prices and how admission behaves without Redis."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from interlock.settings.base import SettingsModel


def _check_tz(name: str | None) -> None:
    if name is None:
        return
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown time zone (use an IANA name such as 'Europe/Berlin')") from None


BudgetScope = Literal["key", "user", "team", "tag", "global"]


BudgetWindow = Literal["daily", "weekly", "monthly", "lifetime"]


class BudgetRule(SettingsModel):
    scope: BudgetScope
    subject: str | None = None  # the key id, user, team or tag; None for global
    window: BudgetWindow = "monthly"
    # At most a billion dollars (storage.budgets.MAX_USD: the columns and Redis counters).
    limit_usd: float | None = Field(default=None, ge=0, le=1e9)  # hard: refused once reached
    budget_usd: float | None = Field(default=None, ge=0, le=1e9)  # planned: alerts only
    timezone: str | None = None  # default: spend.timezone

    @model_validator(mode="after")
    def _subject(self) -> BudgetRule:
        _check_tz(self.timezone)
        if (self.scope == "global") != (self.subject is None):
            raise ValueError("subject is required, except for scope 'global' which has none")
        if self.limit_usd is None and self.budget_usd is None:
            raise ValueError("set limit_usd (hard limit), budget_usd (planned), or both")
        return self


class UnknownPriceSettings(SettingsModel):
    action: Literal["block", "allow"] = "block"
    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)


class RateLimitSettings(SettingsModel):
    scope: Literal["key", "user", "team", "model", "global"]
    subject: str | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    max_concurrency: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _subject(self) -> RateLimitSettings:
        if (self.scope == "global") != (self.subject is None):
            raise ValueError("subject is required, except for scope 'global' which has none")
        return self


class SpendSettings(SettingsModel):
    timezone: str = "UTC"  # calendar windows (daily/weekly/monthly) are aligned in it

    @model_validator(mode="after")
    def _tz(self) -> SpendSettings:
        _check_tz(self.timezone)
        return self

    budgets: tuple[BudgetRule, ...] = ()
    rate_limits: tuple[RateLimitSettings, ...] = ()
    unknown_price: UnknownPriceSettings = Field(default_factory=UnknownPriceSettings)
    # The output cap the gateway sets on a request without max_tokens that a hard limit
    # applies to (smaller when the budget's remainder or the model allow less).
    default_max_output_tokens: int = Field(default=4096, ge=1)
    # When the shared state (Redis) cannot be reached: refuse (closed) or admit (open).
    hard_limits_on_state_error: Literal["fail_closed", "fail_open"] = "fail_closed"
    rate_limits_on_state_error: Literal["fail_closed", "fail_open"] = "fail_open"
    retention_days: int = Field(default=90, ge=1)
    ledger_flush_interval_s: float = Field(default=0.2, gt=0)
    # A reservation not settled within this is charged at its reserved amount (a crashed
    # replica's holds); a late settle corrects it to the actual cost.
    reservation_hold_s: float = Field(default=900.0, gt=0)
    # While Redis is unreachable, each process may admit up to this much worst-case spend
    # per hard-limited budget on its own (within the counter it last saw), charged into the
    # counters when Redis is back. 0: strict, refuse (503 budget_state_unavailable).
    state_unavailable_allowance_usd: float = Field(default=0.0, ge=0, le=1_000_000)
    # Settlements waiting for Redis, per process; past it one is dropped (its hold is then
    # charged at the reserved amount when it expires).
    settle_queue_max: int = Field(default=100_000, ge=1)
    # Budgets created through the admin API reach every process within this.
    budget_reload_s: float = Field(default=2.0, gt=0, le=300)
    # fail_open is bounded: while Redis is down each process enforces this share of
    # every rate limit on its own (spend/limits.py).
    rate_limits_local_share: float = Field(default=1.0, gt=0, le=1)
