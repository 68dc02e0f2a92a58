"""The load test tells the truth: with no ``--model`` it uses a model the target serves
(and says which), and latency counts from each request's actual send while the dispatch
lag is reported on its own (a timer that wakes early cannot make answers look faster
than the server made them)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from interlock.loadtest import runner as runner_mod
from interlock.loadtest.runner import RunConfig, run
from interlock.loadtest.schedule import Schedule
from interlock.loadtest.stats import summarise
from interlock.loadtest.workload import parse_length, synthetic_workload
from interlock.sim import SimControl
from tests.loadtest.test_loadtest_cli import loadtest
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config


def listed(url: str, key: str | None = None) -> list[str]:
    req = urllib.request.Request(url + "/v1/models")
    if key:
        req.add_header("authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return [m["id"] for m in json.loads(resp.read())["data"]]


def test_without_a_model_it_uses_listed_models_that_answer_and_says_which(
    sim: SimControl, sim_url: str, tmp_path: Path
) -> None:
    models = listed(sim_url)
    proc, doc = loadtest(tmp_path, "--url", sim_url, "--rate", "20", "--duration", "0.5",
                         "--mix", "chat=1,embeddings=1", "--slo", "error_rate=0")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = doc["config"]["models_discovered"]
    assert set(found) == {"chat", "embeddings"}
    assert found["chat"] in models and found["embeddings"] in models
    assert "embed" in found["embeddings"] and "embed" not in found["chat"]
    assert f"using {found['chat']!r}, the first chat model {sim_url}/v1/models lists" in proc.stderr
    by_model = {e["kind"]: e["model"] for e in doc["config"]["workload"]["mix"]}
    assert by_model == {"chat": found["chat"], "embeddings": found["embeddings"]}
    assert doc["requests"]["ok"] == doc["requests"]["sent"] == 10


@pytest.fixture
def gateway(sim_url: str, tmp_path: Path) -> Any:
    # "a-vectors" is an embeddings alias listed first, with nothing in its name to say so:
    # the chat probe passes over it on the gateway's own answer.
    cfg = sim_config(sim_url, tmp_path / "state")
    cfg["models"] = {"a-vectors": {"deployments": ["sim-embed"]},
                     "chat": {"deployments": ["sim-small"]}}  # fmt: skip
    gw = GatewayProcess(cfg, tmp_path / "gw").start()
    try:
        yield gw
    finally:
        gw.stop()


def test_a_listed_model_that_cannot_chat_is_passed_over_with_the_reason(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    assert listed(gateway.url, MASTER_KEY)[:2] == ["a-vectors", "chat"]
    proc, doc = loadtest(tmp_path, "--url", gateway.url, "--api-key", MASTER_KEY, "--rate", "10",
                         "--duration", "0.3", "--slo", "error_rate=0")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert doc["config"]["models_discovered"] == {"chat": "chat"}
    assert "passed over a-vectors (400 unsupported_model_endpoint)" in proc.stderr


def test_latency_counts_from_the_actual_send_when_the_timer_wakes_early(
    sim: SimControl, sim_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every timer wakes 150 ms early; the simulator answers after at least 100 ms.
    Measured from the intended send, latencies would be ~-50 ms; from the actual send
    each one is at least the simulator's 100 ms, and the early wake shows as negative
    dispatch lag instead."""
    sim.set_faults([{"type": "latency", "ms": 100}])
    real_sleep = asyncio.sleep

    async def early(delay: float, result: Any = None) -> Any:
        return await real_sleep(max(0.0, delay - 0.15), result)

    monkeypatch.setattr(runner_mod.asyncio, "sleep", early)
    workload = synthetic_workload(model="sim-small", mix={"chat": 1.0},
                                  prompt_tokens=parse_length(8), max_tokens=parse_length(4))  # fmt: skip
    config = RunConfig(sim_url + "/v1", Schedule(rate=5, duration_s=1), workload, None, 10.0, 8)
    result = asyncio.run(run(config))
    assert len(result.outcomes) == 5
    assert all(o.error is None for o in result.outcomes), [o.error for o in result.outcomes]
    assert all(o.latency_s is not None and o.latency_s >= 0.100 for o in result.outcomes), [
        o.latency_s for o in result.outcomes
    ]
    doc = summarise(result, target=sim_url, config={}, target_rate=5, planned=5)
    assert doc["arrival"]["lag_ms"]["min"] < -50  # early sends are shown, not hidden
    assert doc["latency_ms"]["p50"] >= 100
    assert set(doc["arrival"]["lag_ms"]) == {"min", "p50", "p99", "max"}


def test_the_summary_prints_dispatch_lag_apart_from_latency(sim_url: str, tmp_path: Path) -> None:
    proc, _ = loadtest(tmp_path, "--url", sim_url, "--rate", "20", "--duration", "0.25",
                       "--model", "sim-small")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    lag = next(line for line in lines if line.startswith("dispatch"))
    assert "lag ms (actual - intended send) p50" in lag and " max " in lag
    assert any(line.startswith("latency ms") and "from the actual send" in line for line in lines)
