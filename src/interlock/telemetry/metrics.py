"""Prometheus metrics, correct across ``serve --workers N`` processes.

With several worker processes ``PROMETHEUS_MULTIPROC_DIR`` is set by ``interlock serve``
before any worker starts, prometheus_client then keeps values in per-process files and
``/metrics`` aggregates them. Label values come from fixed sets (routes, configured
aliases and deployments, status codes) or from what operators name (key ids, users,
teams, the feature tags declared on a key; capped per scope and per tenant), never from
raw client input.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _mp

from interlock.telemetry.labels import LabelCap
from interlock.telemetry.requestinfo import current as _current_request

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip
_OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)  # fmt: skip
_COST_BUCKETS = (
    0.0, 0.000001, 0.00001, 0.0001, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
)  # fmt: skip


class Metrics:
    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        enabled: bool = True,
        max_label_values: int = 50,
        max_label_values_per_tenant: int | None = None,
    ) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # False (telemetry.metrics: false): the request path records nothing; the
        # background gauges (queue, circuits, budgets) are still kept.
        self.enabled = enabled
        self.caps = {
            s: LabelCap(max_label_values, max_label_values_per_tenant)
            for s in ("key", "user", "team", "feature")
        }
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._attempt_children: dict[tuple[str, str, str], Any] = {}
        self._token_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._ttft_children: dict[str, Any] = {}
        # In multiprocess mode metrics live in files, not in a registry of ours.
        reg = None if self.multiprocess else (registry or CollectorRegistry())
        self._registry = reg
        kw = {"registry": reg} if reg is not None else {"registry": None}
        self.requests = Counter(
            "interlock_requests_total",
            "HTTP requests answered, by route, model and status.",
            ["route", "model", "status"],
            **kw,
        )
        self.latency = Histogram(
            "interlock_request_duration_seconds",
            "Time from request received to response complete.",
            ["route", "model", "status"],
            buckets=_LATENCY_BUCKETS,
            **kw,
        )
        self.upstream_latency = Histogram(
            "interlock_upstream_duration_seconds",
            "Time per upstream attempt (to full answer, or to first chunk for streams).",
            ["provider", "deployment", "outcome"],
            buckets=_LATENCY_BUCKETS,
            **kw,
        )
        self.ttft = Histogram(
            "interlock_time_to_first_token_seconds",
            "Time from request received to first streamed chunk sent.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            **kw,
        )
        self.tokens = Counter(
            "interlock_tokens_total",
            "Tokens processed, by model, deployment and direction.",
            ["model", "deployment", "direction"],
            **kw,
        )
        self.in_flight = Gauge(
            "interlock_in_flight_requests",
            "Requests being handled right now.",
            ["route"],
            registry=reg,
            multiprocess_mode="livesum",
        )

        self.retries = Counter(
            "interlock_retries_total",
            "Attempts after the first, by deployment tried and the error that caused it.",
            ["deployment", "reason"],
            **kw,
        )
        self.fallbacks = Counter(
            "interlock_fallbacks_total",
            "Requests answered by a fallback alias, by alias, fallback and error class.",
            ["model", "fallback", "reason"],
            **kw,
        )
        self.hedges = Counter(
            "interlock_hedges_total",
            "Hedged attempts, by alias and outcome (won, lost, skipped).",
            ["model", "outcome"],
            **kw,
        )
        self.circuit_state = Gauge(
            "interlock_circuit_state",
            "Circuit breaker state per deployment: 0 closed, 1 half-open, 2 open.",
            ["deployment"],
            registry=reg,
            multiprocess_mode="max",
        )
        self.circuit_transitions = Counter(
            "interlock_circuit_transitions_total",
            "Circuit breaker transitions, by deployment and new state.",
            ["deployment", "state"],
            **kw,
        )
        self.degradation_level = Gauge(
            "interlock_degradation_level",
            "Degradation level: 0 full, 1 limited, 2 cached, 3 minimal.",
            registry=reg,
            multiprocess_mode="max",
        )

        self.cache_hits = Counter(
            "interlock_cache_hits_total",
            "Requests answered from the cache, by model and tier (hit-l1/l2/l3, hit-coalesced).",
            ["model", "tier"],
            **kw,
        )
        self.affinity_hits = Counter(
            "interlock_prompt_affinity_total",
            "Requests sent to the deployment holding their prompt prefix (prompt_affinity).",
            ["model"],
            **kw,
        )
        # Tier names come from the configuration (bounded), like aliases.
        self.tier_routes = Counter(
            "interlock_tier_routed_total",
            "Requests of a tiered alias, by alias and the tier chosen (docs/routing.md).",
            ["model", "tier"],
            **kw,
        )
        self.tier_escalations = Counter(
            "interlock_tier_escalations_total",
            "Answers retried on the next tier up, by alias, from/to tier and failed check.",
            ["model", "from_tier", "to_tier", "check"],
            **kw,
        )
        self.semantic_rejections = Counter(
            "interlock_cache_semantic_rejections_total",
            "Semantic candidates above the threshold that a guard refused, by reason.",
            ["reason"],
            **kw,
        )

        # Jobs. Depth and age are read from the shared queue by every process, so the
        # processes agree and "livemax" (not a sum) is the right aggregate.
        self.job_queue_depth = Gauge(
            "interlock_jobs_queue_depth",
            "Queued jobs (runnable or scheduled), by priority.",
            ["priority"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.job_oldest_age = Gauge(
            "interlock_jobs_oldest_queued_age_seconds",
            "How long the longest-waiting runnable job has waited.",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.jobs_finished = Counter(
            "interlock_jobs_finished_total",
            "Jobs finished by this process's workers (and cancellations), by status.",
            ["status"],
            **kw,
        )
        self.job_wait = Histogram(
            "interlock_jobs_wait_seconds",
            "Time a job waited from runnable (queued, or due after a backoff) to started.",
            buckets=_LATENCY_BUCKETS,
            **kw,
        )
        self.webhook_deliveries = Counter(
            "interlock_webhook_deliveries_total",
            "Job webhook deliveries, by outcome (delivered, failed, disabled, refused).",
            ["outcome"],
            **kw,
        )
        self._job_priorities: set[str] = set()
        self._init_observability(reg, kw)

    # -- observability: errors, cost, capacity, waste, overhead (issue 7) -----------

    def _init_observability(self, reg: CollectorRegistry | None, kw: dict[str, Any]) -> None:
        self.errors = Counter(
            "interlock_errors_total",
            "Failed requests by route and error type (client, upstream_4xx, upstream_5xx, "
            "timeout, rate_limited, budget, circuit_open, degraded, internal).",
            ["route", "type"],
            **kw,
        )
        self.cache_misses = Counter(
            "interlock_cache_misses_total",
            "Cache lookups that found nothing (the request went upstream), by model.",
            ["model"],
            **kw,
        )
        self.cache_saved = Counter(
            "interlock_cache_saved_usd_total",
            "Money cache hits saved: what the cached answer cost when it was bought.",
            ["model"],
            **kw,
        )
        self.spend = Counter(
            "interlock_spend_usd_total",
            "Money spent (USD), by model alias and deployment.",
            ["model", "deployment"],
            **kw,
        )
        self.spend_per_request = Histogram(
            "interlock_request_cost_usd",
            "Cost of one request (USD), by model alias; cache hits cost 0.",
            ["model"],
            buckets=_COST_BUCKETS,
            **kw,
        )
        self.tenant_spend = Counter(
            "interlock_tenant_spend_usd_total",
            "Money spent (USD) per key, user, team or feature tag; subjects past "
            "telemetry.max_label_values are counted as 'other'.",
            ["scope", "subject"],
            **kw,
        )
        self.tenant_tokens = Counter(
            "interlock_tenant_tokens_total",
            "Tokens per key, user, team or feature tag and direction (capped like spend).",
            ["scope", "subject", "direction"],
            **kw,
        )
        self.tenant_requests = Counter(
            "interlock_tenant_requests_total",
            "Requests that reached accounting per key, user, team or feature, by outcome "
            "(ok; error: 5xx; refused: 4xx such as budget or rate limit).",
            ["scope", "subject", "outcome"],
            **kw,
        )
        budget_labels = ["budget", "scope", "subject", "window"]
        self.budget_spent = Gauge(
            "interlock_budget_spent_usd",
            "Spend in the budget's current window (USD).",
            budget_labels,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.budget_remaining = Gauge(
            "interlock_budget_remaining_usd",
            "What the hard limit still allows in the current window (USD); "
            "budgets without a limit have no series.",
            budget_labels,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.budget_planned = Gauge(
            "interlock_budget_planned_usd",
            "The planned (alert-only) budget of the window (USD).",
            budget_labels,
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.deployment_in_flight = Gauge(
            "interlock_deployment_in_flight",
            "Upstream calls in progress, by deployment.",
            ["deployment"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.deployment_capacity = Gauge(
            "interlock_deployment_capacity",
            "Configured concurrent calls per deployment and process (max_concurrency; "
            "0: unlimited). Utilisation = in_flight / (capacity x processes).",
            ["deployment"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.waste = Counter(
            "interlock_waste_total",
            "Work that bought nothing: retried and failed upstream attempts, streams cut "
            "short, budget reservations that expired unsettled.",
            ["kind"],
            **kw,
        )
        self.overhead = Histogram(
            "interlock_gateway_overhead_seconds",
            "Time the gateway itself added: request time minus upstream time (non-streamed), "
            "or time to first token minus upstream time to first byte (streamed).",
            ["route"],
            buckets=_OVERHEAD_BUCKETS,
            **kw,
        )
        self.recovery = Histogram(
            "interlock_circuit_recovery_seconds",
            "Outage length: time from a deployment's circuit opening to closing again.",
            ["deployment"],
            buckets=_LATENCY_BUCKETS,
            **kw,
        )
        self.alerts_firing = Gauge(
            "interlock_alerts_firing",
            "Alerts firing now, by rule and severity (1 firing, 0 not).",
            ["rule", "severity"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.alert_transitions = Counter(
            "interlock_alert_transitions_total",
            "Alert state changes, by rule, severity and new state (firing, resolved).",
            ["rule", "severity", "state"],
            **kw,
        )
        self._error_children: dict[tuple[str, str], Any] = {}
        self._overhead_children: dict[str, Any] = {}
        self._opened_at: dict[str, float] = {}
        self._busy_children: dict[str, Any] = {}
        self._spend_children: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._tenant_children: dict[
            tuple[str, str, str, str | None], tuple[Any, Any, Any, Any]
        ] = {}

    def declare_deployments(self, capacities: dict[str, int | None]) -> None:
        """Series for every deployment from the start (closed circuit, idle), so a
        dashboard shows them before their first transition."""
        for name, cap in capacities.items():
            self.circuit_state.labels(name).set(0)
            self.deployment_capacity.labels(name).set(cap or 0)
            self.deployment_in_flight.labels(name).inc(0)

    def upstream_busy(self, deployment: str, delta: int) -> None:
        if not self.enabled:
            return
        child = self._busy_children.get(deployment)
        if child is None:
            child = self._busy_children[deployment] = self.deployment_in_flight.labels(deployment)
        child.inc(delta)

    def observe_error(self, route: str, kind: str) -> None:
        if not self.enabled:
            return
        key = (route, kind)
        child = self._error_children.get(key)
        if child is None:
            child = self._error_children[key] = self.errors.labels(route, kind)
        child.inc()

    def observe_overhead(self, route: str, seconds: float) -> None:
        if not self.enabled:
            return
        child = self._overhead_children.get(route)
        if child is None:
            child = self._overhead_children[route] = self.overhead.labels(route)
        child.observe(max(0.0, seconds))

    def cache_miss(self, model: str) -> None:
        if self.enabled:
            self.cache_misses.labels(model).inc()

    def wasted(self, kind: str, n: int = 1) -> None:
        if self.enabled:
            self.waste.labels(kind).inc(n)

    def observe_spend(
        self,
        *,
        model: str,
        deployment: str,
        cost_usd: float,
        saved_usd: float,
        prompt: int,
        completion: int,
        outcome: str,
        subjects: Iterable[tuple[str, str | None]],
        tenant: str | None = None,
    ) -> None:
        """One accounted request: money and tokens by model and by (capped) subject.
        ``outcome`` is ok, error (the gateway or upstream failed: 5xx) or refused (4xx).
        ``subjects`` are operator-made names only (key id, user, team, the key's declared
        feature tags); ``tenant`` (team, else key) is charged for the label slots its new
        subjects take (telemetry.max_label_values_per_tenant)."""
        if not self.enabled:
            return
        # Children are cached: labels() takes a lock and builds a tuple on every call.
        per_model = self._spend_children.get((model, deployment))
        if per_model is None:
            per_model = self._spend_children[(model, deployment)] = (
                self.spend.labels(model, deployment),
                self.cache_saved.labels(model),
                self.spend_per_request.labels(model),
            )
        if cost_usd:
            per_model[0].inc(cost_usd)
        if saved_usd:
            per_model[1].inc(saved_usd)
        per_model[2].observe(cost_usd)
        for scope, raw in subjects:
            if raw is None:
                continue
            key = (scope, raw, outcome, tenant)
            c = self._tenant_children.get(key)
            if c is None:
                subject = self.caps[scope].label(raw, tenant)
                c = self._tenant_children[key] = (
                    self.tenant_requests.labels(scope, subject, outcome),
                    self.tenant_spend.labels(scope, subject),
                    self.tenant_tokens.labels(scope, subject, "prompt"),
                    self.tenant_tokens.labels(scope, subject, "completion"),
                )
            c[0].inc()
            if cost_usd:
                c[1].inc(cost_usd)
            if prompt:
                c[2].inc(prompt)
            if completion:
                c[3].inc(completion)

    def set_budget(
        self,
        labels: tuple[str, str, str, str],
        spent: float,
        remaining: float | None,
        planned: float | None,
    ) -> None:
        self.budget_spent.labels(*labels).set(spent)
        if remaining is not None:
            self.budget_remaining.labels(*labels).set(remaining)
        if planned is not None:
            self.budget_planned.labels(*labels).set(planned)

    def set_alert(self, rule: str, severity: str, firing: bool, changed: bool) -> None:
        self.alerts_firing.labels(rule, severity).set(1 if firing else 0)
        if changed:
            self.alert_transitions.labels(rule, severity, "firing" if firing else "resolved").inc()

    def collect(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of every process as {(name, sorted labels): value}: what the alert
        engine reads, so its verdicts agree with /metrics across worker processes."""
        if self.multiprocess:
            registry = CollectorRegistry()
            _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            assert self._registry is not None
            registry = self._registry
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in registry.collect():
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    @property
    def registry(self) -> CollectorRegistry | None:
        """This object's registry (None in multiprocess mode, where files hold values)."""
        return self._registry

    def set_job_queue(self, by_priority: dict[int, int], oldest_age_s: float | None) -> None:
        """Publish the queue's depth; priorities that emptied are set to 0, not left stale."""
        current = {str(p): n for p, n in by_priority.items()}
        for label in self._job_priorities - current.keys():
            self.job_queue_depth.labels(label).set(0)
        for label, n in current.items():
            self.job_queue_depth.labels(label).set(n)
        self._job_priorities |= current.keys()
        self.job_oldest_age.set(oldest_age_s or 0.0)

    def job_finished(self, status: str) -> None:
        self.jobs_finished.labels(status).inc()

    def job_started(self, waited_s: float) -> None:
        self.job_wait.observe(max(0.0, waited_s))

    def webhook_delivery(self, outcome: str) -> None:
        self.webhook_deliveries.labels(outcome).inc()

    def observe_request(self, route: str, model: str, status: int, seconds: float) -> None:
        if not self.enabled:
            return
        # Label lookups are cached: the label sets are bounded by construction.
        key = (route, model, status)
        children = self._request_children.get(key)
        if children is None:
            code = str(status)
            children = (
                self.requests.labels(route, model, code),
                self.latency.labels(route, model, code),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_attempt(self, provider: str, deployment: str, outcome: str, seconds: float) -> None:
        info = _current_request()
        if info is not None:
            info.upstream_s += seconds  # for the gateway-overhead histogram
        if not self.enabled:
            return
        if outcome != "ok":
            self.waste.labels("failed_call").inc()
        key = (provider, deployment, outcome)
        child = self._attempt_children.get(key)
        if child is None:
            child = self._attempt_children[key] = self.upstream_latency.labels(*key)
        child.observe(seconds)

    def observe_tokens(self, model: str, deployment: str, prompt: int, completion: int) -> None:
        if not self.enabled:
            return
        key = (model, deployment)
        children = self._token_children.get(key)
        if children is None:
            children = self._token_children[key] = (
                self.tokens.labels(model, deployment, "prompt"),
                self.tokens.labels(model, deployment, "completion"),
            )
        if prompt:
            children[0].inc(prompt)
        if completion:
            children[1].inc(completion)

    def observe_ttft(self, model: str, seconds: float) -> None:
        info = _current_request()
        if info is not None and info.upstream_s:
            self.observe_overhead(info.route, seconds - info.upstream_s)
            info.overhead_done = True
        if not self.enabled:
            return
        child = self._ttft_children.get(model)
        if child is None:
            child = self._ttft_children[model] = self.ttft.labels(model)
        child.observe(seconds)

    def circuit_transition(self, deployment: str, state: str, value: int) -> None:
        self.circuit_state.labels(deployment).set(value)
        self.circuit_transitions.labels(deployment, state).inc()
        now = time.monotonic()
        if state == "open":
            self._opened_at.setdefault(deployment, now)
        elif state == "closed" and deployment in self._opened_at:
            self.recovery.labels(deployment).observe(now - self._opened_at.pop(deployment))

    def retry(self, deployment: str, reason: str) -> None:
        self.retries.labels(deployment, reason).inc()
        self.waste.labels("retry").inc()

    def fallback(self, model: str, fallback: str, reason: str) -> None:
        self.fallbacks.labels(model, fallback, reason).inc()

    def hedge(self, model: str, outcome: str) -> None:
        self.hedges.labels(model, outcome).inc()

    def cache_hit(self, model: str, status: str) -> None:
        if not self.enabled:
            return
        self.cache_hits.labels(model, status).inc()

    def affinity_routed(self, model: str) -> None:
        self.affinity_hits.labels(model).inc()

    def tier_routed(self, model: str, tier: str) -> None:
        self.tier_routes.labels(model, tier).inc()

    def tier_escalated(self, model: str, from_tier: str, to_tier: str, check: str) -> None:
        self.tier_escalations.labels(model, from_tier, to_tier, check).inc()

    def semantic_rejected(self, reason: str) -> None:
        # Reasons come from the matcher's fixed vocabulary; cap length all the same.
        self.semantic_rejections.labels(reason[:32]).inc()

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess:
            registry = CollectorRegistry()
            _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        assert self._registry is not None
        return generate_latest(self._registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Called by the supervisor when a worker exits (multiprocess mode)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]
