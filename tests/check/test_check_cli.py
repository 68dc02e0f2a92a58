"""``interlock check`` against a real gateway (over HTTP) and a real load-test report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gateway import MASTER_KEY, SIM_KEY, GatewayProcess

ROOT = Path(__file__).resolve().parents[2]


def ready_config(sim_url: str, state: Path, report: Path | None) -> dict[str, Any]:
    return {
        "state_dir": str(state),
        "storage": {"url": f"sqlite+aiosqlite:///{state}/interlock.db"},
        "auth": {"master_key": MASTER_KEY},
        "providers": {
            "sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1", "api_key": SIM_KEY},
            "sim-anthropic": {"kind": "anthropic", "base_url": sim_url, "api_key": SIM_KEY},
        },
        "deployments": {
            "small": {"provider": "sim", "model": "sim-small", "rpm": 600},
            "claude": {
                "provider": "sim-anthropic",
                "model": "sim-claude",
                "rpm": 600,
                "price": {"input_per_mtok": 1, "output_per_mtok": 2},
            },
        },
        "models": {"chat": {"deployments": ["small", "claude"]}},
        "spend": {
            "budgets": [
                {"scope": "global", "window": "monthly", "limit_usd": 100, "budget_usd": 50}
            ],
            "rate_limits": [{"scope": "global", "rpm": 6000}],
        },
        "alerts": {
            "sinks": [{"kind": "webhook", "url": "http://127.0.0.1:9/alerts"}],
            "allow_hosts": ["127.0.0.1"],
        },
        "launch": {
            "peak_rps": 5,
            "runbooks_dir": str(ROOT / "docs" / "runbooks"),
            **({"loadtest_report": str(report)} if report else {}),
        },
    }


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    return subprocess.run(
        [sys.executable, "-m", "interlock.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        cwd=cwd,
    )


@pytest.fixture
def gateway(sim_url: str, tmp_path: Path) -> Any:
    gw = GatewayProcess(ready_config(sim_url, tmp_path / "state", None), tmp_path).start()
    try:
        yield gw
    finally:
        gw.stop()


def test_a_ready_deployment_passes_after_a_load_test_at_twice_the_peak(
    gateway: GatewayProcess, sim_url: str, tmp_path: Path
) -> None:
    report = tmp_path / "lt.json"
    lt = cli(
        "loadtest",
        "--url",
        gateway.url,
        "--api-key",
        MASTER_KEY,
        "--model",
        "chat",
        "--rate",
        "10",
        "--duration",
        "1",
        "--slo",
        "error_rate=0",
        "--json",
        str(report),
        "--no-progress",
        cwd=tmp_path,
    )
    assert lt.returncode == 0, lt.stdout + lt.stderr
    config = tmp_path / "interlock.yaml"
    config.write_text(yaml.safe_dump(ready_config(sim_url, tmp_path / "state", report)))
    r = cli("check", "--config", str(config), "--url", gateway.url, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    for item in (
        "spending limits",
        "alerts",
        "fallback: chat",
        "rate limits",
        "load test ≥ 2× peak",
        "runbooks",
        "instance ready",
        "monitoring: /metrics",
        "quota: all deployments rpm",
    ):
        assert any(line.startswith("PASS") and item in line for line in r.stdout.splitlines()), (
            item,
            r.stdout,
        )
    assert "0 fail: ready" in r.stdout


def test_missing_items_fail_with_how_to_fix(sim_url: str, tmp_path: Path, free_port: int) -> None:
    cfg = ready_config(sim_url, tmp_path / "state", None)
    cfg["models"] = {"chat": {"deployments": ["small"]}}
    cfg["spend"] = {}
    config = tmp_path / "interlock.yaml"
    config.write_text(yaml.safe_dump(cfg))
    r = cli(
        "check",
        "--config",
        str(config),
        "--url",
        f"http://127.0.0.1:{free_port}",
        "--json",
        cwd=tmp_path,
    )
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    by_item = {f["item"]: f for f in doc["findings"]}
    assert doc["verdict"] == "fail"
    assert (
        by_item["fallback: chat"]["status"] == "fail"
        and "fallbacks" in by_item["fallback: chat"]["fix"]
    )
    assert by_item["spending limits"]["status"] == "fail"
    assert by_item["load test ≥ 2× peak"]["status"] == "fail"
    assert "interlock loadtest --rate 10" in by_item["load test ≥ 2× peak"]["fix"]
    assert by_item["instance ready"]["status"] == "fail"
