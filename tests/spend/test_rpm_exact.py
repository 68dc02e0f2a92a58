"""RPM limits are exact across replicas on a healthy Redis, and fail open only boundedly.

* Replicas on one Redis, a concurrent burst, a global ``rpm``: the admitted count is the
  limit (plus what GCRA refills while the burst lasts, one per ``60/rpm`` s), every
  refusal is ``429 rate_limited``, no 5xx, and the provider saw exactly the admitted
  requests. Two replicas in ``make test``; four replicas and 300 requests as a drill.
* Redis unreachable under ``fail_open``: each process admits its local share of the
  limit, then refuses — never an unlimited amount.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.errors import RateLimited
from interlock.settings import SpendSettings
from interlock.sim import SimControl
from interlock.spend.limits import RateLimits
from interlock.state.ratelimit_redis import RedisRateLimiter
from interlock.state.redis_connect import connect
from interlock.types import Principal
from tests.support.gateway import MASTER_KEY, GatewayProcess, free_port, sim_config
from tests.support.services import REDIS_URL, require

BODY = {"model": "chat", "messages": [{"role": "user", "content": "a burst"}], "max_tokens": 4}


async def test_fail_open_is_bounded_by_the_local_share() -> None:
    dead = connect(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.5)
    cfg = SpendSettings(rate_limits_on_state_error="fail_open", rate_limits_local_share=0.5)
    limits = RateLimits(cfg, RedisRateLimiter(dead, "x:", timeout_s=0.1))  # type: ignore[arg-type]
    who = Principal("k1", rpm=10, tpm=1000)
    admitted = 0
    refused: list[RateLimited] = []
    for _ in range(12):
        try:
            adm = await limits.admit(who, "chat", lambda: 50)
        except RateLimited as err:
            refused.append(err)
            continue
        assert adm is not None and adm.local
        admitted += 1
        await limits.finish(adm, 50)
    await dead.aclose()
    assert admitted == 5  # half of 10, in this process
    assert len(refused) == 7 and all(e.code == "rate_limited" for e in refused)


def _config(sim_url: str, state_dir: Path, prefix: str, rpm: int) -> dict[str, Any]:
    return sim_config(
        sim_url,
        state_dir,
        # Default Redis timeouts: what production gets.
        state={"backend": "redis", "redis_url": REDIS_URL, "key_prefix": prefix},
        spend={
            "unknown_price": {"action": "allow", "input_per_mtok": 1.0, "output_per_mtok": 2.0},
            "rate_limits": [{"scope": "global", "rpm": rpm}],
        },
    )


async def _burst(urls: list[str], n: int) -> tuple[list[tuple[int, str | None]], float]:
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        # Warm one connection per client slot, so the burst measures the gateway.
        await asyncio.gather(*(client.get(f"{u}/healthz") for u in urls for _ in range(4)))

        async def one(i: int) -> tuple[int, str | None]:
            r = await client.post(
                f"{urls[i % len(urls)]}/v1/chat/completions", json=BODY, headers=headers
            )
            code = r.json().get("error", {}).get("code") if r.status_code != 200 else None
            return r.status_code, code

        t0 = time.monotonic()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        return list(results), time.monotonic() - t0


def _check_burst(
    sim_url: str, sim: SimControl, tmp_path: Path, replicas: int, n: int, rpm: int
) -> None:
    require("Redis", "127.0.0.1", 6379)
    prefix = f"test:rpm:{time.time_ns()}:"
    gws = [
        GatewayProcess(_config(sim_url, tmp_path / f"s{i}", prefix, rpm), tmp_path / f"g{i}")
        for i in range(replicas)
    ]
    try:
        for gw in gws:
            gw.start(timeout=60)
        before = sim.ledger()["totals"]["requests"]
        results, seconds = asyncio.run(_burst([gw.url for gw in gws], n))
        served = sim.ledger()["totals"]["requests"] - before
    finally:
        for gw in gws:
            gw.stop()
    admitted = sum(1 for status, _ in results if status == 200)
    others = [(s, c) for s, c in results if s != 200 and not (s == 429 and c == "rate_limited")]
    refill = math.floor(seconds / (60 / rpm))
    print(f"{replicas} replicas, {n} requests, rpm {rpm}: admitted {admitted} in {seconds:.2f}s")
    assert others == [], others[:5]  # no spurious 503 (fail closed) or 5xx
    assert rpm <= admitted <= rpm + refill, (admitted, seconds)  # no fail-open leak
    assert served == admitted


@pytest.mark.redis
def test_rpm_exact_on_two_replicas(sim_url: str, sim: SimControl, tmp_path: Path) -> None:
    _check_burst(sim_url, sim, tmp_path, replicas=2, n=120, rpm=40)


@pytest.mark.redis
@pytest.mark.drill
@pytest.mark.timeout(300)
def test_rpm_exact_on_four_replicas_300_burst(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    _check_burst(sim_url, sim, tmp_path, replicas=4, n=300, rpm=60)
