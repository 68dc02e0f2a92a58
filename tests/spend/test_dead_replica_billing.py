"""A worker SIGKILLed while its requests are at the provider: never over the hard limit,
nothing missing from the ledger, and the ledger equals the provider's bill to the cent
once reconciled with the provider's usage API.

A real two-worker gateway on Redis and PostgreSQL, the simulated provider answering at a
finite speed, a $1.00 daily hard limit. Concurrent clients (streams and plain requests)
spend until the budget refuses them; one worker is killed while requests are in flight
on it. Its holds stay counted (charged, never released), the surviving worker replays
its spool (every request it had sent upstream becomes a ``replica_lost`` row at its
worst case), and ``interlock spend reconcile`` replaces those worst cases by what the
simulator's usage endpoint says it billed.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import redis

from interlock.sim import SimControl
from tests.support.databases import drop_pg_schema, pg_ledger
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config
from tests.support.services import PG_URL, REDIS_URL, delete_redis_keys, require

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
PRICE_IN, PRICE_OUT = Decimal(1), Decimal(500)  # USD per 1M tokens: ~$0.008 a request
LIMIT = Decimal("1.00")


def workers_of(pid: int) -> list[int]:
    """uvicorn's worker processes under the supervisor (multiprocessing spawns; not its
    resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    found = []
    for child in map(int, out.split()):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return sorted(found)


def sockets_of(pid: int) -> int:
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
            except OSError:
                continue
    except OSError:
        return 0
    return n


