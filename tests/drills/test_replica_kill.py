"""A replica SIGKILLed while its requests are at the provider: the provider's bill stays
within the hard limit, and after the replica restarts the ledger equals the provider's
bill to the cent (issue 12, "Done when", second line).

Two replicas on Redis and PostgreSQL; the simulator answers slowly, so 20 requests are
at the provider when replica 0 dies. The provider finishes (and bills) them; nobody
records them at the time. Traffic goes on through replica 1 for longer than a hold lives
(``spend.reservation_hold_s`` is short here), so holds that were released instead of
charged would admit more. Queued jobs run too (short leases), so a job attempt killed
with the replica is re-run elsewhere: both attempts are billed and must be in the ledger.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from interlock.settings import ProviderSettings
from interlock.sim import SimControl
from tests.drills.harness import (
    ADMIN,
    Cluster,
    PgSchema,
    Result,
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
from tests.support.gateway import SIM_KEY

pytestmark = [pytest.mark.drill, pytest.mark.redis, pytest.mark.postgres]

LIMIT = Decimal("1.00")
HOLD_S = 4.0
REQUEST_TIMEOUT_S = 10.0  # server.request_timeout_s: how long a lost request could have run
BODY = {"model": "chat", "messages": [{"role": "user", "content": "a slow answer"}],
        "max_tokens": 100}  # fmt: skip
JOB = {"endpoint": "/v1/chat/completions", "body": BODY}


def reconcile(cluster: Cluster) -> str:
    """Run the ledger's reconciliation with the provider's usage API (``interlock spend
    reconcile``, up to now: the simulator's usage is complete at once); say what happened."""
    gw = cluster.replicas[0]
    config = gw.workdir / f"interlock-{gw.port}.yaml"
    cmd = [
        sys.executable,
        "-m",
        "interlock.cli.main",
        "spend",
        "reconcile",
        "--config",
        str(config),
    ]
    probe = subprocess.run([*cmd[:5], "--help"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        return "no `interlock spend reconcile` command"
    until = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "")
    done = subprocess.run([*cmd, "--since", "1h", "--until", until], capture_output=True,
                          text=True, timeout=120, cwd=gw.workdir)  # fmt: skip
    last = (done.stdout + done.stderr).strip().splitlines()[-1:] or [""]
    return f"rc={done.returncode}: {last[0][:300]}"


@pytest.mark.timeout(400)
def test_replica_killed_with_requests_at_the_provider(
    sim_url: str, sim: SimControl, tmp_path: Path, redis_url: str, pg: PgSchema
) -> None:
    cfg = drill_config(sim_url, redis_url=redis_url, pg=pg)
    cfg["spend"]["reservation_hold_s"] = HOLD_S
    cfg["jobs"] = {"lease_s": 2.0, "poll_interval_s": 0.1, "retry_base_delay_s": 0.2}
    if "usage_api" in ProviderSettings.model_fields:
        # The simulator serves OpenAI's organization usage API from its own ledger; a lost
        # request could only have run for request_timeout_s, which bounds what is compared.
        cfg["providers"]["sim"]["usage_api"] = {"admin_key": SIM_KEY, "settle_delay_s": 0}
        cfg["server"] = {"request_timeout_s": REQUEST_TIMEOUT_S}
    sim.set_config(output_tokens=100, tokens_per_s=50)  # two seconds at the provider
    with running(cfg, tmp_path, replicas=2, pg=pg, sim=sim) as cluster:
        headers, created = make_key(cluster.urls[0], user="victim-of-a-crash",
                                    budgets=[{"limit_usd": float(LIMIT), "window": "daily"}])  # fmt: skip
        time.sleep(2.5)  # both replicas have loaded the budget
        doomed_url, live_url = cluster.urls

        async def go() -> tuple[list[Result], list[str], list[Result]]:
            async with client(connections=64) as c:
                jobs = []
                for _ in range(6):
                    r = await c.post(f"{doomed_url}/v1/jobs", headers=headers, json=JOB)
                    assert r.status_code == 202, r.text
                    jobs.append(r.json()["id"])
                requests = [
                    lambda: send(c, "POST", f"{doomed_url}/v1/chat/completions",
                                 headers=headers, json=BODY, tag="doomed")
                    for _ in range(20)
                ]  # fmt: skip
                started.append(time.monotonic())
                doomed = asyncio.create_task(run_all(requests, 20))
                await asyncio.sleep(0.8)  # all 20 are at the provider now
                cluster.kill(0)
                cluster.lb.set([live_url])
                lost = await doomed
                # Keep asking through the live replica, more than the limit allows, for
                # longer than a hold lives.
                after: list[Result] = []
                end = time.monotonic() + HOLD_S + 4
                while time.monotonic() < end:
                    after += await run_all(
                        [lambda: send(c, "POST", f"{live_url}/v1/chat/completions",
                                      headers=headers, json=BODY, tag="after") for _ in range(10)],
                        10)  # fmt: skip
                return lost, jobs, after

        started: list[float] = []
        lost, jobs, after = asyncio.run(go())
        with httpx.Client(headers=headers, timeout=10) as c:
            deadline = time.monotonic() + 60
            for job in jobs:
                while time.monotonic() < deadline:
                    status = c.get(f"{live_url}/v1/jobs/{job}").json().get("status")
                    if status in ("succeeded", "failed", "cancelled"):
                        break
                    time.sleep(0.3)
        time.sleep(2.0)  # the provider has finished what the dead replica had asked for
        billed, totals = provider_bill(sim)

        cluster.restart(0)  # on its old state directory: its spool is replayed
        # The reconciler leaves a lost request alone until it can no longer be running
        # (request_timeout_s after it started): its provider may not have billed it yet.
        time.sleep(max(0.0, started[0] + REQUEST_TIMEOUT_S + 2 - time.monotonic()))
        reconciled = reconcile(cluster)
        ids = [r.request_id for r in after if r.request_id]
        rows = pg.wait_ledger(ids, timeout=60)
        deadline = time.monotonic() + 30
        while ledger_cost(rows).quantize(Decimal("0.01")) != billed.quantize(Decimal("0.01")):
            if time.monotonic() > deadline:
                break
            time.sleep(1.0)
            rows = pg.ledger()
        ledger = ledger_cost(rows)
        outcomes: dict[str, int] = {}
        for row in rows:
            outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
        budget = httpx.get(f"{cluster.urls[1]}/admin/budgets/{created['budgets'][0]['id']}",
                           headers=ADMIN, timeout=10).json()  # fmt: skip
        figures = {
            "replicas": 2,
            "limit_usd": str(LIMIT),
            "at_provider_when_killed": sum(r.status == 0 for r in lost),
            "lost_statuses": statuses(lost),
            "after_kill": {"statuses": statuses(after), "admitted": sum(r.status == 200 for r in after)},
            "jobs": len(jobs),
            "provider_requests": totals["requests"],
            "provider_billed_usd": money(billed),
            "overshoot_usd": money(max(Decimal(0), billed - LIMIT)),
            "ledger_usd": money(ledger),
            "ledger_rows_by_outcome": outcomes,
            "budget_spent_usd": budget.get("spent_usd"),
            "budget_reserved_usd": budget.get("reserved_usd"),
            "reconcile": reconciled,
        }  # fmt: skip
        checks = {
            "the replica died with its requests at the provider": all(r.status == 0 for r in lost),
            "provider billed <= limit": billed <= LIMIT,
            "ledger = provider to the cent after restart": ledger.quantize(Decimal("0.01"))
            == billed.quantize(Decimal("0.01")),
            "refusals after the kill are 429 budget_exceeded": all(
                r.status == 200 or r.code == "budget_exceeded" for r in after
            ),
        }
        record("replica_kill", figures, checks)
