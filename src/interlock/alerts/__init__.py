"""The alert engine: rules over a sliding window of metric readings, firing and resolving
alerts with deduplication and cooldown, delivered to webhook, Slack-compatible and log
sinks; the same rules exported for Prometheus and Grafana (docs/observability.md)."""

from interlock.alerts.engine import Alert, AlertEngine
from interlock.alerts.rules import Rule, rules_from
from interlock.alerts.service import AlertService, BudgetReading

__all__ = ["Alert", "AlertEngine", "AlertService", "BudgetReading", "Rule", "rules_from"]
