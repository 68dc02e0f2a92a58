"""Healthy Redis, a 300-request burst on 4 replicas with the default Redis timeouts:
0 spurious 503s, and an RPM limit of 60 admits exactly 60 (issue 12, "Done when")."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from interlock.sim import SimControl
from tests.drills.harness import (
    Cluster,
    PgSchema,
    Result,
    client,
    drill_config,
    latency_figures,
    make_key,
    record,
    run_all,
    running,
    send,
    statuses,
)

pytestmark = [pytest.mark.drill, pytest.mark.redis, pytest.mark.postgres]

BURST = 300
RPM = 60
BODY = {"model": "chat", "messages": [{"role": "user", "content": "a burst"}], "max_tokens": 8}


async def burst(cluster: Cluster, headers: dict[str, str]) -> tuple[list[Result], float]:
    async with client(connections=BURST) as c:
        t0 = time.monotonic()
        results = await run_all(
            [
                lambda: send(
                    c, "POST", f"{cluster.lb()}/v1/chat/completions", headers=headers, json=BODY
                )
                for _ in range(BURST)
            ],
            BURST,
        )
        return results, time.monotonic() - t0


@pytest.mark.timeout(300)
def test_burst_on_four_replicas(
    sim_url: str, sim: SimControl, tmp_path: Path, redis_url: str, pg: PgSchema
) -> None:
    cfg = drill_config(sim_url, redis_url=redis_url, pg=pg)  # default state.redis_timeout_s
    with running(cfg, tmp_path, replicas=4, sim=sim) as cluster:
        # A budget puts every request through the Redis reservation script; the RPM key
        # through the Redis rate-limit script.
        budgeted, _ = make_key(cluster.urls[0], user="burst",
                               budgets=[{"limit_usd": 1000, "window": "daily"}])  # fmt: skip
        limited, _ = make_key(cluster.urls[0], user="rpm", rate_limits={"rpm": RPM})
        time.sleep(2.5)  # every replica has loaded the new budget (spend.budget_reload_s)

        free, free_s = asyncio.run(burst(cluster, budgeted))
        served_free = sim.ledger()["totals"]["requests"]
        rpm, rpm_s = asyncio.run(burst(cluster, limited))
        served_rpm = sim.ledger()["totals"]["requests"] - served_free
        admitted = sum(r.status == 200 for r in rpm)
        # GCRA refills one request a second at 60 RPM: a burst that lasts t seconds may
        # admit floor(t) more than the bucket's 60, and no other.
        refill = int(rpm_s)
        figures = {
            "replicas": 4,
            "budgeted_burst": {"requests": BURST, "statuses": statuses(free),
                               "seconds": round(free_s, 2), **latency_figures(free)},
            "rpm_burst": {"requests": BURST, "rpm": RPM, "admitted": admitted,
                          "refill_allowance": refill, "statuses": statuses(rpm),
                          "seconds": round(rpm_s, 2), **latency_figures(rpm)},
            "provider_calls": {"budgeted": served_free, "rpm": served_rpm},
        }  # fmt: skip
        checks = {
            "budgeted burst: every request served (0 spurious 503s)": all(
                r.status == 200 for r in free
            ),
            "rpm burst: no 5xx": all(0 < r.status < 500 for r in rpm),
            "rpm burst: refusals are 429 rate_limited": all(
                r.status == 200 or (r.status == 429 and r.code == "rate_limited") for r in rpm
            ),
            f"rpm {RPM} admits exactly {RPM} (+ refill during the burst)": RPM
            <= admitted
            <= RPM + refill,
            "the provider saw exactly the admitted requests": served_free == BURST
            and served_rpm == admitted,
        }
        record("burst", figures, checks)
