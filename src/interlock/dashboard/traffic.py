"""Turn request counters into the dashboard's traffic figures (pure functions).

Only client traffic counts: the gateway's own operational routes (``/metrics``,
``/healthz``, ``/admin/...``, the dashboard and its polling) would otherwise make an
idle gateway look busy and dilute the error rate. Errors are grouped by what an operator
does about them: by the gateway's own error-type counter (``interlock_errors_total``,
typed from the error code) where the metrics have it, else from the status code.
"""

from __future__ import annotations

from typing import Any

from interlock.dashboard.promread import Samples, histogram, quantile

REQUESTS = "interlock_requests_total"
LATENCY = "interlock_request_duration_seconds"
CACHE_HITS = "interlock_cache_hits_total"

# Route templates the gateway serves for itself, not for clients.
_OPS_PREFIXES = ("/admin", "/dashboard", "/metrics", "/healthz", "/readyz", "/openapi.json")
# Routes whose successful answers could have come from the cache.
MODEL_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/messages",
        "/chat/completions",
        "/completions",
        "/embeddings",
    }
)

# (type, what it means): the order the page lists them in.
# The error-type counter's vocabulary (telemetry/errortypes.py), as the page explains it.
TYPED_ERRORS: dict[str, str] = {
    "client": "4xx: the request was invalid or its key was missing, invalid or not allowed",
    "upstream_4xx": "the provider refused the request (4xx upstream)",
    "upstream_5xx": "the provider failed (5xx upstream, or a broken answer)",
    "timeout": "the provider did not answer in time",
    "rate_limited": "429: a rate limit or a deployment's capacity refused the request",
    "budget": "a budget's hard limit refused the request",
    "circuit_open": "every deployment of the model had its circuit open",
    "degraded": "refused by the degradation level",
    "internal": "a gateway fault (see the logs)",
}
ERRORS = "interlock_errors_total"
# Status-based groups, for metrics without the error-type counter.
ERROR_TYPES: tuple[tuple[str, str], ...] = (
    ("client", "4xx: the request was invalid (bad body, unknown model, too large)"),
    ("auth", "401/403: missing, invalid or under-privileged key"),
    ("rate_limited", "429: rate limit or budget refused the request"),
    ("upstream", "502: the provider failed or answered nonsense"),
    ("unavailable", "503: circuit open, degraded or no healthy deployment"),
    ("timeout", "504: the provider did not answer in time"),
    ("internal", "other 5xx: a gateway fault (see the logs)"),
    ("client_closed", "499: the client went away before the answer"),
)


def is_client_route(route: str) -> bool:
    return not route.startswith(_OPS_PREFIXES)


def error_type(status: int) -> str | None:
    """The error group of an HTTP status (None: not an error)."""
    if status < 400:
        return None
    if status == 499:
        return "client_closed"
    if status in (401, 403):
        return "auth"
    if status == 429:
        return "rate_limited"
    if status < 500:
        return "client"
    return {502: "upstream", 503: "unavailable", 504: "timeout"}.get(status, "internal")


def _status(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def traffic(samples: Samples, typed_errors: bool | None = None) -> dict[str, Any]:
    """Cumulative totals since the processes started; the page derives rates from them.

    ``typed_errors``: whether the gateway counts errors by type (None: judge from the
    samples; a multiprocess registry shows the counter only after its first error).
    """
    total = 0.0
    ok_model = 0.0
    errors = {name: 0.0 for name, _ in ERROR_TYPES}
    by_status: dict[str, float] = {}
    kept: list[dict[str, str]] = []
    for labels, v in samples.rows(REQUESTS):
        route = labels.get("route", "")
        if not is_client_route(route):
            continue
        kept.append(labels)
        total += v
        code = _status(labels.get("status", "0"))
        by_status[str(code)] = by_status.get(str(code), 0.0) + v
        kind = error_type(code)
        if kind is not None:
            errors[kind] += v
        elif route in MODEL_ROUTES:
            ok_model += v
    if typed_errors is None:
        typed_errors = "interlock_errors" in samples.families or bool(samples.rows(ERRORS))
    if typed_errors:
        errors = {name: 0.0 for name in TYPED_ERRORS}
        for labels, v in samples.rows(ERRORS):
            if is_client_route(labels.get("route", "")):
                kind = labels.get("type", "internal")
                errors[kind] = errors.get(kind, 0.0) + v
        meanings = TYPED_ERRORS
    else:
        meanings = dict(ERROR_TYPES)
    hist = histogram(samples, LATENCY, kept)
    hits = samples.sum_by(CACHE_HITS, "tier")
    hits_total = sum(hits.values())
    return {
        "requests_total": int(total),
        "by_status": {k: int(v) for k, v in sorted(by_status.items())},
        "errors_total": int(sum(errors.values())),
        "errors_by_type": {k: int(v) for k, v in errors.items()},
        "error_types": [
            {"type": k, "meaning": meanings.get(k, "errors of this type")} for k in errors
        ],
        "in_flight": int(samples.total("interlock_in_flight_requests")),
        "latency": {
            "bounds": [b if b != float("inf") else "+Inf" for b in hist.bounds],
            "counts": [int(c) for c in hist.counts],
            "count": int(hist.total),
            "sum_s": hist.sum,
            # Since start; the page shows the recent window from bucket differences.
            "p50_ms": _ms(quantile(0.50, hist.bounds, hist.counts)),
            "p95_ms": _ms(quantile(0.95, hist.bounds, hist.counts)),
            "p99_ms": _ms(quantile(0.99, hist.bounds, hist.counts)),
        },
        "cache": {
            "hits_total": int(hits_total),
            "hits_by_tier": {k: int(v) for k, v in sorted(hits.items())},
            "answered_total": int(ok_model),  # 2xx answers on model routes, hits included
            "hit_rate": min(1.0, hits_total / ok_model) if ok_model else None,
        },
        "tokens": {
            k: int(v) for k, v in samples.sum_by("interlock_tokens_total", "direction").items()
        },
        "reliability": {
            "retries_total": int(samples.total("interlock_retries_total")),
            "fallbacks_total": int(samples.total("interlock_fallbacks_total")),
            "hedges_total": int(samples.total("interlock_hedges_total")),
        },
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
