"""Cluster mode: breakers and the degradation level shared through Redis."""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from interlock.sim.process import start_sim_process as start_sim
from interlock.sim.process import stop_sim_process as stop_sim
from tests.resilience.conftest import ADMIN, MSG, ab_config
from tests.support.gateway import SIM_KEY, GatewayProcess
from tests.support.own_redis import OwnRedis
from tests.support.services import require

pytestmark = pytest.mark.redis


def circuit(gw: GatewayProcess, name: str) -> str:
    deps = httpx.get(f"{gw.url}/admin/deployments", headers=ADMIN, timeout=5).json()["data"]
    return next(d["circuit"] for d in deps if d["deployment"] == name)


def redis_state(url: str = "redis://127.0.0.1:6379/0") -> dict[str, object]:
    return {"backend": "redis", "redis_url": url, "key_prefix": f"t{secrets.token_hex(4)}:",
            "sync_interval_s": 0.2, "redis_timeout_s": 0.05}  # fmt: skip


@pytest.mark.slow
def test_three_replicas_stop_routing_to_a_dead_provider_within_a_second(
    sim_url: str, sim: SimControl, tmp_path: Path, start_gateway: Callable[..., GatewayProcess]
) -> None:
    require("Redis", "127.0.0.1", 6379)
    proc_a, url_a = start_sim("--seed", "1")  # provider A: its own process, to be killed
    try:
        cfg = ab_config(sim_url, tmp_path / "s", state=redis_state(),
                        resilience={"breaker": {"consecutive_failures": 2, "open_s": 30}})  # fmt: skip
        cfg["providers"]["dead-soon"] = {
            "kind": "openai_compatible",
            "base_url": f"{url_a}/v1",
            "api_key": SIM_KEY,
        }
        cfg["deployments"]["A"]["provider"] = "dead-soon"
        replicas = [start_gateway(cfg, name=f"r{i}") for i in range(3)]
        with httpx.Client(timeout=10) as client:
            for gw in replicas:
                r = client.post(
                    f"{gw.url}/v1/chat/completions",
                    json={"model": "ab", "messages": MSG},
                    headers=ADMIN,
                )
                assert r.headers["x-interlock-deployment"] == "A"
            proc_a.send_signal(signal.SIGKILL)
            proc_a.wait(5)
            # Only replica 0 sees traffic; it trips its breaker on A...
            while circuit(replicas[0], "A") != "open":
                r = client.post(
                    f"{replicas[0].url}/v1/chat/completions",
                    json={"model": "ab", "messages": MSG},
                    headers=ADMIN,
                )
                assert r.status_code == 200  # B answers while A fails
            tripped = time.monotonic()
            # ...and the other two, which sent nothing to A since, stop routing to it.
            for gw in replicas[1:]:
                while circuit(gw, "A") != "open":
                    assert time.monotonic() - tripped < 1.0, (
                        "replica did not adopt the open circuit"
                    )
                    time.sleep(0.02)
            before = sim.ledger()["totals"]["requests"]
            for gw in replicas[1:]:
                r = client.post(
                    f"{gw.url}/v1/chat/completions",
                    json={"model": "ab", "messages": MSG},
                    headers=ADMIN,
                )
                assert r.status_code == 200 and r.headers["x-interlock-deployment"] == "B"
                assert r.headers["x-interlock-attempts"] == "1"  # A was skipped, not tried
            assert sim.ledger()["totals"]["requests"] == before + 2
    finally:
        stop_sim(proc_a)


@pytest.mark.slow
def test_forced_degradation_reaches_every_replica(
    sim_url: str, sim: SimControl, tmp_path: Path, start_gateway: Callable[..., GatewayProcess]
) -> None:
    require("Redis", "127.0.0.1", 6379)
    cfg = ab_config(sim_url, tmp_path / "s", state=redis_state(),
                    resilience={"degradation": {"evaluate_every_s": 0.2}})  # fmt: skip
    a, b = start_gateway(cfg, name="a"), start_gateway(cfg, name="b")
    r = httpx.put(f"{a.url}/admin/degradation", json={"level": "minimal"}, headers=ADMIN)
    assert r.status_code == 200 and r.json()["level"] == "minimal"
    deadline = time.monotonic() + 2
    while True:
        r = httpx.post(
            f"{b.url}/v1/chat/completions", json={"model": "ab", "messages": MSG}, headers=ADMIN
        )
        if r.status_code == 503:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (
        r.json()["error"]["code"] == "degraded"
        and r.headers["x-interlock-degradation"] == "minimal"
    )
    httpx.put(f"{b.url}/admin/degradation", json={"level": "auto"}, headers=ADMIN)
    deadline = time.monotonic() + 2
    while (
        httpx.post(
            f"{a.url}/v1/chat/completions", json={"model": "ab", "messages": MSG}, headers=ADMIN
        ).status_code
        != 200
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.mark.slow
def test_frozen_redis_never_blocks_requests(
    sim_url: str, sim: SimControl, tmp_path: Path, start_gateway: Callable[..., GatewayProcess],
    own_redis: OwnRedis,
) -> None:  # fmt: skip
    url = own_redis.url
    gw = start_gateway(ab_config(sim_url, tmp_path / "s", state=redis_state(url)))
    with httpx.Client(timeout=10) as client:

        def timed() -> float:
            t = time.monotonic()
            r = client.post(
                f"{gw.url}/v1/chat/completions",
                json={"model": "ab", "messages": MSG},
                headers=ADMIN,
            )
            assert r.status_code == 200
            return time.monotonic() - t

        baseline = sorted(timed() for _ in range(20))[10]
        own_redis.freeze()
        try:
            frozen = sorted(timed() for _ in range(40))
            # A breaker transition would publish to Redis: make one happen while frozen.
            sim.set_faults([{"type": "status", "status": 500, "match": {"model": "sim-a"}}])
            during_fault = [timed() for _ in range(10)]
            sim.set_faults([])
            # The background sync notices within one interval plus one timeout.
            deadline = time.monotonic() + 3
            while httpx.get(f"{gw.url}/admin/degradation", headers=ADMIN).json()[
                "shared_state_healthy"
            ]:
                assert time.monotonic() < deadline, "frozen redis not noticed"
                time.sleep(0.05)
        finally:
            own_redis.thaw()
        assert frozen[-1] < baseline + 0.5, (baseline, frozen[-5:])
        assert max(during_fault) < 1.0
        deadline = time.monotonic() + 3
        while not httpx.get(f"{gw.url}/admin/degradation", headers=ADMIN).json()[
            "shared_state_healthy"
        ]:
            assert time.monotonic() < deadline, "did not reconnect to redis"
            time.sleep(0.1)
