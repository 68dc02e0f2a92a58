"""Money under upstream timeouts: a call the gateway gives up on (its first-byte timeout)
is still answered, and billed, by the provider; retried, each attempt is. The hard
limit must hold all the same (issue 12: "every paid call reserves the worst case ...
aborted, killed or retried, every generated token lands in the ledger").

Two replicas on Redis and PostgreSQL; a deployment whose first-byte timeout (1 s) is
shorter than the provider's answer (2 s of latency): every attempt times out at the
gateway, and the simulator bills every one of them in full. The gateway keeps reading
each abandoned call and records it (its own ``abandoned_timeout`` row, settled against a
reservation of its own): ledger = provider to the cent."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import pytest

from interlock.sim import SimControl
from tests.drills.harness import (
    PgSchema,
    client,
    drill_config,
    ledger_cost,
    make_key,
    money,
    provider_bill,
    record,
    run_all,
    running,
    send,
    statuses,
)

pytestmark = [pytest.mark.drill, pytest.mark.redis, pytest.mark.postgres]

LIMIT = Decimal("0.50")
CENT = Decimal("0.01")
# Both bills are sums of floats (the provider's running total, the ledger's rows): they may
# differ in the last bits, so "never below" is judged to a millionth of a dollar.
MICRO = Decimal("0.000001")
BODY = {"model": "hung", "messages": [{"role": "user", "content": "too slow"}], "max_tokens": 100}


@pytest.mark.timeout(300)
def test_timed_out_attempts_stay_within_the_limit(
    sim_url: str, sim: SimControl, tmp_path: Path, redis_url: str, pg: PgSchema
) -> None:
    cfg = drill_config(sim_url, redis_url=redis_url, pg=pg)
    cfg["deployments"]["hung"] = {
        "provider": "sim", "model": "sim-hung", "price": cfg["deployments"]["sim-small"]["price"],
        "timeouts": {"connect_s": 1, "first_byte_s": 1, "idle_s": 1, "total_s": 5},
        # A breaker would stop the calls after a few: the money must hold without it
        # (a provider slow for some requests only never trips one).
        "breaker": {"consecutive_failures": 10_000, "min_calls": 10_000},
    }  # fmt: skip
    cfg["models"]["hung"] = {"deployments": ["hung"]}
    sim.set_config(output_tokens=100)
    sim.set_faults([{"type": "latency", "ms": 2000, "match": {"model": "sim-hung"}}])
    with running(cfg, tmp_path, replicas=2, pg=pg, sim=sim) as cluster:
        headers, _ = make_key(cluster.urls[0], user="patient-payer",
                              budgets=[{"limit_usd": float(LIMIT), "window": "daily"}])  # fmt: skip
        time.sleep(2.5)  # both replicas have loaded the budget

        async def go() -> list:
            async with client(connections=16) as c:
                return await run_all(
                    [lambda i=i: send(c, "POST", f"{cluster.lb()}/v1/chat/completions",
                                      headers=headers, json={**BODY, "user": f"u{i}"})
                     for i in range(60)],
                    8,
                )  # fmt: skip

        results = asyncio.run(go())
        time.sleep(3.0)  # the provider finishes (and bills) what the gateway gave up on
        billed, totals = provider_bill(sim)
        rows = pg.wait_ledger([r.request_id for r in results], timeout=60)
        # Each call the gateway gave up on is recorded (its own row) once it ended.
        deadline = time.monotonic() + 30
        while (
            len(abandoned := [r for r in rows if r["outcome"] == "abandoned_timeout"])
            < totals["requests"]
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
            rows = pg.ledger()
        ledger = ledger_cost(rows)
        figures = {
            "replicas": 2,
            "limit_usd": str(LIMIT),
            "requests": len(results),
            "statuses": statuses(results),
            "provider_calls": totals["requests"],
            "provider_billed_usd": money(billed),
            "overshoot_usd": money(max(Decimal(0), billed - LIMIT)),
            "ledger_usd": money(ledger),
            "abandoned_rows": len(abandoned),
        }
        checks = {
            "provider billed <= limit": billed <= LIMIT,
            "the ledger never reads below the provider": ledger >= billed - MICRO,
            "ledger = provider to the cent": ledger.quantize(CENT) == billed.quantize(CENT),
            "every abandoned call has its own ledger row": len(abandoned) == totals["requests"],
            "the provider was called (the drill exercised timeouts)": totals["requests"] > 0,
        }
        record("timeout_money", figures, checks)
