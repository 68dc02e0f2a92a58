"""/metrics counts exactly what happened, summed over two worker processes.

A scripted mix (cache misses and hits, client errors, an upstream 5xx, retries, a
fallback, paid requests under a virtual key with a user, a team and a feature tag) goes
through `interlock serve --workers 2`; every counter and the cost histogram's buckets
must move by exactly the scripted amounts, whichever worker served each request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config
from tests.support.metrics import scrape, value

ROUTE = "/v1/chat/completions"


@pytest.fixture(scope="module")
def gw2(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("metrics2")
    cfg = sim_config(sim_url, work / "state")
    cfg["models"].update(
        {
            # One dead deployment and no retries: the fallback answers.
            "fb": {
                "deployments": ["dead-chat"],
                "retry": {"max_attempts": 1},
                "fallbacks": [{"models": ["chat"], "on": ["server_error", "timeout"]}],
            },
            "big": {"deployments": ["sim-large"], "retry": {"max_attempts": 1}},
        }
    )
    # The SQL tier is shared by both workers, so a repeat is a hit whichever one answers.
    cfg["cache"] = {"memory": {"enabled": False}, "sql": {"enabled": True}}
    gw = GatewayProcess(cfg, work, workers=2).start()
    try:
        yield gw
    finally:
        gw.stop()


def _chat(
    c: httpx.Client, model: str, text: str, key: str = MASTER_KEY, **extra: object
) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    return c.post(ROUTE, json=body, headers={"authorization": f"Bearer {key}",
                                              "x-interlock-tags": "search"})  # fmt: skip


def test_a_scripted_mix_is_counted_exactly_across_two_workers(
    gw2: GatewayProcess, sim: SimControl
) -> None:
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=gw2.url, headers=admin, timeout=30) as c:
        # The feature tag is declared on the key: only declared tags become labels.
        r = c.post(
            "/admin/keys", json={"name": "m", "user": "alice", "team": "red", "tags": ["search"]}
        )
        assert r.status_code == 201, r.text
        key = r.json()["key"]
        before = scrape(c.get("/metrics").text)

        costs: list[Decimal] = []
        # 3 paid misses, each then repeated: 3 cache hits at $0.
        for i in range(3):
            miss = _chat(c, "chat", f"metrics mix {i}", key, temperature=0)
            assert miss.status_code == 200 and miss.headers["x-interlock-cache"] == "miss"
            costs.append(Decimal(miss.headers["x-interlock-cost-usd"]))
            time.sleep(0.5)  # the answer is stored off the request path
            hit = _chat(c, "chat", f"metrics mix {i}", key, temperature=0)
            assert hit.headers["x-interlock-cache"].startswith("hit-"), hit.headers
        # 2 client errors that never reach a provider.
        assert _chat(c, "chat", "", key, messages=[]).status_code == 400
        assert _chat(c, "no-such-model", "x", key).status_code == 404
        # 1 upstream 5xx (no retry allowed on "big").
        sim.set_faults(
            [{"type": "status", "status": 500, "count": 1, "match": {"model": "sim-large"}}]
        )
        assert _chat(c, "big", "boom", key).status_code == 502
        sim.set_faults([])
        # 2 fallbacks: fb's only deployment is down, "chat" answers (no cache: temperature 1).
        for i in range(2):
            fb = _chat(c, "fb", f"fallback {i}", key, temperature=1)
            assert fb.status_code == 200, fb.text
            costs.append(Decimal(fb.headers["x-interlock-cost-usd"]))
        after = scrape(c.get("/metrics").text)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    def total(name: str, **labels: str) -> float:
        """Summed over series matching ``labels`` (others free)."""
        want = set(labels.items())
        return sum(
            v - before.get(k, 0.0) for k, v in after.items() if k[0] == name and want <= set(k[1])
        )

    assert delta("interlock_requests_total", route=ROUTE, model="chat", status="200") == 6
    assert delta("interlock_requests_total", route=ROUTE, model="fb", status="200") == 2
    assert delta("interlock_requests_total", route=ROUTE, model="big", status="502") == 1
    assert delta("interlock_errors_total", route=ROUTE, type="client") == 2
    assert delta("interlock_errors_total", route=ROUTE, type="upstream_5xx") == 1
    assert total("interlock_errors_total") == 3
    assert delta("interlock_cache_misses_total", model="chat") == 3
    assert total("interlock_cache_hits_total", model="chat") == 3
    assert (
        delta("interlock_fallbacks_total", model="fb", fallback="chat", reason="server_error") == 2
    )
    assert total("interlock_retries_total") == 0
    assert delta("interlock_waste_total", kind="failed_call") == 3  # 2 dead-chat, 1 sim-large
    # Latency histogram: every request in the +Inf bucket, and count agrees.
    assert delta("interlock_request_duration_seconds_bucket", route=ROUTE, model="chat",
                 status="200", le="+Inf") == 6  # fmt: skip
    assert delta("interlock_request_duration_seconds_count", route=ROUTE, model="chat",
                 status="200") == 6  # fmt: skip
    # Cost histogram, bucket by bucket: 3 hits and the failed call at $0, 5 paid requests
    # of about $1e-5 each (above the 1e-05 bound, below 1e-04).
    paid, free = 5, 4
    cost_buckets = {
        "0.0": free,
        "1e-06": free,
        "1e-05": free,
        "0.0001": free + paid,
        "+Inf": free + paid,
    }
    for le, n in cost_buckets.items():
        assert total("interlock_request_cost_usd_bucket", le=le) == n, le
    assert total("interlock_request_cost_usd_count") == free + paid
    # Money: the sum of the cost headers, by model and by tenant (key, user, team, feature).
    spent = float(sum(costs))
    assert total("interlock_spend_usd_total") == pytest.approx(spent, rel=1e-9)
    assert total("interlock_request_cost_usd_sum") == pytest.approx(spent, rel=1e-9)
    for scope, subject in (("user", "alice"), ("team", "red"), ("feature", "search")):
        assert delta("interlock_tenant_spend_usd_total", scope=scope, subject=subject) == (
            pytest.approx(spent, rel=1e-9)
        )
        assert (
            delta("interlock_tenant_requests_total", scope=scope, subject=subject, outcome="ok")
            == 8
        )
        assert (
            delta("interlock_tenant_requests_total", scope=scope, subject=subject, outcome="error")
            == 1
        )
    completion = total(
        "interlock_tenant_tokens_total", scope="team", subject="red", direction="completion"
    )
    # Tenant tokens are tokens served (cache hits replay their answer's usage); the
    # upstream counter only counts the 5 answers bought. Every answer here is one size.
    upstream = total("interlock_tokens_total", direction="completion")
    assert upstream > 0 and completion / 8 == upstream / 5
    # Gauges that exist from the start, one series per deployment.
    assert value(after, "interlock_circuit_state", deployment="sim-small") == 0
    assert ("interlock_deployment_capacity", frozenset({("deployment", "sim-small")})) in after
    # Overhead is measured for every request that went upstream: 3 misses, 2 fallbacks, 1 5xx.
    assert total("interlock_gateway_overhead_seconds_count", route=ROUTE) == 6
