"""Failover, breakers, Retry-After and hedging over real HTTP against the simulator."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.resilience.conftest import ADMIN, MSG, ab_config
from tests.support.gateway import GatewayProcess
from tests.support.metrics import scrape, value


def chat(gw: GatewayProcess, client: httpx.Client, **body: object) -> httpx.Response:
    return client.post(
        f"{gw.url}/v1/chat/completions",
        json={"model": "ab", "messages": MSG, **body},
        headers=ADMIN,
    )


def circuit(gw: GatewayProcess, name: str) -> str:
    deps = httpx.get(f"{gw.url}/admin/deployments", headers=ADMIN).json()["data"]
    return next(d["circuit"] for d in deps if d["deployment"] == name)


@pytest.mark.slow
def test_outage_of_a_costs_latency_not_errors(sim_url: str, sim: SimControl, tmp_path: Path,
                                               start_gateway: Callable[..., GatewayProcess]) -> None:  # fmt: skip
    breaker = {"consecutive_failures": 3, "min_calls": 5, "window_s": 10, "open_s": 1.0,
               "open_max_s": 2.0, "half_open_probes": 1}  # fmt: skip
    gw = start_gateway(ab_config(sim_url, tmp_path / "s", resilience={"breaker": breaker}))
    sim.set_faults([{"type": "status", "status": 500, "match": {"model": "sim-a"}}])
    outcomes: list[tuple[int, str]] = []
    transitions: list[str] = []
    with httpx.Client(timeout=10) as client:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 4.0:  # the outage
            r = chat(gw, client)
            outcomes.append((r.status_code, r.headers.get("x-interlock-deployment", "")))
            state = circuit(gw, "A")
            if not transitions or transitions[-1] != state:
                transitions.append(state)
        sim.set_faults([])
        deadline = time.monotonic() + 6
        while circuit(gw, "A") != "closed":  # recovery: probes succeed, breaker closes
            assert time.monotonic() < deadline, transitions
            chat(gw, client)
            time.sleep(0.05)
    ok = sum(1 for status, _ in outcomes if status == 200)
    assert ok / len(outcomes) >= 0.999, outcomes
    assert "open" in transitions
    samples = scrape(httpx.get(f"{gw.url}/metrics").text)
    assert value(samples, "interlock_circuit_transitions_total", deployment="A", state="open") >= 1
    assert (
        value(samples, "interlock_circuit_transitions_total", deployment="A", state="half_open")
        >= 1
    )
    assert (
        value(samples, "interlock_circuit_transitions_total", deployment="A", state="closed") >= 1
    )
    # While A's circuit was open, B served without A being called at all.
    a_calls = [r for r in sim.requests() if '"sim-a"' in r["body"]]
    assert len(a_calls) < len(outcomes) / 2


def test_retry_after_is_honoured(sim_url: str, sim: SimControl, tmp_path: Path,
                                 start_gateway: Callable[..., GatewayProcess]) -> None:  # fmt: skip
    gw = start_gateway(ab_config(sim_url, tmp_path / "s"))
    sim.set_faults(
        [
            {
                "type": "status",
                "status": 429,
                "retry_after": 2,
                "count": 1,
                "match": {"model": "sim-a"},
            }
        ]
    )
    with httpx.Client(timeout=10) as client:
        first = chat(gw, client)
        assert first.status_code == 200 and first.headers["x-interlock-deployment"] == "B"
        assert first.headers["x-interlock-attempts"] == "2"
        limited_at = time.time()
        served_by = []
        while time.time() - limited_at < 1.8:
            served_by.append(chat(gw, client).headers["x-interlock-deployment"])
        assert set(served_by) == {"B"}  # A is not called before its Retry-After elapsed
        time.sleep(0.4)
        assert chat(gw, client).headers["x-interlock-deployment"] == "A"


def test_only_deployment_rate_limited_returns_429_with_retry_after(
    sim_url: str, sim: SimControl, tmp_path: Path, start_gateway: Callable[..., GatewayProcess]
) -> None:
    cfg = ab_config(sim_url, tmp_path / "s")
    cfg["models"]["a-only"] = {"deployments": ["A"]}
    gw = start_gateway(cfg)
    sim.set_faults([{"type": "status", "status": 429, "retry_after": 30, "count": 1}])
    with httpx.Client(timeout=10) as client:
        r1 = chat(gw, client, model="a-only")
        r2 = chat(gw, client, model="a-only")
    assert r1.status_code == 429 and r2.status_code == 429
    assert 28 <= int(r2.headers["retry-after"]) <= 30
    assert r2.json()["error"]["code"] == "rate_limited"
    assert len(sim.requests()) == 1  # the second never reached the provider


def test_stream_fails_over_before_first_byte(sim_url: str, sim: SimControl, tmp_path: Path,
                                             start_gateway: Callable[..., GatewayProcess]) -> None:  # fmt: skip
    gw = start_gateway(ab_config(sim_url, tmp_path / "s"))
    sim.set_faults([{"type": "cut_stream", "after_chunks": 0, "match": {"model": "sim-a"}}])
    with httpx.Client(timeout=10) as client, client.stream(
        "POST", f"{gw.url}/v1/chat/completions", headers=ADMIN,
        json={"model": "ab", "messages": MSG, "stream": True},
    ) as r:  # fmt: skip
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert r.headers["x-interlock-deployment"] == "B"
    assert lines[-1] == "data: [DONE]"


def test_hedge_takes_the_faster_deployment(sim_url: str, sim: SimControl, tmp_path: Path,
                                           start_gateway: Callable[..., GatewayProcess]) -> None:  # fmt: skip
    alias = {"hedge": {"enabled": True, "min_delay_s": 0.05, "max_delay_s": 0.1}}
    gw = start_gateway(ab_config(sim_url, tmp_path / "s", alias=alias))
    sim.set_faults([{"type": "latency", "ms": 1500, "match": {"model": "sim-a"}}])
    with httpx.Client(timeout=10) as client:
        started = time.monotonic()
        r = chat(gw, client)
        elapsed = time.monotonic() - started
    assert r.status_code == 200 and r.headers["x-interlock-deployment"] == "B"
    assert elapsed < 1.0
    samples = scrape(httpx.get(f"{gw.url}/metrics").text)
    assert value(samples, "interlock_hedges_total", model="ab", outcome="won") == 1


def test_fallback_alias_on_error_class(sim_url: str, sim: SimControl, tmp_path: Path,
                                       start_gateway: Callable[..., GatewayProcess]) -> None:  # fmt: skip
    cfg = ab_config(sim_url, tmp_path / "s")
    cfg["models"] = {
        "primary": {"deployments": ["A"], "fallbacks": [{"on": ["server_error"], "models": ["backup"]}],
                    "retry": {"max_attempts": 1}},
        "backup": {"deployments": ["B"]},
    }  # fmt: skip
    gw = start_gateway(cfg)
    sim.set_faults([{"type": "status", "status": 503, "match": {"model": "sim-a"}}])
    with httpx.Client(timeout=10) as client:
        r = chat(gw, client, model="primary")
    assert r.status_code == 200
    assert (
        r.headers["x-interlock-fallback"] == "backup" and r.headers["x-interlock-deployment"] == "B"
    )


def test_retry_budget_stops_retry_storms(sim_url: str, sim: SimControl, tmp_path: Path,
                                         start_gateway: Callable[..., GatewayProcess]) -> None:  # fmt: skip
    res = {
        "retry_budget": {"ratio": 0.0, "min_per_s": 0.0},
        "breaker": {"consecutive_failures": 1000, "min_calls": 1000},
    }
    gw = start_gateway(ab_config(sim_url, tmp_path / "s", resilience=res))
    # The process starts with a full bucket (100 retries); spend it, then no more retries.
    sim.set_faults([{"type": "status", "status": 500}])
    with httpx.Client(timeout=10) as client, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: chat(gw, client), range(120)))
        before = sim.ledger()["totals"]["requests"]
        for _ in range(10):
            assert chat(gw, client).status_code == 502
    # Budget spent: each deployment once (failing over to one not tried is free), never
    # a third attempt back on a deployment that already failed.
    assert sim.ledger()["totals"]["requests"] - before == 20
