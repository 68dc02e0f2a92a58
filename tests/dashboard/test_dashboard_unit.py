"""The dashboard's arithmetic: percentiles from buckets, error groups, client traffic."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from interlock.dashboard.assets import FILES, asset
from interlock.dashboard.promread import Samples, histogram, quantile
from interlock.dashboard.traffic import error_type, is_client_route, traffic


def test_quantile_interpolates_like_prometheus() -> None:
    bounds = (0.1, 0.2, 0.4, math.inf)
    counts = (10.0, 20.0, 20.0, 20.0)
    assert quantile(0.5, bounds, counts) == pytest.approx(0.1)
    assert quantile(0.75, bounds, counts) == pytest.approx(0.15)
    assert quantile(0.99, bounds, (0.0, 0.0, 0.0, 5.0)) == pytest.approx(0.4)  # +Inf bucket
    assert quantile(0.5, bounds, (0.0, 0.0, 0.0, 0.0)) is None


def test_error_groups() -> None:
    assert error_type(200) is None
    assert [error_type(s) for s in (400, 401, 403, 404, 429, 499, 500, 502, 503, 504)] == [
        "client", "auth", "auth", "client", "rate_limited", "client_closed",
        "internal", "upstream", "unavailable", "timeout",
    ]  # fmt: skip


def test_operational_routes_are_not_traffic() -> None:
    assert is_client_route("/v1/chat/completions") and is_client_route("unmatched")
    for route in ("/metrics", "/admin/dashboard/data", "/dashboard", "/healthz", "/readyz"):
        assert not is_client_route(route)


def _samples(registry: CollectorRegistry) -> Samples:
    out = Samples()
    for family in registry.collect():
        for s in family.samples:
            out.add(s.name, dict(s.labels), float(s.value))
    return out


def test_traffic_sums_client_requests_only() -> None:
    reg = CollectorRegistry()
    req = Counter("interlock_requests_total", "", ["route", "model", "status"], registry=reg)
    lat = Histogram("interlock_request_duration_seconds", "", ["route", "model", "status"],
                    buckets=(0.01, 0.1, 1.0), registry=reg)  # fmt: skip
    hits = Counter("interlock_cache_hits_total", "", ["model", "tier"], registry=reg)
    for route, status, n, secs in (
        ("/v1/chat/completions", "200", 8, 0.005),
        ("/v1/chat/completions", "429", 1, 0.05),
        ("/v1/embeddings", "502", 1, 0.5),
        ("/metrics", "200", 50, 0.001),
    ):
        for _ in range(n):
            req.labels(route, "chat", status).inc()
            lat.labels(route, "chat", status).observe(secs)
    hits.labels("chat", "hit-l1").inc(2)
    t = traffic(_samples(reg))
    assert t["requests_total"] == 10
    assert t["errors_total"] == 2
    assert t["errors_by_type"]["rate_limited"] == 1 and t["errors_by_type"]["upstream"] == 1
    assert t["latency"]["count"] == 10
    assert t["latency"]["p50_ms"] == pytest.approx(6.25)
    assert t["cache"]["hits_total"] == 2 and t["cache"]["hit_rate"] == pytest.approx(0.25)
    merged = histogram(_samples(reg), "interlock_request_duration_seconds")
    assert merged.total == 60


def test_only_listed_files_are_served() -> None:
    for name in FILES:
        item = asset(name)
        assert item is not None and item.body
    assert asset("../assets.py") is None
    assert asset("__init__.py") is None


def test_typed_error_counter_is_preferred() -> None:
    reg = CollectorRegistry()
    req = Counter("interlock_requests_total", "", ["route", "model", "status"], registry=reg)
    errs = Counter("interlock_errors_total", "", ["route", "type"], registry=reg)
    req.labels("/v1/chat/completions", "chat", "429").inc(3)
    errs.labels("/v1/chat/completions", "budget").inc(2)
    errs.labels("/v1/chat/completions", "rate_limited").inc(1)
    errs.labels("/admin/keys", "client").inc(5)  # not client traffic
    t = traffic(_samples(reg))
    assert t["errors_total"] == 3
    assert t["errors_by_type"]["budget"] == 2 and t["errors_by_type"]["rate_limited"] == 1
    assert [e["type"] for e in t["error_types"]][:2] == ["client", "upstream_4xx"]
    # Before the first error a multiprocess registry has no such family: say so explicitly.
    empty = traffic(Samples(), typed_errors=True)
    assert empty["errors_total"] == 0 and "budget" in empty["errors_by_type"]
