"""Alerts end to end: latency, errors, queue growth and spend pushed over the thresholds
through a real 2-worker gateway; warning then critical fire once each, both resolve
when the condition clears, and every webhook arrives signed (Slack-compatible too)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from interlock.sim import SimControl
from interlock.webhooks.signing import generate_secret, load_secret
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config
from tests.telemetry.receiver import Receiver

pytestmark = pytest.mark.slow
SECRET = generate_secret()
ROUTE = "/v1/chat/completions"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def gw(sim_url: str, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[GatewayProcess]:  # fmt: skip
    work = tmp_path_factory.mktemp("alerts")
    cfg = sim_config(sim_url, work / "state")
    cfg["models"]["big"] = {"deployments": ["sim-large"], "retry": {"max_attempts": 1}}
    # Injected errors must reach the client as errors, not open the breaker (whose wait
    # for a half-open probe would slow the test down).
    cfg["deployments"]["sim-large"]["breaker"] = {"consecutive_failures": 1000, "min_calls": 1000}
    cfg["cache"] = {"enabled": False}
    cfg["jobs"] = {"run_in_serve": False, "metrics_interval_s": 0.2}
    cfg["alerts"] = {
        "interval_s": 0.2,
        "window_s": 2,
        # Each rule fires once per test: a resolved alert that re-fires within the test
        # (a loaded machine's own latency crossing the threshold again) is a flap the
        # cooldown exists to hold back, as it does in production (default 600 s).
        "cooldown_s": 60,
        "min_requests": 5,
        "rules": [
            {
                "metric": "latency_p95",
                "warning": 2,
                "critical": 5,
                "baseline_s": 0.1,
                "route": ROUTE,
            },
            {"metric": "error_rate", "warning": 0.2, "critical": 0.5},
            {"metric": "queue_depth", "warning": 3, "critical": 6},
            {"metric": "daily_spend", "warning": 1.2, "critical": 1.5, "team": "red"},
        ],
        "sinks": [
            {"kind": "webhook", "url": receiver.url + "/generic", "secret": SECRET},
            {"kind": "slack", "url": receiver.url + "/slack"},
            {"kind": "log"},
        ],
        "allow_hosts": ["127.0.0.1"],
    }
    g = GatewayProcess(cfg, work, workers=2).start()
    try:
        yield g
    finally:
        g.stop()


@pytest.fixture
def admin(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {MASTER_KEY}"},
                      timeout=30) as c:  # fmt: skip
        yield c


def _wait(
    cond: Callable[[], Any],
    what: str,
    timeout: float = 15.0,
    tick: Callable[[], None] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        if tick is not None:
            tick()
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {got}")


def _firing(c: httpx.Client, rule: str) -> set[str]:
    return {a["severity"] for a in c.get("/admin/alerts").json()["active"] if a["rule"] == rule}


def _chat(c: httpx.Client, model: str = "chat", key: str = MASTER_KEY) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    return c.post(ROUTE, json=body, headers={"authorization": f"Bearer {key}"}).status_code


def _burst(c: httpx.Client, n: int, model: str = "chat") -> None:
    for _ in range(n):
        _chat(c, model)


def _signed_events(receiver: Receiver, rule: str) -> Counter[tuple[str, str]]:
    seen: Counter[tuple[str, str]] = Counter()
    for d in receiver.at("/generic"):
        load_secret(SECRET).verify(d.body, d.headers)  # raises if unsigned or tampered
        event = orjson.loads(d.body)
        if event["data"]["rule"] == rule:
            seen[(event["data"]["severity"], event["type"])] += 1
    return seen


def _assert_once_each(receiver: Receiver, rule: str, metric: str) -> None:
    want = Counter({(sev, f"alert.{state}"): 1 for sev in ("warning", "critical")
                    for state in ("firing", "resolved")})  # fmt: skip
    deadline = time.monotonic() + 10
    while (got := _signed_events(receiver, rule)) != want and time.monotonic() < deadline:
        time.sleep(0.1)
    assert got == want, f"{rule} webhooks"
    slack = [orjson.loads(d.body) for d in receiver.at("/slack")]
    # Slack-compatible: {"text": ...}, one message per firing and per resolve.
    assert sum(1 for s in slack if metric.replace("_", " ") in s["text"]) >= 4


def test_latency_alerts(admin: httpx.Client, sim: SimControl, receiver: Receiver) -> None:
    _burst(admin, 10)
    assert _firing(admin, "latency_p95_v1_chat_completions") == set()
    rule = "latency_p95_v1_chat_completions"
    sim.set_faults([{"type": "latency", "ms": 300}])  # p95 ~0.35 s: ~3.5x the 100 ms baseline
    _wait(
        lambda: _firing(admin, rule) == {"warning"},
        "latency warning",
        tick=lambda: _burst(admin, 3),
    )
    # p95 ~0.85 s: ~8.5x. Margins wide enough that a loaded machine's own latency (tens to
    # a hundred ms) moves no signal across a threshold.
    sim.set_faults([{"type": "latency", "ms": 800}])
    _wait(lambda: _firing(admin, rule) == {"warning", "critical"}, "latency critical",
          tick=lambda: _burst(admin, 3))  # fmt: skip
    sim.set_faults([])
    _wait(lambda: _firing(admin, rule) == set(), "latency resolved", tick=lambda: _burst(admin, 5))
    _assert_once_each(receiver, rule, "latency_p95")


def test_error_rate_alerts(admin: httpx.Client, sim: SimControl, receiver: Receiver) -> None:
    def mix(errors: int) -> None:
        sim.set_faults([{"type": "status", "status": 500, "count": errors,
                         "match": {"model": "sim-large"}}])  # fmt: skip
        _burst(admin, 10, "big")

    time.sleep(2.5)  # let the latency test's traffic leave the window
    mix(3)  # 30%
    _wait(lambda: _firing(admin, "error_rate") == {"warning"}, "error warning")
    mix(9)  # 60% over the window
    _wait(lambda: _firing(admin, "error_rate") == {"warning", "critical"}, "error critical")
    sim.set_faults([])
    _wait(lambda: _firing(admin, "error_rate") == set(), "errors resolved",
          tick=lambda: _burst(admin, 5))  # fmt: skip
    _assert_once_each(receiver, "error_rate", "error_rate")


def test_queue_depth_alerts(admin: httpx.Client, receiver: Receiver) -> None:
    job = {
        "endpoint": ROUTE,
        "body": {"model": "chat", "messages": [{"role": "user", "content": "q"}]},
    }
    ids = []

    def submit(n: int) -> None:
        for _ in range(n):
            r = admin.post("/v1/jobs", json=job)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])

    submit(4)
    _wait(lambda: _firing(admin, "queue_depth") == {"warning"}, "queue warning")
    submit(3)
    _wait(lambda: _firing(admin, "queue_depth") == {"warning", "critical"}, "queue critical")
    for job_id in ids:
        assert admin.delete(f"/v1/jobs/{job_id}").status_code == 200
    _wait(lambda: _firing(admin, "queue_depth") == set(), "queue resolved")
    _assert_once_each(receiver, "queue_depth", "queue_depth")


def test_daily_spend_alerts(admin: httpx.Client, receiver: Receiver) -> None:
    rule = "daily_spend_red"
    key = admin.post("/admin/keys", json={"name": "spender", "team": "red"}).json()["key"]
    r = admin.post("/admin/budgets", json={"scope": "team", "subject": "red", "window": "daily",
                                           "budget_usd": "0.0000175"})  # fmt: skip
    assert r.status_code == 201, r.text
    budget_id = r.json()["id"]
    assert _chat(admin, key=key) == 200  # ~62% of the day's budget
    time.sleep(0.6)
    assert _firing(admin, rule) == set()
    assert _chat(admin, key=key) == 200  # ~124%
    _wait(lambda: _firing(admin, rule) == {"warning"}, "spend warning")
    assert _chat(admin, key=key) == 200  # ~186%
    _wait(lambda: _firing(admin, rule) == {"warning", "critical"}, "spend critical")
    active = [a for a in admin.get("/admin/alerts").json()["active"] if a["rule"] == rule]
    assert {a["instance"] for a in active} == {budget_id}
    assert admin.delete(f"/admin/budgets/{budget_id}").status_code == 200
    _wait(lambda: _firing(admin, rule) == set(), "spend resolved")
    _assert_once_each(receiver, rule, "daily_spend")
    listed = admin.get("/admin/alerts", params={"state": "resolved"}).json()["data"]
    assert {a["rule"] for a in listed} >= {rule}


def test_the_log_sink_and_the_cli_list_alerts(gw: GatewayProcess) -> None:
    from click.testing import CliRunner

    from interlock.cli.main import cli

    out = CliRunner().invoke(cli, ["alerts", "list", "--url", gw.url, "--key", MASTER_KEY])
    assert out.exit_code == 0, out.output
    assert "recently resolved" in out.output and "daily_spend_red" in out.output
    assert '"event": "alert"' in gw.output() or '"event":"alert"' in gw.output()
