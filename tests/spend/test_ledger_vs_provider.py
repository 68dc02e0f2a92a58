"""Nothing lost, nothing counted twice: the gateway's ledger against the provider's own.

One run with retries (failover after 500s), streams, client aborts, a database outage
(a TCP proxy in front of PostgreSQL is cut), and a SIGKILL of one gateway worker. Then
the ledger must hold exactly one row per request and the same total cost, to the cent,
as the simulated provider computes from the tokens it served.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.databases import drop_pg_schema, pg_ledger
from tests.support.gateway import MASTER_KEY, GatewayProcess, free_port, sim_config
from tests.support.services import PG_URL, require
from tests.support.tcpproxy import TcpProxy

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
OUTAGE_S = float(os.environ.get("INTERLOCK_TEST_DB_OUTAGE_S", "60"))
# Prices that make cents matter: ~$0.002 per request.
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 100.0}


def workers_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    kids = [int(p) for p in out]
    # uvicorn's worker processes are the children that are not the simulator/ resource tracker.
    return [k for k in kids if "interlock" in Path(f"/proc/{k}/cmdline").read_bytes().decode(errors="replace")
            or "multiprocessing" in Path(f"/proc/{k}/cmdline").read_bytes().decode(errors="replace")]  # fmt: skip


def supervisor_lines(output: str) -> list[str]:
    """What the gateway's supervisor and dying workers said (not the access log)."""
    keep = ("worker", "Traceback", "Error", "Killed", "stopping", "Finished", "Started")
    return [line[:300] for line in output.splitlines()
            if "interlock.access" not in line and any(k in line for k in keep)][-12:]  # fmt: skip


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.long  # over 45 s: run by make drills (.ci/run), keeping make test in 15 min
def test_ledger_matches_provider_through_outage_and_crash(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    require("PostgreSQL", "127.0.0.1", 5432)
    schema = "lv_" + secrets.token_hex(5)
    proxy = TcpProxy("127.0.0.1", 5432, free_port())
    proxy.start()
    db_url = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    cfg = sim_config(
        sim_url, tmp_path / "state", storage={"url": db_url, "db_schema": schema, "pool_size": 2}
    )
    cfg["spend"]["ledger_flush_interval_s"] = 0.1
    for name in ("sim-small", "sim-medium"):
        cfg["deployments"][name]["price"] = PRICE
    cfg["deployments"]["dead-chat"]["price"] = PRICE
    gw = GatewayProcess(cfg, tmp_path, workers=2).start(timeout=60)
    request_ids: list[str] = []
    try:
        with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
            key = c.post("/admin/keys", json={"user": "ledger"}).json()["key"]
            user = {"authorization": f"Bearer {key}"}

            def burst(tag: str) -> None:
                for i in range(6):
                    r = c.post("/v1/chat/completions", headers=user,
                               json={"model": "chat", "messages": [{"role": "user", "content": f"{tag} {i}"}]})  # fmt: skip
                    assert r.status_code == 200, r.text
                    request_ids.append(r.headers["x-request-id"])
                # Retries: the first deployment of "failover" is dead; requests fail over (until
                # its circuit opens, after which it is skipped without an attempt).
                r = c.post(
                    "/v1/chat/completions",
                    headers=user,
                    json={"model": "failover", "messages": [{"role": "user", "content": tag}]},
                )
                assert r.status_code == 200 and r.headers["x-interlock-deployment"] == "sim-medium"
                request_ids.append(r.headers["x-request-id"])
                # Streams, read to the end.
                with c.stream("POST", "/v1/chat/completions", headers=user,
                              json={"model": "chat", "stream": True, "messages": [{"role": "user", "content": f"s {tag}"}]}) as s:  # fmt: skip
                    list(s.iter_lines())
                    request_ids.append(s.headers["x-request-id"])
                # A client that goes away mid-stream: charged for what was generated.
                sim.set_config(tokens_per_s=50)
                with c.stream("POST", "/v1/chat/completions", headers=user,
                              json={"model": "chat", "stream": True, "max_tokens": 200,
                                    "messages": [{"role": "user", "content": f"abort {tag}"}]}) as s:  # fmt: skip
                    lines = s.iter_lines()
                    next(line for line in lines if line.startswith("data: "))
                    request_ids.append(s.headers["x-request-id"])
                sim.set_config(tokens_per_s=0)

            burst("before")
            # Every worker verifies the key once (fresh connections reach both), so each can
            # keep accepting it while the key store is down (auth.stale_on_error_s).
            for _ in range(12):
                r = httpx.post(f"{gw.url}/v1/chat/completions", headers=user, timeout=30,
                               json={"model": "chat", "messages": [{"role": "user", "content": "warm"}]})  # fmt: skip
                request_ids.append(r.headers["x-request-id"])
            proxy.cut()  # the database is gone
            outage_end = time.monotonic() + OUTAGE_S
            while time.monotonic() < outage_end:
                try:
                    burst("during")
                except httpx.TransportError as exc:
                    # Say why in the failure line itself (CI shows little more).
                    raise AssertionError(f"{exc!r}; gateway exit {gw.proc.poll()}; "  # type: ignore[union-attr]
                                         f"{supervisor_lines(gw.output())}") from exc  # fmt: skip
                time.sleep(min(5.0, max(0.0, outage_end - time.monotonic())))
            assert c.get("/readyz").status_code == 503  # it says so
            workers = workers_of(gw.proc.pid)  # type: ignore[union-attr]
            assert workers, "no worker processes found"
            os.kill(workers[0], signal.SIGKILL)  # its spool is left behind, unflushed
            time.sleep(1.0)
            proxy.start()  # the database is back
            deadline = time.monotonic() + 30
            while c.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.5)
            burst("after")
        deadline = time.monotonic() + 60
        while True:
            rows = pg_ledger(schema)
            if len(rows) >= len(request_ids):
                break
            assert time.monotonic() < deadline, f"{len(rows)} of {len(request_ids)} records"
            time.sleep(1.0)
        ids = [r["request_id"] for r in rows]
        assert len(ids) == len(set(ids)), "duplicates"
        assert set(request_ids) <= set(ids), f"lost: {set(request_ids) - set(ids)}"
        ledger_cost = sum((Decimal(str(r["cost_usd"])) for r in rows), Decimal(0))
        served = sim.ledger()["totals"]
        provider_cost = (
            served["prompt_tokens"] * Decimal(1) + served["completion_tokens"] * Decimal(100)
        ) / 1_000_000
        print(f"{len(rows)} records, ledger ${ledger_cost}, provider ${provider_cost}")
        assert ledger_cost.quantize(Decimal("0.01")) == provider_cost.quantize(Decimal("0.01"))
        # Aborted streams carry no provider usage: their tokens are estimated (flagged).
        assert (
            abs(sum(r["completion_tokens"] for r in rows) - served["completion_tokens"]) <= 10 * 3
        )
    except BaseException:
        print(gw.output()[-20000:])  # the gateway's own account of the failure
        raise
    finally:
        gw.stop()
        proxy.close()
        drop_pg_schema(schema)
