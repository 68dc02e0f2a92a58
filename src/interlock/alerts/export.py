"""The alert rules as a Prometheus alerting-rules file and a Grafana dashboard.

Teams that run their own monitoring stack get the same thresholds the built-in engine
uses, written as PromQL over the metrics of telemetry/metrics.py. ``interlock alerts
export`` writes both (deploy/prometheus/alerts.yml, deploy/grafana/interlock-dashboard.json
are generated from the default rules; a test keeps them in step).
"""

from __future__ import annotations

import re
from typing import Any

from interlock.alerts.rules import SEVERITIES, Rule

_METRIC = re.compile(r"\binterlock_[a-z0-9_]+")


def _dur(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m" if s % 60 == 0 else f"{s}s"


def _model_filter(rule: Rule, *extra: str) -> str:
    parts = ['model!="-"', *extra]
    if rule.route:
        parts.append(f'route="{rule.route}"')
    return "{" + ",".join(parts) + "}"


def expression(rule: Rule, baseline_window_s: float) -> str:
    """A PromQL expression whose value is the rule's signal, in the thresholds' unit."""
    w = _dur(rule.window_s)
    if rule.metric == "latency_p95":
        sel = _model_filter(rule)
        p95 = (
            f"histogram_quantile(0.95, sum by (le) "
            f"(rate(interlock_request_duration_seconds_bucket{sel}[{w}])))"
        )
        if rule.baseline_s is not None:
            return f"{p95} / {rule.baseline_s:g}"
        base = (
            f"histogram_quantile(0.95, sum by (le) (rate(interlock_request_duration_seconds_bucket"
            f"{sel}[{_dur(baseline_window_s)}] offset {w})))"
        )
        return f"{p95} / {base}"
    if rule.metric == "error_rate":
        if rule.team:
            sel = f'{{scope="team",subject="{rule.team}"}}'
            err = f'{{scope="team",subject="{rule.team}",outcome="error"}}'
            return (
                f"sum(rate(interlock_tenant_requests_total{err}[{w}])) / "
                f"sum(rate(interlock_tenant_requests_total{sel}[{w}]))"
            )
        five = _model_filter(rule, 'status=~"5.."')
        return (
            f"sum(rate(interlock_requests_total{five}[{w}])) / "
            f"sum(rate(interlock_requests_total{_model_filter(rule)}[{w}]))"
        )
    if rule.metric == "queue_depth":
        return "sum(interlock_jobs_queue_depth)"
    team = f',scope="team",subject="{rule.team}"' if rule.team else ""
    return (
        f'interlock_budget_spent_usd{{window="daily"{team}}} / '
        f'interlock_budget_planned_usd{{window="daily"{team}}}'
    )


def prometheus_rules(rules: list[Rule], baseline_window_s: float) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    for rule in rules:
        expr = expression(rule, baseline_window_s)
        for sev in SEVERITIES:
            threshold = rule.threshold(sev)
            out.append(
                {
                    "alert": f"Interlock_{rule.name}_{sev}",
                    "expr": f"({expr}) > {threshold:g}",
                    "for": _dur(max(rule.for_s, 60.0)),
                    "labels": {"severity": sev, "rule": rule.name, "service": "interlock"},
                    "annotations": {
                        "summary": f"Interlock {sev}: {rule.describe(sev)}",
                        "description": f"{rule.metric} is {{{{ $value }}}} (threshold "
                        f"{threshold:g}); see docs/observability.md#alerts.",
                    },
                }
            )
    return {"groups": [{"name": "interlock", "rules": out}]}


_PANELS: list[tuple[str, list[tuple[str, str]], str]] = [
    ("Requests per second by status", [("sum by (status) (rate(interlock_requests_total[1m]))", "{{status}}")], "reqps"),
    ("Latency p50 / p95 / p99", [
        (f"histogram_quantile({q}, sum by (le) (rate(interlock_request_duration_seconds_bucket{{model!=\"-\"}}[5m])))", f"p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ], "s"),
    ("Time to first token p95", [("histogram_quantile(0.95, sum by (le) (rate(interlock_time_to_first_token_seconds_bucket[5m])))", "p95")], "s"),
    ("Gateway overhead p95", [("histogram_quantile(0.95, sum by (le) (rate(interlock_gateway_overhead_seconds_bucket[5m])))", "p95")], "s"),
    ("Errors by type", [("sum by (type) (rate(interlock_errors_total[5m]))", "{{type}}")], "reqps"),
    ("Cache hit rate", [("sum(rate(interlock_cache_hits_total[5m])) / (sum(rate(interlock_cache_hits_total[5m])) + sum(rate(interlock_cache_misses_total[5m])))", "hit rate")], "percentunit"),
    ("Money saved by the cache (USD/h)", [("sum(rate(interlock_cache_saved_usd_total[1h])) * 3600", "saved")], "currencyUSD"),
    ("Spend per hour by model (USD)", [("sum by (model) (rate(interlock_spend_usd_total[1h])) * 3600", "{{model}}")], "currencyUSD"),
    ("Spend per hour by team (USD)", [("sum by (subject) (rate(interlock_tenant_spend_usd_total{scope=\"team\"}[1h])) * 3600", "{{subject}}")], "currencyUSD"),
    ("Budget spent vs planned", [("interlock_budget_spent_usd", "{{budget}} spent"), ("interlock_budget_planned_usd", "{{budget}} planned")], "currencyUSD"),
    ("Job queue depth", [("sum(interlock_jobs_queue_depth)", "depth")], "short"),
    ("Retries, fallbacks, hedges", [
        ("sum(rate(interlock_retries_total[5m]))", "retries"),
        ("sum(rate(interlock_fallbacks_total[5m]))", "fallbacks"),
        ("sum(rate(interlock_hedges_total[5m]))", "hedges"),
    ], "ops"),
    ("Circuit state per deployment (0 closed, 1 half-open, 2 open)", [("max by (deployment) (interlock_circuit_state)", "{{deployment}}")], "short"),
    ("Degradation level", [("max(interlock_degradation_level)", "level")], "short"),
    ("Upstream utilisation", [("sum by (deployment) (interlock_deployment_in_flight) / sum by (deployment) (interlock_deployment_capacity > 0)", "{{deployment}}")], "percentunit"),
    ("Waste", [("sum by (kind) (rate(interlock_waste_total[5m]))", "{{kind}}")], "ops"),
    ("Alerts firing", [("sum by (rule, severity) (interlock_alerts_firing)", "{{rule}} {{severity}}")], "short"),
]  # fmt: skip


def grafana_dashboard(rules: list[Rule], baseline_window_s: float) -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    for i, (title, targets, unit) in enumerate(_PANELS):
        panels.append(_panel(i + 1, title, targets, unit, i))
    for j, rule in enumerate(rules):
        expr = expression(rule, baseline_window_s)
        panel = _panel(100 + j, f"Alert signal: {rule.name}", [(expr, rule.metric)], "short",
                       len(_PANELS) + j)  # fmt: skip
        panel["fieldConfig"]["defaults"]["thresholds"] = {
            "mode": "absolute",
            "steps": [
                {"color": "green", "value": None},
                {"color": "orange", "value": rule.warning},
                {"color": "red", "value": rule.critical},
            ],
        }
        panel["fieldConfig"]["defaults"]["custom"] = {"thresholdsStyle": {"mode": "line"}}
        panels.append(panel)
    return {
        "title": "Interlock",
        "uid": "interlock-gateway",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "tags": ["interlock", "llm-gateway"],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                }
            ]
        },
        "panels": panels,
    }


def _panel(pid: int, title: str, targets: list[tuple[str, str]], unit: str, pos: int
           ) -> dict[str, Any]:  # fmt: skip
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (pos % 2), "y": 8 * (pos // 2)},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(65 + k), "expr": expr, "legendFormat": legend}
            for k, (expr, legend) in enumerate(targets)
        ],
    }


def metric_names(text: str) -> set[str]:
    """The interlock_* metric names a PromQL text mentions, with histogram/counter
    suffixes kept (``_bucket``, ``_total``) as they appear."""
    return set(_METRIC.findall(text))
