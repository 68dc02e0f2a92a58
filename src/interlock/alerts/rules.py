"""Alert rules: the seed's four defaults, or the operator's, as plain values.

A rule watches one signal (latency p95 against a baseline, error rate, job queue depth,
daily spend against the planned budget) with a warning and a critical threshold, and may
be narrowed to one route (latency, errors) or one team (errors, spend). The same values
drive the in-process engine and the exported Prometheus rules, so both agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from interlock.settings import AlertMetric, AlertSettings

SEVERITIES = ("warning", "critical")

UNITS = {
    "latency_p95": "x baseline",
    "error_rate": "of requests",
    "queue_depth": "jobs",
    "daily_spend": "of the daily budget",
}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    metric: AlertMetric
    warning: float
    critical: float
    window_s: float
    route: str | None = None
    team: str | None = None
    baseline_s: float | None = None
    for_s: float = 0.0

    def threshold(self, severity: str) -> float:
        return self.critical if severity == "critical" else self.warning

    def describe(self, severity: str) -> str:
        t = self.threshold(severity)
        shown = f"{t:g}x baseline" if self.metric == "latency_p95" else _fmt(self.metric, t)
        scope = f" on {self.route}" if self.route else ""
        scope += f" for team {self.team}" if self.team else ""
        return f"{self.metric.replace('_', ' ')}{scope} above {shown}"


def _fmt(metric: str, value: float) -> str:
    if metric in ("error_rate", "daily_spend"):
        return f"{value * 100:g}%"
    return f"{value:g} {UNITS[metric]}"


def format_value(metric: str, value: float) -> str:
    if metric == "latency_p95":
        return f"{value:.2f}x baseline"
    if metric in ("error_rate", "daily_spend"):
        return f"{value * 100:.2f}%"
    return f"{value:g} jobs"


def rules_from(cfg: AlertSettings) -> list[Rule]:
    """The configured rules with defaults filled in; names are unique (a suffix is added
    to a repeated default name)."""
    out: list[Rule] = []
    seen: set[str] = set()
    for r in cfg.rules:
        base = r.name or "_".join(x for x in (r.metric, _slug(r.route), _slug(r.team)) if x)
        name, n = base, 2
        while name in seen:
            name, n = f"{base}_{n}", n + 1
        seen.add(name)
        out.append(
            Rule(
                name=name,
                metric=r.metric,
                warning=r.warning,
                critical=r.critical,
                window_s=r.window_s or cfg.window_s,
                route=r.route,
                team=r.team,
                baseline_s=r.baseline_s,
                for_s=r.for_s,
            )
        )
    return out


def _slug(value: str | None) -> str:
    if not value:
        return ""
    return "".join(c if c.isalnum() else "_" for c in value).strip("_")[:40]
