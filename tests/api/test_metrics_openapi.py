"""/metrics counts what happened; /openapi.json describes the routes that exist."""

from __future__ import annotations

import httpx

from interlock.api import router
from tests.support.metrics import scrape, value

MSG = [{"role": "user", "content": "hi"}]


def test_request_metrics_count_exactly(http: httpx.Client) -> None:
    before = scrape(http.get("/metrics").text)
    for _ in range(3):
        assert (
            http.post("/v1/chat/completions", json={"model": "chat", "messages": MSG}).status_code
            == 200
        )
    assert (
        http.post("/v1/chat/completions", json={"model": "chat", "messages": []}).status_code == 400
    )
    assert (
        http.post("/v1/chat/completions", json={"model": "zzz", "messages": MSG}).status_code == 404
    )
    after = scrape(http.get("/metrics").text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/chat/completions"
    assert delta("interlock_requests_total", route=route, model="chat", status="200") == 3
    assert delta("interlock_requests_total", route=route, model="chat", status="400") == 1
    # An unknown model name is client input: it never becomes a label value.
    assert delta("interlock_requests_total", route=route, model="-", status="404") == 1
    assert (
        delta("interlock_request_duration_seconds_count", route=route, model="chat", status="200")
        == 3
    )
    assert (
        delta(
            "interlock_upstream_duration_seconds_count",
            provider="sim",
            deployment="sim-small",
            outcome="ok",
        )
        == 3
    )
    assert (
        delta(
            "interlock_tokens_total", model="chat", deployment="sim-small", direction="completion"
        )
        > 0
    )
    assert ("interlock_in_flight_requests", frozenset({("route", "all")})) in after


def test_health_and_readiness(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["storage"] is True


def test_openapi_matches_the_router(http: httpx.Client) -> None:
    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    documented = {
        path: sorted(m.upper() for m in ops if m != "parameters")
        for path, ops in doc["paths"].items()
    }
    served = {
        p: m
        for p, m in router.routes().items()
        if p.startswith(
            ("/v1", "/admin", "/healthz", "/readyz", "/metrics", "/openapi", "/dashboard")
        )
    }
    assert documented == served
    assert doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]["required"] == ["model", "messages"]
