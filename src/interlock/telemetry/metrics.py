"""Prometheus metrics, correct across ``serve --workers N`` processes.

With several worker processes ``PROMETHEUS_MULTIPROC_DIR`` is set by ``interlock serve``
before any worker starts, prometheus_client then keeps values in per-process files and
``/metrics`` aggregates them. Label values come from fixed sets (routes, configured
aliases and deployments, status codes), never from raw client input.
"""

from __future__ import annotations

import os
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

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)  # fmt: skip


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
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
        key = (provider, deployment, outcome)
        child = self._attempt_children.get(key)
        if child is None:
            child = self._attempt_children[key] = self.upstream_latency.labels(*key)
        child.observe(seconds)

    def observe_tokens(self, model: str, deployment: str, prompt: int, completion: int) -> None:
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
        child = self._ttft_children.get(model)
        if child is None:
            child = self._ttft_children[model] = self.ttft.labels(model)
        child.observe(seconds)

    def circuit_transition(self, deployment: str, state: str, value: int) -> None:
        self.circuit_state.labels(deployment).set(value)
        self.circuit_transitions.labels(deployment, state).inc()

    def retry(self, deployment: str, reason: str) -> None:
        self.retries.labels(deployment, reason).inc()

    def fallback(self, model: str, fallback: str, reason: str) -> None:
        self.fallbacks.labels(model, fallback, reason).inc()

    def hedge(self, model: str, outcome: str) -> None:
        self.hedges.labels(model, outcome).inc()

    def cache_hit(self, model: str, status: str) -> None:
        self.cache_hits.labels(model, status).inc()

    def affinity_routed(self, model: str) -> None:
        self.affinity_hits.labels(model).inc()

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
