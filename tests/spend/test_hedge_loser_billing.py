"""A hedge's losing attempt is billed by the provider, so the ledger records it too.

The first deployment of a hedged alias answers slowly; the hedge's second attempt wins.
The loser is not cancelled (the provider finishes and bills a non-streamed answer even
after the caller leaves): once it ends it gets its own ledger row, outcome ``hedge_lost``,
request id ``<request id>-hedge``, its own usage and cost. Ledger total = provider total.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from interlock.sim import SimControl
from tests.support.databases import db_rows
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 4.0}
SLOW_MS = 600


def _ledger(gw: GatewayProcess) -> list[dict[str, Any]]:
    return db_rows(gw.workdir / "state", "SELECT * FROM ledger")


def test_hedge_losers_get_their_own_ledger_rows(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    cfg = sim_config(sim_url, tmp_path / "state")
    for dep in ("sim-small", "sim-medium"):
        cfg["deployments"][dep]["price"] = PRICE
    cfg["spend"]["ledger_flush_interval_s"] = 0.05
    cfg["models"]["hedged"] = {
        "deployments": ["sim-small", "sim-medium"],
        "hedge": {"enabled": True, "min_delay_s": 0.05, "max_delay_s": 0.1},
    }
    sim.set_config(prices={"sim-small": PRICE, "sim-medium": PRICE})
    sim.set_faults([{"type": "latency", "ms": SLOW_MS, "match": {"model": "sim-small"}}])
    gw = GatewayProcess(cfg, tmp_path).start()
    try:
        ids = []
        with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
            created = c.post(
                "/admin/keys",
                json={"user": "racer", "budgets": [{"limit_usd": 10, "window": "daily"}]},
            ).json()
            budget = created["budgets"][0]["id"]
            key = {"authorization": f"Bearer {created['key']}"}
            for i in range(3):
                started = time.monotonic()
                body = {"model": "hedged", "messages": [{"role": "user", "content": f"race {i}"}]}
                r = c.post("/v1/chat/completions", json=body, headers=key)
                assert r.status_code == 200, r.text
                # The hedge answered; the client did not wait for the slow loser.
                assert r.headers["x-interlock-deployment"] == "sim-medium"
                assert time.monotonic() - started < SLOW_MS / 1000
                ids.append(r.headers["x-request-id"])
            deadline = time.monotonic() + 10
            while len(rows := _ledger(gw)) < 6:
                assert time.monotonic() < deadline, rows
                time.sleep(0.1)
            # Each loser was settled against the hedge's own reservation: the budget has
            # spent what the ledger says, and holds nothing more.
            status = c.get(f"/admin/budgets/{budget}").json()
    finally:
        gw.stop()
    by_id = {r["request_id"]: r for r in rows}
    assert set(by_id) == {*ids, *(f"{rid}-hedge" for rid in ids)}
    for rid in ids:
        won, lost = by_id[rid], by_id[f"{rid}-hedge"]
        assert (won["outcome"], won["deployment"]) == ("ok", "sim-medium")
        assert (lost["outcome"], lost["deployment"]) == ("hedge_lost", "sim-small")
        assert lost["completion_tokens"] > 0 and not lost["usage_estimated"]
        assert lost["key_id"] == won["key_id"] and lost["model"] == "hedged"
    served = sim.ledger()
    assert served["totals"]["requests"] == 6
    ledger = sum((Decimal(str(r["cost_usd"])) for r in rows), Decimal(0))
    provider = Decimal(str(served["totals"]["cost_usd"]))
    assert ledger.quantize(Decimal("1e-9")) == provider.quantize(Decimal("1e-9"))
    assert Decimal(status["spent_usd"]) == ledger and Decimal(status["reserved_usd"]) == 0
