"""Metrics, logs, traces, and the alert rules and sinks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from interlock.settings.base import SettingsModel


class LogSettings(SettingsModel):
    # One JSON line per request on stderr (logger "interlock.access"); false: none at all.
    enabled: bool = True
    format: Literal["json", "text"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"
    # Opt-in: the request body (secrets redacted, truncated) in each request line.
    bodies: bool = False
    max_body_chars: int = Field(default=2000, ge=0, le=1_000_000)


class TracingSettings(SettingsModel):
    # Off by default: no span objects at all on the request path.
    enabled: bool = False
    # OTLP/HTTP endpoint, e.g. http://otel-collector:4318 (/v1/traces is appended).
    otlp_endpoint: str | None = None
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    service_name: str = "interlock"
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)


class TelemetrySettings(SettingsModel):
    # false: the request path records no Prometheus metrics (/metrics still answers).
    metrics: bool = True
    # Label values per scope (key, user, team, feature) before the rest become "other".
    max_label_values: int = Field(default=50, ge=1, le=10_000)
    # Of those, the values one tenant (a team, or a key without one) may introduce per
    # scope: past it that tenant's new values are "other", and no one else's.
    max_label_values_per_tenant: int = Field(default=10, ge=1, le=10_000)
    # Set: GET /metrics needs "Authorization: Bearer <token>" (401 without it).
    metrics_token: SecretStr | None = None
    logs: LogSettings = Field(default_factory=LogSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)


AlertMetric = Literal["latency_p95", "error_rate", "queue_depth", "daily_spend"]


class AlertRuleSettings(SettingsModel):
    metric: AlertMetric
    # latency_p95: multiples of the baseline; error_rate: fractions; queue_depth: jobs;
    # daily_spend: fractions of the planned daily budget (budget_usd).
    warning: float = Field(gt=0)
    critical: float = Field(gt=0)
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    route: str | None = None  # latency/error: one route template, e.g. /v1/chat/completions
    team: str | None = None  # daily_spend: only budgets of this team
    window_s: float | None = Field(default=None, gt=0)  # default: alerts.window_s
    baseline_s: float | None = Field(default=None, gt=0)  # latency: set by hand
    for_s: float = Field(default=0.0, ge=0)  # the condition must hold this long

    @model_validator(mode="after")
    def _ordered(self) -> AlertRuleSettings:
        if self.critical < self.warning:
            raise ValueError("critical must not be below warning")
        return self


def _default_alert_rules() -> tuple[AlertRuleSettings, ...]:
    return (
        AlertRuleSettings(metric="latency_p95", warning=2.0, critical=5.0),
        AlertRuleSettings(metric="error_rate", warning=0.01, critical=0.05),
        AlertRuleSettings(metric="queue_depth", warning=1000, critical=10000),
        AlertRuleSettings(metric="daily_spend", warning=1.2, critical=1.5),
    )


class AlertSinkSettings(SettingsModel):
    kind: Literal["webhook", "slack", "log"]
    url: str | None = None  # webhook, slack
    # webhook: Standard Webhooks secret (whsec_...); default: the job webhook secret.
    secret: SecretStr | None = None

    @model_validator(mode="after")
    def _url_when_needed(self) -> AlertSinkSettings:
        if self.kind != "log" and not self.url:
            raise ValueError(f"a {self.kind} sink needs a url")
        return self


class AlertSettings(SettingsModel):
    enabled: bool = True
    interval_s: float = Field(default=15.0, gt=0)
    window_s: float = Field(default=300.0, gt=0)  # the sliding window rules look at
    # Latency baseline: p95 over this much history before the window (unless set by hand).
    baseline_window_s: float = Field(default=3600.0, gt=0)
    cooldown_s: float = Field(default=600.0, ge=0)  # no re-fire of one alert sooner
    min_requests: int = Field(default=20, ge=1)  # fewer in the window: no verdict
    recent: int = Field(default=200, ge=1, le=10_000)  # resolved alerts kept
    rules: tuple[AlertRuleSettings, ...] = Field(default_factory=_default_alert_rules)
    sinks: tuple[AlertSinkSettings, ...] = (AlertSinkSettings(kind="log"),)
    # Hosts/CIDRs alert webhooks may reach although private (e.g. ["127.0.0.1"]).
    allow_hosts: tuple[str, ...] = ()
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
