"""Model selection end to end: an `auto` alias over the simulator's small/medium/large
models, through `interlock serve`, the HTTP API and the ledger."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def gw(sim_url: str, sim: SimControl, tmp_path: Path) -> Iterator[GatewayProcess]:
    cfg = sim_config(sim_url, tmp_path / "state")
    cfg["models"].update({
        "small": {"deployments": ["sim-small"]},
        "medium": {"deployments": ["sim-medium"]},
        "large": {"deployments": ["sim-large"]},
        "auto": {"tiers": {
            "small": "small", "medium": "medium", "large": "large", "escalate": True,
            "specialized": {"promql": {"model": "large", "description": "Prometheus queries",
                                       "keywords": ["promql"]}},
        }},
    })  # fmt: skip
    g = GatewayProcess(cfg, tmp_path).start()
    yield g
    g.stop()


def chat(c: httpx.Client, text: str, **extra: Any) -> httpx.Response:
    headers = extra.pop("headers", {})
    body = {"model": extra.pop("model", "auto"), "messages": [{"role": "user", "content": text}]}
    r = c.post("/v1/chat/completions", json={**body, **extra}, headers=headers)
    assert r.status_code == 200, r.text
    return r


def ledger(gw: GatewayProcess, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        db = sqlite3.connect(gw.workdir / "state" / "interlock.db")
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM ledger ORDER BY created_at")]
        db.close()
        if len(rows) >= n:
            return rows
        assert time.monotonic() < deadline, f"{len(rows)} of {n} ledger rows"
        time.sleep(0.1)


def test_tiers_headers_pins_bypass_and_ledger(gw: GatewayProcess) -> None:
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
        easy = chat(c, "Is Oslo in Norway? Answer yes or no.")
        hard = chat(c, "Prove that there are infinitely many primes.")
        mid = chat(c, "Explain how tides work.")
        spec = chat(c, "Write a PromQL query for the error rate per service.")
        pinned = chat(c, "Is Oslo in Norway? Answer yes or no.",
                      headers={"x-interlock-tier": "large"})  # fmt: skip
        direct = chat(c, "Prove it.", model="small", headers={"x-interlock-tier": "large"})
        bad = c.post("/v1/chat/completions", headers={"x-interlock-tier": "giant"},
                     json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    seen = [(r.headers["x-interlock-tier"], r.headers["x-interlock-deployment"])
            for r in (easy, hard, mid, spec, pinned)]  # fmt: skip
    assert seen == [("small", "sim-small"), ("large", "sim-large"), ("medium", "sim-medium"),
                    ("promql", "sim-large"), ("large", "sim-large")]  # fmt: skip
    assert easy.headers["x-interlock-route-reason"].startswith("small: answer-format")
    assert hard.headers["x-interlock-route-reason"] == "large: proof"
    assert spec.headers["x-interlock-route-reason"] == "keyword 'promql'"
    assert pinned.headers["x-interlock-route-reason"] == "pinned by x-interlock-tier"
    # A concrete model is served as asked: no routing, no tier headers.
    assert direct.headers["x-interlock-deployment"] == "sim-small"
    assert "x-interlock-tier" not in direct.headers
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_tier"
    rows = ledger(gw, 6)  # the refused pin never reached a model: no ledger row
    by_id = {r["request_id"]: r for r in rows}
    assert [by_id[r.headers["x-request-id"]]["tier"] for r in (easy, hard, mid, spec, pinned)] == [
        "small",
        "large",
        "medium",
        "promql",
        "large",
    ]
    assert by_id[easy.headers["x-request-id"]]["model"] == "small"
    assert by_id[direct.headers["x-request-id"]]["tier"] is None


def test_invalid_json_from_the_small_tier_escalates_once(gw: GatewayProcess) -> None:
    # The simulator answers response_format json with JSON; capping the answer at three
    # tokens cuts it off mid-object, which is the "invalid JSON" a cheap check catches.
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
        r = chat(c, "Extract the city from: 'I live in Oslo.' Return JSON only.",
                 response_format={"type": "json_object"}, max_tokens=3)  # fmt: skip
        ok = chat(c, "Extract the city from: 'I live in Bergen.' Return JSON only.",
                  response_format={"type": "json_object"})  # fmt: skip
    assert r.headers["x-interlock-tier"] == "medium"
    assert r.headers["x-interlock-escalated"] == "small:invalid_json"
    assert r.headers["x-interlock-deployment"] == "sim-medium"
    assert r.headers["x-interlock-fallback"] == "medium"
    assert r.headers["x-interlock-route-reason"].startswith("escalated from small (invalid_json)")
    assert ok.headers["x-interlock-tier"] == "small" and "x-interlock-escalated" not in ok.headers
    rows = ledger(gw, 3)
    rid = r.headers["x-request-id"]
    first = next(x for x in rows if x["request_id"] == f"{rid}:small")
    second = next(x for x in rows if x["request_id"] == rid)
    # Both calls are charged; the first is marked as escalated, so reports can tell.
    assert (first["tier"], first["outcome"], first["deployment"]) == ("small", "escalated",
                                                                      "sim-small")  # fmt: skip
    assert (second["tier"], second["outcome"], second["deployment"]) == ("medium", "ok",
                                                                         "sim-medium")  # fmt: skip
    assert float(first["cost_usd"]) > 0 and float(second["cost_usd"]) > 0
