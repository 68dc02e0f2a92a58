"""Rate limits over real HTTP: 429 rate_limited with headers, waiting, and 4 replicas on Redis."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config
from tests.support.services import require

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
MSG = [{"role": "user", "content": "hi"}]


def test_key_rpm_limit_headers_and_wait(sim_url: str, sim: SimControl, tmp_path: Path) -> None:
    gw = GatewayProcess(sim_config(sim_url, tmp_path / "state"), tmp_path).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            k = c.post("/admin/keys", headers=ADMIN, json={"rate_limits": {"rpm": 3}}).json()["key"]
            key = {"authorization": f"Bearer {k}"}
            codes = []
            for _ in range(5):
                r = c.post(
                    "/v1/chat/completions", json={"model": "chat", "messages": MSG}, headers=key
                )
                codes.append(r.status_code)
                if r.status_code == 200:
                    assert r.headers["x-ratelimit-limit-requests"] == "3"
                    last_ok = r
            assert codes == [200, 200, 200, 429, 429]
            assert last_ok.headers["x-ratelimit-remaining-requests"] == "0"
            assert r.json()["error"]["code"] == "rate_limited"
            assert 15 <= float(r.headers["retry-after"]) <= 21  # 60 s / 3 per request
            assert r.headers["x-ratelimit-limit-requests"] == "3"
            # A key that may wait gets capacity instead of a 429.
            w = c.post(
                "/admin/keys", headers=ADMIN, json={"rate_limits": {"rpm": 60, "max_wait_s": 3}}
            ).json()["key"]
            wkey = {"authorization": f"Bearer {w}"}
            started = time.monotonic()
            statuses = [c.post("/v1/chat/completions", json={"model": "chat", "messages": MSG}, headers=wkey).status_code
                        for _ in range(62)]  # fmt: skip
            assert statuses == [200] * 62 and time.monotonic() - started >= 1.0
            bad = c.post("/admin/keys", headers=ADMIN, json={"rate_limits": {"rpm": 0}})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "rate_limits.rpm"
    finally:
        gw.stop()


def test_tpm_limit_from_config(sim_url: str, sim: SimControl, tmp_path: Path) -> None:
    cfg = sim_config(sim_url, tmp_path / "state")
    cfg["spend"]["rate_limits"] = [{"scope": "model", "subject": "chat", "tpm": 200}]
    gw = GatewayProcess(cfg, tmp_path).start()
    try:
        with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
            body = {"model": "chat", "messages": MSG, "max_tokens": 60}
            # Admitted at prompt + max_tokens, corrected to the actual ~24 tokens afterwards.
            codes = [c.post("/v1/chat/completions", json=body).status_code for _ in range(15)]
            assert codes[0] == 200 and 429 in codes
            too_big = c.post("/v1/chat/completions", json={**body, "max_tokens": 500})
            assert (
                too_big.status_code == 429 and "alone exceeds" in too_big.json()["error"]["message"]
            )
            assert (
                c.post(
                    "/v1/chat/completions", json={"model": "sim-large", "messages": MSG}
                ).status_code
                == 200
            )
    finally:
        gw.stop()


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.long  # ~15 s of replicas/processes: run by make drills (.ci/run)
def test_rpm_is_exact_across_four_replicas(sim_url: str, sim: SimControl, tmp_path: Path) -> None:
    require("Redis", "127.0.0.1", 6379)
    cfg = sim_config(sim_url, tmp_path / "state",
                     state={"backend": "redis", "key_prefix": f"rl{secrets.token_hex(4)}:", "redis_timeout_s": 0.5})  # fmt: skip
    cfg["spend"]["rate_limits"] = [{"scope": "user", "subject": "bursty", "rpm": 40}]
    replicas = [GatewayProcess(cfg, tmp_path / f"r{i}").start(timeout=60) for i in range(4)]
    try:
        k = httpx.post(
            f"{replicas[0].url}/admin/keys", headers=ADMIN, json={"user": "bursty"}
        ).json()["key"]
        key = {"authorization": f"Bearer {k}"}
        started = time.monotonic()

        def one(i: int) -> int:
            return httpx.post(f"{replicas[i % 4].url}/v1/chat/completions", headers=key, timeout=30,
                              json={"model": "chat", "messages": MSG}).status_code  # fmt: skip

        with ThreadPoolExecutor(40) as pool:
            codes = list(pool.map(one, range(200)))
        elapsed = time.monotonic() - started
        admitted = codes.count(200)
        refill = int(elapsed * 40 / 60) + 1
        print(f"admitted {admitted} of 200 in {elapsed:.2f}s (limit 40 + refill {refill})")
        assert set(codes) <= {200, 429}
        assert 40 <= admitted <= 40 + refill
        assert sim.ledger()["totals"]["requests"] == admitted
    finally:
        for r in replicas:
            r.stop()
