"""A hard limit holds across replicas: 200 concurrent requests, 4 gateway processes, Redis."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config
from tests.support.services import require

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
MSG = [{"role": "user", "content": "write a line about budgets"}]
PRICE_IN, PRICE_OUT = Decimal(500), Decimal(2000)  # USD per 1M tokens: ~$0.04 a request


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.long  # ~15 s of replicas/processes: run by make drills (.ci/run)
def test_hard_limit_is_not_overshot_by_four_replicas(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    require("Redis", "127.0.0.1", 6379)
    prefix = f"bt{secrets.token_hex(4)}:"
    cfg = sim_config(
        sim_url,
        tmp_path / "state",
        state={"backend": "redis", "key_prefix": prefix, "redis_timeout_s": 0.5},
    )
    cfg["deployments"]["pricey"] = {"provider": "sim", "model": "sim-medium",
                                    "price": {"input_per_mtok": float(PRICE_IN), "output_per_mtok": float(PRICE_OUT)}}  # fmt: skip
    cfg["models"]["pricey"] = {"deployments": ["pricey"]}
    # Four processes sharing one SQLite file and one Redis (the cluster's shared parts).
    replicas = [GatewayProcess(cfg, tmp_path / f"r{i}").start(timeout=60) for i in range(4)]
    try:
        created = httpx.post(f"{replicas[0].url}/admin/keys", headers=ADMIN,
                             json={"user": "spender", "budgets": [{"limit_usd": 1.0, "window": "daily"}]}).json()  # fmt: skip
        key = {"authorization": f"Bearer {created['key']}"}

        def one(i: int) -> tuple[int, Decimal, str]:
            url = replicas[i % 4].url
            r = httpx.post(f"{url}/v1/chat/completions", headers=key, timeout=60,
                           json={"model": "pricey", "messages": MSG, "max_tokens": 16})  # fmt: skip
            cost = Decimal(r.headers.get("x-interlock-cost-usd", "0"))
            return (
                r.status_code,
                cost,
                r.json().get("error", {}).get("code", "") if r.status_code != 200 else "",
            )

        time.sleep(2.5)  # every replica has reloaded budgets (spend.budget_reload_s = 2)
        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(one, range(200)))
        ok = [c for s, c, _ in results if s == 200]
        refused = [code for s, _, code in results if s != 200]
        assert set(refused) <= {"budget_exceeded"}, refused
        spent = sum(ok, Decimal(0))
        overshoot = spent - Decimal("1.0")
        print(f"admitted {len(ok)}, refused {len(refused)}, spent ${spent}, overshoot ${overshoot}")
        assert overshoot <= 0, f"overshoot ${overshoot}"
        assert len(ok) >= 10  # it did admit up to the limit, not refuse everything
        # The provider's own ledger agrees with what the gateway charged.
        served = sim.ledger()["totals"]
        provider_cost = (
            served["prompt_tokens"] * PRICE_IN + served["completion_tokens"] * PRICE_OUT
        ) / 1_000_000
        assert provider_cost == spent
        status = httpx.get(
            f"{replicas[3].url}/admin/budgets/{created['budgets'][0]['id']}", headers=ADMIN
        ).json()
        assert Decimal(status["spent_usd"]) == spent and Decimal(status["reserved_usd"]) == 0
    finally:
        for r in replicas:
            r.stop()
