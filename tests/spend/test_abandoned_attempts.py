"""Attempts the gateway stops waiting for are still billed by the provider: charge them.

A provider finishes (and bills) a non-streamed answer even after its caller hung up. So
when the gateway gives up on an attempt (its first-byte timeout, the client's own
deadline) it does not cut it: the attempt runs on in the background, bounded by its
deployment's ``timeouts.total_s``, and once it ends it gets its own ledger row
(``<request id>-a1``, outcome ``abandoned_timeout`` / ``abandoned_deadline``) with the
provider's usage, settled against a reservation held back for it. An attempt that hangs
past that bound is charged its worst case (``abandoned_hung``, usage estimated), never $0.

One gateway process, the simulator behind it:

* ``patient`` (``patient-s``: streamed): ``slow`` (first-byte timeout 0.4 s, the provider
  answers in 0.8 s) fails over to ``fast``.
* ``tardy``: one deployment answering in 1.6 s, asked with ``x-interlock-timeout: 1``.
* ``hung``: ``stuck`` never answers (simulator fault ``timeout``; total time 1.5 s), then
  ``fast``.
* ``raced``: hedged; ``fast`` wins the race, and the loser (``slow``) then times out in
  turn: it is one abandoned attempt, recorded once (``<id>-hedge``, ``hedge_lost``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from interlock.settings import Settings, StorageSettings
from interlock.sim import SimControl
from interlock.spend.ledger import LedgerRecord
from interlock.spend.reconcile import abandoned_reach, reach_from, reconcile, views_from
from interlock.storage.engine import create_engine, run_migrations
from interlock.storage.ledger import ABANDONED_HUNG, LedgerStore
from tests.support.databases import db_rows
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 4.0}
Q = Decimal("1e-9")


def _ledger(gw: GatewayProcess) -> list[dict[str, Any]]:
    return db_rows(gw.workdir / "state", "SELECT * FROM ledger")


def _config(sim_url: str, state: Path) -> dict[str, Any]:
    cfg = sim_config(sim_url, state)
    cfg["spend"]["ledger_flush_interval_s"] = 0.05
    quick = {"first_byte_s": 0.4, "idle_s": 2}
    # One slow deployment per case: each one's own health (never routed around as slow).
    cfg["deployments"].update({
        name: {"provider": "sim", "model": "sim-small", "price": PRICE,
               "timeouts": {**quick, "total_s": 3}}
        for name in ("slow", "slow-s", "slow-h")
    })  # fmt: skip
    cfg["deployments"].update({
        "fast": {"provider": "sim", "model": "sim-medium", "price": PRICE},
        "tardy": {"provider": "sim", "model": "sim-tardy", "price": PRICE},
        "stuck": {"provider": "sim", "model": "sim-large", "price": PRICE,
                  "timeouts": {**quick, "total_s": 1.5}},
    })  # fmt: skip
    cfg["models"].update({
        "patient": {"deployments": ["slow", "fast"]},
        "patient-s": {"deployments": ["slow-s", "fast"]},
        "tardy": {"deployments": ["tardy"]},
        "hung": {"deployments": ["stuck", "fast"]},
        "raced": {"deployments": ["slow-h", "fast"],
                  "hedge": {"enabled": True, "min_delay_s": 0.05, "max_delay_s": 0.05}},
    })  # fmt: skip
    return cfg


def test_abandoned_attempts_are_charged_what_the_provider_billed(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    sim.set_config(prices={m: PRICE for m in ("sim-small", "sim-medium", "sim-tardy", "sim-large")})
    sim.set_faults([
        {"type": "latency", "ms": 800, "match": {"model": "sim-small"}},
        {"type": "latency", "ms": 1600, "match": {"model": "sim-tardy"}},
        {"type": "timeout", "match": {"model": "sim-large"}},
    ])  # fmt: skip
    gw = GatewayProcess(_config(sim_url, tmp_path / "state"), tmp_path).start()
    try:
        with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
            created = c.post(
                "/admin/keys",
                json={"user": "payer", "budgets": [{"limit_usd": 10, "window": "daily"}]},
            ).json()
            budget = created["budgets"][0]["id"]
            key = {"authorization": f"Bearer {created['key']}"}

            def ask(model: str, **extra: Any) -> httpx.Response:
                body = {"model": model, "max_tokens": 40,
                        "messages": [{"role": "user", "content": f"hello {model}"}], **extra}  # fmt: skip
                headers = {**key, **extra.pop("headers", {})}
                return c.post("/v1/chat/completions", json=body, headers=headers)

            plain = ask("patient")
            assert plain.status_code == 200, plain.text
            assert plain.headers["x-interlock-deployment"] == "fast"
            with c.stream(
                "POST",
                "/v1/chat/completions",
                headers=key,
                json={"model": "patient-s", "stream": True, "max_tokens": 40,
                      "messages": [{"role": "user", "content": "stream it"}]},
            ) as streamed:  # fmt: skip
                assert streamed.status_code == 200
                assert streamed.headers["x-interlock-deployment"] == "fast"
                assert b"[DONE]" in streamed.read()
            late = c.post(
                "/v1/chat/completions",
                headers={**key, "x-interlock-timeout": "1"},
                json={"model": "tardy", "max_tokens": 40,
                      "messages": [{"role": "user", "content": "in time?"}]},
            )  # fmt: skip
            assert late.status_code == 504 and late.json()["error"]["code"] == "deadline_exceeded"
            hung = ask("hung")
            assert hung.status_code == 200 and hung.headers["x-interlock-deployment"] == "fast"
            raced = ask("raced")
            assert raced.status_code == 200 and raced.headers["x-interlock-deployment"] == "fast"

            ids = {name: r.headers["x-request-id"]
                   for name, r in (("plain", plain), ("stream", streamed), ("late", late),
                                   ("hung", hung))}  # fmt: skip
            race = raced.headers["x-request-id"]
            deadline = time.monotonic() + 10
            # 5 requests (the late one: its 504) + 5 abandoned attempts, once they ended.
            while len(rows := _ledger(gw)) < 10 or c.get(f"/admin/budgets/{budget}").json()[
                "reserved_usd"
            ] not in ("0", "0.000000", 0):
                assert time.monotonic() < deadline, rows
                time.sleep(0.1)
            status = c.get(f"/admin/budgets/{budget}").json()
    finally:
        gw.stop()

    by_id = {r["request_id"]: r for r in rows}
    assert set(by_id) == {*ids.values(), *(f"{rid}-a1" for rid in ids.values()), race,
                          f"{race}-hedge"}  # fmt: skip
    expected = {
        "plain": ("abandoned_timeout", "slow"),
        "stream": ("abandoned_timeout", "slow-s"),
        "late": ("abandoned_deadline", "tardy"),
        "hung": ("abandoned_hung", "stuck"),
    }
    for name, rid in ids.items():
        main, lost = by_id[rid], by_id[f"{rid}-a1"]
        assert (lost["outcome"], lost["deployment"]) == expected[name], lost
        assert lost["key_id"] == main["key_id"] and lost["model"] == main["model"]
    for name in ("plain", "stream", "late"):
        lost = by_id[f"{ids[name]}-a1"]
        assert lost["completion_tokens"] > 0 and not lost["usage_estimated"], lost
    assert by_id[ids["late"]]["outcome"] == "deadline_exceeded"
    loser = by_id[f"{race}-hedge"]
    assert (loser["outcome"], loser["deployment"]) == ("hedge_lost", "slow-h")
    assert loser["completion_tokens"] > 0 and not loser["usage_estimated"]

    # The provider billed every attempt that answered (the abandoned ones included), and
    # nothing for the hang; the ledger says the same to 1e-9, plus the hang's worst case.
    served = sim.ledger()
    assert served["totals"]["requests"] == 9  # 4 answered + 4 abandoned + the hang
    provider = Decimal(str(served["totals"]["cost_usd"]))
    stuck = by_id[f"{ids['hung']}-a1"]
    worst = Decimal(str(stuck["cost_usd"]))
    assert stuck["usage_estimated"] and stuck["status"] == 0
    assert worst > 0 and worst == Decimal(str(stuck["reserved_usd"])).quantize(Q)
    ledger = sum((Decimal(str(r["cost_usd"])) for r in rows), Decimal(0))
    assert (ledger - worst).quantize(Q) == provider.quantize(Q)
    # Every abandoned attempt was settled against a reservation of its own: the budget has
    # spent what the ledger says and holds nothing more.
    assert Decimal(status["spent_usd"]).quantize(Q) == ledger.quantize(Q)
    assert Decimal(status["reserved_usd"]) == 0


async def test_hung_rows_are_reconciled_from_when_they_started(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    """An ``abandoned_hung`` row (worst case, dated from its attempt's start) is rewritten
    from the provider's usage API like a ``replica_lost`` row, once its deployment's total
    time (which may outlast the request timeout) has passed."""
    price = {"input_per_mtok": 3.0, "output_per_mtok": 50.0}
    cfg = Settings.model_validate({
        "state_dir": str(tmp_path),
        "server": {"request_timeout_s": 5},
        "providers": {"sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1",
                              "api_key": "k", "usage_api": {"admin_key": "sk-admin-x",
                                                            "settle_delay_s": 0}}},
        "deployments": {"small": {"provider": "sim", "model": "sim-small", "price": price,
                                  "timeouts": {"total_s": 60}}},
        "models": {"chat": {"deployments": ["small"]}},
    })  # fmt: skip
    assert abandoned_reach(cfg) == 60
    engine = create_engine(StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/r.db"))
    await run_migrations(engine, None)
    try:
        store = LedgerStore(engine)
        r = httpx.post(f"{sim_url}/v1/chat/completions", headers={"Authorization": "Bearer k"},
                       json={"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        u = r.json()["usage"]
        billed = (u["prompt_tokens"] * Decimal(3) + u["completion_tokens"] * Decimal(50)) / 10**6
        started = datetime.now(UTC)
        worst = Decimal("0.05")
        hung = LedgerRecord(request_id="req-a1", endpoint="chat", status=0,
                            outcome=ABANDONED_HUNG, model="chat", deployment="small",
                            provider="sim", usage_estimated=True, cost_usd=worst,
                            reserved_usd=worst, created_at=started)  # fmt: skip
        await store.insert_rows([hung.to_row()])
        args = (store, views_from(cfg), reach_from(cfg), started - timedelta(minutes=5))

        # 30 s after its start: past the request timeout, not past its total time.
        soon = started + timedelta(seconds=30)
        report = await reconcile(*args, soon, reach_s=5, abandoned_reach_s=60, now=soon)
        assert report.skipped == 1 and report.rewritten == 0
        later = started + timedelta(seconds=90)
        report = await reconcile(*args, later, reach_s=5, abandoned_reach_s=60, now=later)
        assert report.rewritten == 1
        (row,) = await store.lost_between(started - timedelta(minutes=5), later)
        assert row["outcome"] == ABANDONED_HUNG and Decimal(str(row["cost_usd"])) == billed
    finally:
        await engine.dispose()