def provider_bill(sim: SimControl) -> tuple[Decimal, int]:
    served = sim.ledger()
    total = (
        served["totals"]["prompt_tokens"] * PRICE_IN
        + served["totals"]["completion_tokens"] * PRICE_OUT
    ) / 1_000_000
    return total, len(served["entries"])


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.drill
def test_killed_worker_is_charged_recorded_and_reconciled(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    require("Redis", "127.0.0.1", 6379)
    require("PostgreSQL", "127.0.0.1", 5432)
    schema = "dr_" + secrets.token_hex(5)
    prefix = f"dr{secrets.token_hex(4)}:"
    cfg = sim_config(
        sim_url,
        tmp_path / "state",
        storage={"url": PG_URL, "db_schema": schema, "pool_size": 4},
        state={"backend": "redis", "key_prefix": prefix, "redis_timeout_s": 0.5},
    )
    cfg["server"] = {"request_timeout_s": 15}
    cfg["spend"]["ledger_flush_interval_s"] = 0.1
    cfg["providers"]["sim"]["usage_api"] = {"admin_key": "sk-admin-drill", "settle_delay_s": 0}
    cfg["deployments"]["pricey"] = {"provider": "sim", "model": "sim-medium",
                                    "price": {"input_per_mtok": float(PRICE_IN),
                                              "output_per_mtok": float(PRICE_OUT)}}  # fmt: skip
    cfg["models"]["pricey"] = {"deployments": ["pricey"]}
    sim.set_config(tokens_per_s=12)  # 16 tokens: ~1.3 s at the provider per request
    gw = GatewayProcess(cfg, tmp_path, workers=2).start(timeout=90)
    statuses: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    try:
        created = httpx.post(f"{gw.url}/admin/keys", headers=ADMIN, timeout=30,
                             json={"user": "spender", "budgets": [{"limit_usd": float(LIMIT), "window": "daily"}]}).json()  # fmt: skip
        key = {"authorization": f"Bearer {created['key']}"}
        time.sleep(2.5)  # every worker has the budget (spend.budget_reload_s)

        def client(n: int) -> None:
            refused_in_a_row = 0
            i = 0
            while not stop.is_set() and refused_in_a_row < 3:
                i += 1
                body = {"model": "pricey", "max_tokens": 16, "stream": (n + i) % 3 == 0,
                        "messages": [{"role": "user", "content": f"client {n} request {i}"}]}  # fmt: skip
                try:
                    # A fresh connection each time: uvicorn's workers share the socket.
                    with httpx.Client(timeout=30) as c:
                        r = c.post(f"{gw.url}/v1/chat/completions", headers=key, json=body)
                        _ = r.content
                    status = r.status_code
                except httpx.HTTPError:
                    status = -1  # the worker serving it was killed
                with lock:
                    statuses.append(status)
                refused_in_a_row = refused_in_a_row + 1 if status == 429 else 0
                if status == -1:
                    time.sleep(0.2)

        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(client, n) for n in range(12)]
            time.sleep(2.0)  # requests are at the provider
            workers = workers_of(gw.proc.pid)  # type: ignore[union-attr]
            assert len(workers) >= 2, workers
            # The worker holding the most connections (clients' among them) right now.
            os.kill(max(workers, key=sockets_of), signal.SIGKILL)
            killed_at = time.monotonic()
            deadline = time.monotonic() + 120
            for f in futures:
                f.result(timeout=max(1.0, deadline - time.monotonic()))
        print(f"statuses: { {s: statuses.count(s) for s in set(statuses)} }, "
              f"{time.monotonic() - killed_at:.1f} s after the kill")  # fmt: skip
        assert statuses.count(-1) >= 1, "the kill hit no request in flight"
        assert 429 in statuses
        billed, served = provider_bill(sim)
        print(f"provider billed ${billed} for {served} requests; limit ${LIMIT}")
        assert billed <= LIMIT  # $0 overshoot, with a worker killed mid-run

        # The surviving (or restarted) worker replays the dead one's spool.
        deadline = time.monotonic() + 60
        while True:
            rows = pg_ledger(schema)
            lost = [r for r in rows if r["outcome"] == "replica_lost"]
            charged = [r for r in rows if r["status"] == 200 or r["outcome"] == "replica_lost"]
            if lost and len(charged) >= served:
                break
            assert time.monotonic() < deadline, (len(rows), len(lost), served)
            time.sleep(1.0)
        ledger_total = sum((Decimal(str(r["cost_usd"])) for r in rows), Decimal(0))
        print(f"ledger ${ledger_total} ({len(rows)} rows, {len(lost)} replica_lost) "
              f"before reconcile; provider ${billed}")  # fmt: skip
        assert ledger_total >= billed  # never below what the provider could have billed
        assert all(r["cost_usd"] == r["reserved_usd"] > 0 for r in lost)

        # The counters: every hold of the dead worker is charged, none released.
        with redis.Redis.from_url(REDIS_URL) as rc:
            budget_keys = [k for k in rc.keys(prefix + "budget:*")
                           if not k.endswith((b":r", b":h", b":a", b":x", b":c"))]  # fmt: skip
            assert len(budget_keys) == 1
            settled = Decimal(int(rc.get(budget_keys[0]))) / 10**9
            held = Decimal(int(rc.get(budget_keys[0] + b":r") or 0)) / 10**9
        print(f"counter: settled ${settled}, held ${held}")
        assert held == 0 and settled <= LIMIT
        assert settled >= billed

        # Reconcile with the provider's usage API once nothing can still be billed.
        time.sleep(max(0.0, 16 - (time.monotonic() - killed_at)))
        config = next(tmp_path.glob("interlock-*.yaml"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
        out = subprocess.run(
            [sys.executable, "-m", "interlock.cli.main", "spend", "reconcile", "--config",
             str(config), "--since", "1h", "--until", datetime.now(UTC).isoformat()],
            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
        )  # fmt: skip
        print(out.stdout, out.stderr)
        assert out.returncode == 0
        rows = pg_ledger(schema)
        ledger_total = sum((Decimal(str(r["cost_usd"])) for r in rows), Decimal(0))
        billed, _ = provider_bill(sim)
        print(f"after reconcile: ledger ${ledger_total}, provider ${billed}")
        assert ledger_total.quantize(Decimal("0.01")) == billed.quantize(Decimal("0.01"))
    except BaseException:
        print(gw.output()[-20000:])
        raise
    finally:
        stop.set()
        gw.stop()
        delete_redis_keys(prefix)
        drop_pg_schema(schema)
