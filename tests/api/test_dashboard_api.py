"""The dashboard's routes: a public page with a login form, admin-only data, safe files."""

from __future__ import annotations

import httpx

from tests.support.gateway import MASTER_KEY, GatewayProcess
from tests.support.metrics import scrape

MSG = [{"role": "user", "content": "hello dashboard"}]


def test_page_is_a_login_form_with_a_strict_policy(gateway: GatewayProcess) -> None:
    r = httpx.get(gateway.url + "/dashboard")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert 'id="login-form"' in r.text and 'type="password"' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    # No CDN: every script and stylesheet comes from the gateway itself.
    assert "http" not in "".join(
        line for line in r.text.splitlines() if "src=" in line or "href=" in line
    )
    again = httpx.get(gateway.url + "/dashboard", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304


def test_static_files_are_served_from_the_package_only(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.url) as c:
        js = c.get("/dashboard/static/uPlot.iife.min.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        assert "uPlot" in js.text
        assert c.get("/dashboard/static/uPlot.LICENSE").text.startswith("The MIT License")
        assert (
            c.get("/dashboard/static/dashboard.css").headers["content-type"].startswith("text/css")
        )
        assert c.get("/dashboard/static/nope.js").status_code == 404
        assert c.get("/dashboard/static/..%2F..%2Fsettings.py").status_code == 404
        assert c.post("/dashboard/static/dashboard.js").status_code == 405


def test_data_needs_an_admin_key(gateway: GatewayProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    url = gateway.url + "/admin/dashboard/data"
    missing = httpx.get(url)
    assert missing.status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer wrong"}).status_code == 401
    user = new_key(team="t-dash")
    refused = httpx.get(url, headers={"authorization": f"Bearer {user}"})
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "admin_required"
    admin = new_key(admin=True)
    assert httpx.get(url, headers={"authorization": f"Bearer {admin}"}).status_code == 200


def test_data_counts_what_metrics_counts(http: httpx.Client) -> None:
    for _ in range(3):
        assert (
            http.post("/v1/chat/completions", json={"model": "chat", "messages": MSG}).status_code
            == 200
        )
    assert http.post("/v1/chat/completions", json={"model": "chat"}).status_code == 400
    metrics = scrape(http.get("/metrics").text)
    data = http.get("/admin/dashboard/data")
    assert data.status_code == 200 and data.headers["cache-control"] == "no-store"
    sample = data.json()
    t = sample["traffic"]
    client = sum(
        v for (name, labels), v in metrics.items()
        if name == "interlock_requests_total"
        and not dict(labels)["route"].startswith(("/admin", "/metrics", "/healthz", "/readyz", "/dashboard", "/openapi"))
    )  # fmt: skip
    assert t["requests_total"] == client
    assert t["errors_by_type"]["client"] >= 1
    assert t["latency"]["count"] == t["requests_total"]
    assert t["latency"]["p50_ms"] is not None
    assert {c["deployment"] for c in sample["circuits"]} >= {"sim-small", "dead-chat"}
    assert sample["degradation"]["level"] in ("full", "limited", "cached", "minimal")
    assert sample["queue"]["depth"] is not None
    assert {"total_usd", "saved_usd", "by_team", "by_feature", "by_model"} <= set(sample["spend"])


def test_master_key_is_never_in_the_page(gateway: GatewayProcess) -> None:
    assert MASTER_KEY not in httpx.get(gateway.url + "/dashboard").text
