"""``interlock report capacity`` on a ledger written by real traffic through a gateway."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.mark.slow
def test_capacity_from_real_traffic(sim: SimControl, sim_url: str, tmp_path: Path) -> None:
    sim.set_config(ttft_ms=100)
    cfg = sim_config(sim_url, tmp_path / "state")
    cfg["deployments"]["sim-small"].update(rpm=600, tpm=200_000, max_concurrency=8)
    cfg["cache"] = {"enabled": False}
    gw = GatewayProcess(cfg, tmp_path).start()
    try:

        def one(i: int) -> int:
            body = {"model": "chat", "messages": [{"role": "user", "content": f"q {i}"}]}
            return httpx.post(
                f"{gw.url}/v1/chat/completions", json=body, headers=AUTH, timeout=30
            ).status_code

        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(one, range(40))) == {200}
    finally:
        gw.stop()  # flushes the ledger
        sim.set_config(ttft_ms=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "interlock.cli.main",
            "report",
            "capacity",
            "--config",
            str(tmp_path / f"interlock-{gw.port}.yaml"),
            "--since",
            "1h",
            "--replica-rps",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    dep = next(d for d in rep["deployments"] if d["name"] == "sim-small")
    assert rep["requests"] == dep["requests"] == 40
    assert 100 <= dep["mean_latency_ms"] < 400
    # Little's law: 4 clients, each also busy between calls, kept 1-4 calls in flight;
    # capacity is max_concurrency x 1 replica
    assert 1.0 <= dep["in_flight_peak"] <= 4.5 and dep["capacity"] == 8
    assert dep["utilisation"] == pytest.approx(dep["in_flight_peak"] / 8)
    assert dep["rpm_headroom"] == pytest.approx(1 - dep["peak_rpm"] / 600)
    assert dep["fits_at"]["1x"] is (dep["peak_rpm"] <= 600 and dep["peak_tpm"] <= 200_000)
    g = rep["gateway"]
    need = {
        k: max(1, math.ceil(g["peak_cpu_rps"] * m / (2 * 0.7) - 1e-9))
        for k, m in (("1x", 1), ("2x", 2), ("3x", 3), ("10x", 10))
    }
    assert g["replicas_needed"] == need and need["10x"] > need["1x"]
    table = subprocess.run(
        [
            sys.executable,
            "-m",
            "interlock.cli.main",
            "report",
            "capacity",
            "--config",
            str(tmp_path / f"interlock-{gw.port}.yaml"),
            "--since",
            "1h",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert (
        table.returncode == 0 and "sim-small" in table.stdout and "replicas needed" in table.stdout
    )
