"""The degradation ladder over real HTTP: automatic steps, hysteresis, forcing, headers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.resilience.conftest import ADMIN, MSG, ab_config
from tests.support.gateway import GatewayProcess


def post(gw: GatewayProcess, client: httpx.Client, model: str = "ab") -> httpx.Response:
    return client.post(
        f"{gw.url}/v1/chat/completions", json={"model": model, "messages": MSG}, headers=ADMIN
    )


def level(gw: GatewayProcess) -> str:
    return str(httpx.get(f"{gw.url}/admin/degradation", headers=ADMIN).json()["level"])


@pytest.mark.slow
def test_error_rate_steps_down_then_recovers_with_hysteresis(
    sim_url: str, sim: SimControl, tmp_path: Path, start_gateway: Callable[..., GatewayProcess]
) -> None:
    degradation = {
        "evaluate_every_s": 0.1, "window_s": 2.0, "min_requests": 5,
        "down_after_s": 0.3, "up_after_s": 1.0, "recover_ratio": 0.5,
        "signals": {"error_rate": {"limited": 0.2, "cached": 0.5}},
    }  # fmt: skip
    res = {"degradation": degradation, "retry": {"max_attempts": 1},
           "breaker": {"consecutive_failures": 10_000, "min_calls": 10_000}}  # fmt: skip
    cfg = ab_config(sim_url, tmp_path / "s", resilience=res)
    cfg["models"]["ab"]["deployments"] = ["A"]
    cfg["models"]["vip"] = {"deployments": ["B"], "essential": True}
    gw = start_gateway(cfg)
    seen: list[str] = []
    with httpx.Client(timeout=10) as client:
        sim.set_faults([{"type": "status", "status": 500, "match": {"model": "sim-a"}}])
        deadline = time.monotonic() + 10
        while level(gw) != "cached":
            r = post(gw, client)
            seen.append(r.headers["x-interlock-degradation"])
            assert time.monotonic() < deadline, seen
        # At 'cached' nothing is cached here: non-essential requests are refused...
        r = post(gw, client)
        assert r.status_code == 503 and r.json()["error"]["code"] == "degraded"
        assert r.headers["x-interlock-degradation"] == "cached" and "retry-after" in r.headers
        # ...while an essential route is still served.
        assert post(gw, client, "vip").status_code == 200
        sim.set_faults([])
        recovered_at = time.monotonic()
        steps = []
        while level(gw) != "full":
            lvl = level(gw)
            if not steps or steps[-1][1] != lvl:
                steps.append((time.monotonic() - recovered_at, lvl))
            post(gw, client, "vip")
            assert time.monotonic() - recovered_at < 15, steps
            time.sleep(0.05)
    assert [s for _, s in steps][:2] == ["cached", "limited"]  # one level at a time
    assert time.monotonic() - recovered_at >= 2 * 1.0  # up_after_s per step: no flapping back


def test_forced_levels_and_headers(sim_url: str, sim: SimControl, tmp_path: Path,
                                   start_gateway: Callable[..., GatewayProcess]) -> None:  # fmt: skip
    cfg = ab_config(sim_url, tmp_path / "s")
    cfg["deployments"]["B"]["expensive"] = True
    cfg["models"]["vip"] = {"deployments": ["B"], "essential": True}
    cfg["models"]["ab"]["deployments"] = ["B", "A"]
    gw = start_gateway(cfg)
    with httpx.Client(timeout=10) as client:
        r = post(gw, client)
        assert (
            r.headers["x-interlock-degradation"] == "full"
            and r.headers["x-interlock-deployment"] == "B"
        )
        for name, status, dep in (("limited", 200, "A"), ("minimal", 503, None)):
            assert (
                client.put(
                    f"{gw.url}/admin/degradation", json={"level": name}, headers=ADMIN
                ).status_code
                == 200
            )
            r = post(gw, client)
            assert r.status_code == status and r.headers["x-interlock-degradation"] == name
            if dep:
                assert r.headers["x-interlock-deployment"] == dep  # the expensive one is off
        assert post(gw, client, "vip").status_code == 200  # essential, and never emptied
        bad = client.put(f"{gw.url}/admin/degradation", json={"level": "panic"}, headers=ADMIN)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "level"
        client.put(f"{gw.url}/admin/degradation", json={"level": "auto"}, headers=ADMIN)
        assert post(gw, client).headers["x-interlock-degradation"] == "full"


def test_client_timeout_header_is_bounded(sim_url: str, sim: SimControl, tmp_path: Path,
                                          start_gateway: Callable[..., GatewayProcess]) -> None:  # fmt: skip
    cfg = ab_config(sim_url, tmp_path / "s", resilience={"client_timeout_min_s": 0.5})
    cfg["models"]["ab"]["deployments"] = ["B"]
    gw = start_gateway(cfg)
    sim.set_faults([{"type": "latency", "ms": 3000}])
    with httpx.Client(timeout=10) as client:
        started = time.monotonic()
        r = client.post(f"{gw.url}/v1/chat/completions", json={"model": "ab", "messages": MSG},
                        headers={**ADMIN, "x-interlock-timeout": "0.1"})  # fmt: skip
        elapsed = time.monotonic() - started
        assert r.status_code == 504 and 0.4 < elapsed < 1.5  # clamped up to 0.5 s
        r = client.post(f"{gw.url}/v1/chat/completions", json={"model": "ab", "messages": MSG},
                        headers={**ADMIN, "x-interlock-timeout": "soon"})  # fmt: skip
        assert r.status_code == 400 and r.json()["error"]["param"] == "x-interlock-timeout"


def test_cli_shows_and_sets_the_level(sim_url: str, sim: SimControl, tmp_path: Path,
                                      start_gateway: Callable[..., GatewayProcess]) -> None:  # fmt: skip
    import os
    import subprocess
    import sys

    from tests.support.gateway import MASTER_KEY

    gw = start_gateway(ab_config(sim_url, tmp_path / "s"))
    env = {**os.environ, "INTERLOCK_URL": gw.url, "INTERLOCK_ADMIN_KEY": MASTER_KEY}

    def cli(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "interlock.cli.main", *args], env=env,
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert "level: full (auto)" in cli("degradation", "show")
    assert "level: limited (forced)" in cli("degradation", "set", "limited")
    assert level(gw) == "limited"
    cli("degradation", "set", "auto")
    assert level(gw) == "full"
    table = cli("deployments", "--reset", "A")
    assert "A " in table and "closed" in table
