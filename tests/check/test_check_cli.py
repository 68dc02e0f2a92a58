"""``interlock check`` against a real gateway (over HTTP) and a real load-test report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
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
        "20",  # 2x the peak of 5 req/s is 10: twice that leaves room for a busy machine
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
    # nothing answers, so budgets made through the API could not be read: unverified,
    # not "no budget at all"
    limits = by_item["spending limits"]
    assert limits["status"] == "warn" and limits["detail"].startswith("unverified")
    assert "nothing answers at" in limits["detail"] and "--key" in limits["fix"]
    assert by_item["load test ≥ 2× peak"]["status"] == "fail"
    assert "interlock loadtest --rate 10" in by_item["load test ≥ 2× peak"]["fix"]
    assert by_item["instance ready"]["status"] == "fail"


def several_models_config(sim_url: str, state: Path) -> dict[str, Any]:
    """Aliases with fallbacks, deployments served under their model names (one of them
    on two providers), an embeddings model, and no budget in the file."""
    cfg = ready_config(sim_url, state, None)
    cfg["providers"]["sim-gemini"] = {"kind": "gemini", "base_url": sim_url, "api_key": SIM_KEY}
    cfg["deployments"] = {
        "small": {"provider": "sim", "model": "sim-small"},
        "claude": {"provider": "sim-anthropic", "model": "sim-claude",
                   "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
        "gemini": {"provider": "sim-gemini", "model": "sim-gemini",
                   "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
        "medium-a": {"provider": "sim", "model": "sim-medium"},
        "medium-b": {"provider": "sim-anthropic", "model": "sim-medium",
                     "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
        "embed": {"provider": "sim", "model": "sim-embed", "kind": "embeddings"},
    }  # fmt: skip
    cfg["models"] = {
        "chat": {"deployments": ["small", "claude"]},
        "fast": {"deployments": ["gemini"], "fallbacks": [{"models": ["chat"]}]},
    }
    cfg["spend"] = {"rate_limits": [{"scope": "global", "rpm": 6000}]}
    return cfg


def admin(url: str, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(url + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)  # fmt: skip
    req.add_header("authorization", f"Bearer {MASTER_KEY}")
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def findings(stdout: str) -> dict[str, dict[str, str]]:
    return {f["item"]: f for f in json.loads(stdout)["findings"]}


def test_no_false_fail_on_a_gateway_of_several_models_with_budgets_made_through_the_api(
    sim_url: str, tmp_path: Path
) -> None:
    cfg = several_models_config(sim_url, tmp_path / "state")
    gw = GatewayProcess(cfg, tmp_path).start()
    try:
        admin(
            gw.url,
            "POST",
            "/admin/budgets",
            {"scope": "global", "window": "monthly", "limit_usd": 100},
        )
        admin(gw.url, "POST", "/admin/budgets",
              {"scope": "team", "subject": "research", "window": "daily", "limit_usd": 5})  # fmt: skip
        served = [m["id"] for m in admin(gw.url, "GET", "/v1/models")["data"]]
        config = tmp_path / "interlock.yaml"
        config.write_text(yaml.safe_dump(cfg))
        # no --key and no INTERLOCK_* variable: the admin key is the configuration's
        r = cli("check", "--config", str(config), "--url", gw.url, "--json", cwd=tmp_path)
    finally:
        gw.stop()
    by_item = findings(r.stdout)
    assert sorted(served) == ["chat", "fast", "sim-embed", "sim-medium"]
    for model in served:
        assert f"fallback: {model}" in by_item, (model, r.stdout)
    assert by_item["fallback: chat"]["status"] == "pass"
    assert by_item["fallback: fast"]["status"] == "pass"  # via its fallback alias 'chat'
    assert by_item["fallback: sim-medium"]["status"] == "pass"  # two providers, no alias
    embed = by_item["fallback: sim-embed"]
    assert embed["status"] == "warn" and "embeddings" in embed["detail"]
    limits = by_item["spending limits"]
    assert limits["status"] == "pass", limits
    assert (
        "2 hard limit(s) on the gateway" in limits["detail"]
        and "2 via the admin API" in limits["detail"]
    )
    assert by_item["configuration matches gateway"]["status"] == "pass"
    assert "fallbacks" not in by_item  # the old "no model aliases configured"
    assert not [f for f in by_item.values() if f["status"] == "fail" and (
        f["item"].startswith(("fallback", "spending", "configuration")))]  # fmt: skip


def test_checked_with_another_configuration_it_reads_the_gateway_and_says_they_differ(
    sim_url: str, tmp_path: Path
) -> None:
    cfg = several_models_config(sim_url, tmp_path / "state")
    gw = GatewayProcess(cfg, tmp_path).start()
    try:
        admin(
            gw.url,
            "POST",
            "/admin/budgets",
            {"scope": "global", "window": "monthly", "limit_usd": 100},
        )
        other = dict(cfg, models={"chat": {"deployments": ["small", "claude"]}})
        other["auth"] = {}  # no key in this file: --key gives it
        config = tmp_path / "other.yaml"
        config.write_text(yaml.safe_dump(other))
        r = cli("check", "--config", str(config), "--url", gw.url, "--key", MASTER_KEY, "--json",
                cwd=tmp_path)  # fmt: skip
    finally:
        gw.stop()
    by_item = findings(r.stdout)
    drift = by_item["configuration matches gateway"]
    assert drift["status"] == "warn" and "served but not configured: fast" in drift["detail"]
    # 'fast' is judged from what the gateway serves: in neither this file nor served
    # under a deployment's model name, its providers are unknown (warn), not absent (fail)
    assert by_item["fallback: fast"]["status"] == "warn"
    assert "its providers are unknown" in by_item["fallback: fast"]["detail"]
    assert by_item["spending limits"]["status"] == "pass"  # 1 via the API, none in the file


def test_a_real_fail_stays_a_fail_when_the_gateway_is_read(sim_url: str, tmp_path: Path) -> None:
    cfg = several_models_config(sim_url, tmp_path / "state")
    cfg["models"]["solo"] = {"deployments": ["gemini"]}
    gw = GatewayProcess(cfg, tmp_path).start()
    try:
        config = tmp_path / "interlock.yaml"
        config.write_text(yaml.safe_dump(cfg))
        r = cli("check", "--config", str(config), "--url", gw.url, "--json", cwd=tmp_path)
    finally:
        gw.stop()
    assert r.returncode == 1
    by_item = findings(r.stdout)
    solo = by_item["fallback: solo"]
    assert solo["status"] == "fail" and "only provider 'sim-gemini'" in solo["detail"]
    limits = by_item["spending limits"]
    assert limits["status"] == "fail" and "the gateway enforces no budget" in limits["detail"]


def test_loadtest_and_check_find_a_gateway_on_another_port_from_its_configuration_alone(
    sim_url: str, tmp_path: Path
) -> None:
    """No --url, no --key, no --model, no INTERLOCK_* variable: the file the gateway runs
    with says where it listens and its master key; the load test picks a served model."""
    report = tmp_path / "lt.json"
    gw = GatewayProcess(None, tmp_path)
    cfg = ready_config(sim_url, tmp_path / "state", report)
    cfg["server"] = {"host": "0.0.0.0", "port": gw.port}
    gw.config = cfg
    config = tmp_path / "interlock.yaml"
    config.write_text(yaml.safe_dump(cfg))
    gw.start()
    try:
        lt = cli("loadtest", "--config", str(config), "--rate", "20", "--duration", "1",
                 "--slo", "error_rate=0", "--json", str(report), "--no-progress", cwd=tmp_path)  # fmt: skip
        assert lt.returncode == 0, lt.stdout + lt.stderr
        assert f"target      http://127.0.0.1:{gw.port}" in lt.stdout
        assert json.loads(report.read_text())["config"]["models_discovered"] == {"chat": "chat"}
        r = cli("check", "--config", str(config), cwd=tmp_path)
    finally:
        gw.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"http://127.0.0.1:{gw.port}/readyz answered 200" in r.stdout
    assert "PASS  configuration matches gateway" in r.stdout
    assert "0 fail: ready" in r.stdout
