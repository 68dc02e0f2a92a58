"""The database cut during traffic (a TCP proxy in front of PostgreSQL drops every
connection and refuses new ones for 20 s): no spend record is lost. Once the database is
back, the ledger has one row per request the provider served, and the same total cost
to the cent (issue 12, the fault suite of item 6)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.drills.harness import (
    PgSchema,
    Result,
    client,
    drill_config,
    keep_sending,
    latency_figures,
    ledger_cost,
    make_key,
    money,
    provider_bill,
    record,
    running,
    send,
    statuses,
)

pytestmark = [pytest.mark.drill, pytest.mark.redis, pytest.mark.postgres]

BEFORE_S, CUT_S, AFTER_S = 4.0, 20.0, 4.0


@pytest.mark.timeout(300)
def test_database_cut_loses_no_spend_record(
    sim_url: str, sim: SimControl, tmp_path: Path, redis_url: str, pg_proxied: PgSchema
) -> None:
    pg = pg_proxied
    assert pg.proxy is not None
    cfg = drill_config(sim_url, redis_url=redis_url, pg=pg)
    cfg["storage"]["pool_size"] = 2
    sim.set_config(tokens_per_s=400)  # streams take a moment: some are open at the cut
    with running(cfg, tmp_path, replicas=2, pg=pg, sim=sim) as cluster:
        headers, _ = make_key(cluster.urls[0], user="through-the-outage")
        warm_ids = []  # the warm-up requests are served and billed too
        for url in cluster.urls:  # each replica has verified the key before the outage
            r = httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=30,
                           json={"model": "chat", "messages": [{"role": "user", "content": "warm"}]})  # fmt: skip
            assert r.status_code == 200, r.text
            warm_ids.append(r.headers["x-request-id"])

        async def go() -> tuple[list[Result], float, float]:
            async with client(connections=16) as c:
                stop = asyncio.Event()

                def job(i: int) -> Awaitable[Result]:
                    stream = i % 3 == 0
                    return send(
                        c, "POST", f"{cluster.lb()}/v1/chat/completions", headers=headers,
                        tag="stream" if stream else "plain", stream_read=10_000 if stream else None,
                        json={"model": "chat", "stream": stream,
                              "messages": [{"role": "user", "content": f"outage {i}"}]})  # fmt: skip

                load = asyncio.ensure_future(keep_sending(job, stop, 6, 0.02))
                await asyncio.sleep(BEFORE_S)
                cut_at = time.monotonic()
                pg.proxy.cut()  # type: ignore[union-attr]
                await asyncio.sleep(CUT_S)
                pg.proxy.start()  # type: ignore[union-attr]
                back_at = time.monotonic()
                await asyncio.sleep(AFTER_S)
                stop.set()
                return await load, cut_at, back_at

        results, cut_at, back_at = asyncio.run(go())
        served = [r for r in results if r.status == 200]
        during = [r for r in results if cut_at <= r.started <= back_at]
        t_wait = time.monotonic()
        rows = pg.wait_ledger([r.request_id for r in results] + warm_ids, timeout=90)
        caught_up_s = time.monotonic() - t_wait
        billed, totals = provider_bill(sim)
        ledger = ledger_cost(rows)
        ids = [r["request_id"] for r in rows]
        figures = {
            "replicas": 2,
            "cut_s": CUT_S,
            "requests": len(results) + len(warm_ids),
            "during_cut": {"requests": len(during), "statuses": statuses(during),
                           **latency_figures(during)},
            "statuses": statuses(results),
            "provider_requests": totals["requests"],
            "ledger_rows": len(rows),
            "provider_usd": money(billed),
            "ledger_usd": money(ledger),
            "ledger_caught_up_after_s": round(caught_up_s, 1),
        }  # fmt: skip
        checks = {
            "no duplicate ledger rows": len(ids) == len(set(ids)),
            "ledger rows = requests the provider served": len(rows) == totals["requests"],
            "ledger = provider to the cent": ledger.quantize(Decimal("0.01"))
            == billed.quantize(Decimal("0.01")),
            "traffic served through the outage": len(served) == len(results),
        }
        record("db_cut", figures, checks)
