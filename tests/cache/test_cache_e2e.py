"""The answer cache over real HTTP: hits per tier, tenants, streams, single flight, degradation."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, free_port, sim_config
from tests.support.services import require
from tests.support.tcpproxy import TcpProxy

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
BODY = {
    "model": "chat",
    "temperature": 0,
    "messages": [{"role": "user", "content": "what is a railway interlocking?"}],
}


@pytest.fixture
def gw(sim_url: str, sim: SimControl, tmp_path: Path) -> GatewayProcess:
    cfg = sim_config(sim_url, tmp_path / "state", cache={"sql": {"enabled": True}})
    g = GatewayProcess(cfg, tmp_path).start()
    yield g  # type: ignore[misc]
    g.stop()


def keys(c: httpx.Client, **fields: object) -> dict[str, str]:
    return {
        "authorization": f"Bearer {c.post('/admin/keys', headers=ADMIN, json=fields).json()['key']}"
    }


def test_second_identical_request_is_a_free_hit(gw: GatewayProcess, sim: SimControl) -> None:
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        k = keys(c, team="t1")
        first = c.post("/v1/chat/completions", json=BODY, headers=k)
        second = c.post("/v1/chat/completions", json=BODY, headers=k)
        assert (
            first.headers["x-interlock-cache"] == "miss"
            and second.headers["x-interlock-cache"] == "hit-l1"
        )
        assert second.json()["choices"] == first.json()["choices"]
        assert (
            second.headers["x-interlock-cost-usd"] == "0"
            and first.headers["x-interlock-cost-usd"] != "0"
        )
        assert sim.ledger()["totals"]["requests"] == 1
        # Sampled requests are not cached by default; bypass and refresh are honoured.
        assert (
            c.post("/v1/chat/completions", json={**BODY, "temperature": 0.8}, headers=k).headers[
                "x-interlock-cache"
            ]
            == "bypass"
        )
        assert (
            c.post(
                "/v1/chat/completions", json=BODY, headers={**k, "x-interlock-cache": "bypass"}
            ).headers["x-interlock-cache"]
            == "bypass"
        )
        r = c.post("/v1/chat/completions", json=BODY, headers={**k, "x-interlock-cache": "refresh"})
        assert r.headers["x-interlock-cache"] == "miss"
        assert sim.ledger()["totals"]["requests"] == 4  # miss, sampled, bypass, refresh


def test_no_hit_crosses_tenants(gw: GatewayProcess, sim: SimControl) -> None:
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        a, b, solo = keys(c, team="alpha"), keys(c, team="beta"), keys(c)
        a2 = keys(c, team="alpha")
        assert (
            c.post("/v1/chat/completions", json=BODY, headers=a).headers["x-interlock-cache"]
            == "miss"
        )
        assert (
            c.post("/v1/chat/completions", json=BODY, headers=b).headers["x-interlock-cache"]
            == "miss"
        )
        assert (
            c.post("/v1/chat/completions", json=BODY, headers=solo).headers["x-interlock-cache"]
            == "miss"
        )
        assert (
            c.post("/v1/chat/completions", json=BODY, headers=a2).headers["x-interlock-cache"]
            == "hit-l1"
        )  # same team


def test_streams_are_cached_and_replayed(gw: GatewayProcess, sim: SimControl) -> None:
    import openai

    with openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0) as oai:
        body = {
            "model": "chat",
            "temperature": 0,
            "messages": [{"role": "user", "content": "stream me"}],
        }
        live = "".join(
            c.choices[0].delta.content or ""
            for c in oai.chat.completions.create(**body, stream=True)
            if c.choices
        )
        time.sleep(0.2)  # the entry is written in the background
        raw = oai.chat.completions.with_raw_response.create(**body, stream=True)
        assert raw.headers["x-interlock-cache"] == "hit-l1"
        replayed = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        plain = oai.chat.completions.with_raw_response.create(**body)
        assert plain.headers["x-interlock-cache"] == "hit-l1"
    assert replayed == live == plain.parse().choices[0].message.content
    assert sim.ledger()["totals"]["requests"] == 1


def test_concurrent_identical_misses_make_one_upstream_call(
    gw: GatewayProcess, sim: SimControl
) -> None:
    sim.set_config(ttft_ms=300)
    body = {**BODY, "messages": [{"role": "user", "content": "burst"}]}
    with httpx.Client(base_url=gw.url, timeout=30) as c, ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(lambda _: c.post("/v1/chat/completions", json=body, headers=ADMIN), range(8))
        )
    assert all(r.status_code == 200 for r in results)
    assert sorted(r.headers["x-interlock-cache"] for r in results).count("miss") == 1
    assert sim.ledger()["totals"]["requests"] == 1


def test_ledger_records_hits_with_what_they_saved(gw: GatewayProcess, sim: SimControl) -> None:
    import sqlite3

    with httpx.Client(base_url=gw.url, timeout=30) as c:
        first = c.post("/v1/chat/completions", json=BODY, headers=ADMIN)
        c.post("/v1/chat/completions", json=BODY, headers=ADMIN)
    deadline = time.monotonic() + 10
    while True:
        db = sqlite3.connect(gw.workdir / "state" / "interlock.db")
        rows = db.execute(
            "SELECT cache, cost_usd, saved_usd FROM ledger ORDER BY created_at"
        ).fetchall()
        db.close()
        if len(rows) >= 2:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert rows[0][0] == "miss" and rows[1][0] == "hit-l1"
    assert float(rows[1][1]) == 0 and float(rows[1][2]) == float(
        first.headers["x-interlock-cost-usd"]
    )


def test_cached_level_serves_hits_and_refuses_misses(gw: GatewayProcess, sim: SimControl) -> None:
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        c.post("/v1/chat/completions", json=BODY, headers=ADMIN)
        c.put("/admin/degradation", json={"level": "cached"}, headers=ADMIN)
        hit = c.post("/v1/chat/completions", json=BODY, headers=ADMIN)
        miss = c.post(
            "/v1/chat/completions",
            json={**BODY, "messages": [{"role": "user", "content": "new"}]},
            headers=ADMIN,
        )
        c.put("/admin/degradation", json={"level": "auto"}, headers=ADMIN)
    assert hit.status_code == 200 and hit.headers["x-interlock-cache"] == "hit-l1"
    assert miss.status_code == 503 and miss.json()["error"]["code"] == "degraded"


def test_sql_tier_survives_a_restart(sim_url: str, sim: SimControl, tmp_path: Path) -> None:
    cfg = sim_config(
        sim_url, tmp_path / "state", cache={"memory": {"enabled": True}, "sql": {"enabled": True}}
    )
    g = GatewayProcess(cfg, tmp_path).start()
    try:
        httpx.post(f"{g.url}/v1/chat/completions", json=BODY, headers=ADMIN, timeout=30)
        time.sleep(0.3)
    finally:
        g.stop()
    g = GatewayProcess(cfg, tmp_path).start()
    try:
        r = httpx.post(f"{g.url}/v1/chat/completions", json=BODY, headers=ADMIN, timeout=30)
        assert r.headers["x-interlock-cache"] == "hit-l3"
        r = httpx.post(f"{g.url}/v1/chat/completions", json=BODY, headers=ADMIN, timeout=30)
        assert r.headers["x-interlock-cache"] == "hit-l1"  # promoted
    finally:
        g.stop()
    assert sim.ledger()["totals"]["requests"] == 1


def test_application_cache_api_is_tenant_isolated(gw: GatewayProcess) -> None:
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        a, b = keys(c, team="alpha"), keys(c, team="beta")
        r = c.put("/v1/cache/chain/step-1", content=b'{"chunks": [1, 2]}',
                  headers={**a, "content-type": "application/json"}, params={"ttl": "60"})
        assert r.status_code == 200 and r.json()["stored"] is True
        got = c.get("/v1/cache/chain/step-1", headers=a)
        assert got.status_code == 200 and got.json() == {"chunks": [1, 2]}
        assert got.headers["content-type"] == "application/json"
        assert c.get("/v1/cache/chain/step-1", headers=b).status_code == 404  # another tenant
        assert c.delete("/v1/cache/chain/step-1", headers=a).json()["deleted"] is True
        assert c.get("/v1/cache/chain/step-1", headers=a).status_code == 404
        short = c.put("/v1/cache/chain/brief", content=b"x", headers=a, params={"ttl": "0.2"})
        assert short.status_code == 200
        time.sleep(0.4)
        assert c.get("/v1/cache/chain/brief", headers=a).status_code == 404  # expired
        assert c.put("/v1/cache/bad name/k", content=b"x", headers=a).status_code in (400, 404)
        assert (
            c.put("/v1/cache/ns/k", content=b"x", headers=a, params={"ttl": "-1"}).json()["error"][
                "param"
            ]
            == "ttl"
        )
        assert c.put("/v1/cache/ns/k", content=b"\xff\xfe", headers=a).status_code == 400
        assert (
            c.put("/v1/cache/ns/k", content=b"x" * (2 * 1024 * 1024), headers=a).status_code == 413
        )
        assert c.get("/v1/cache/ns/k").status_code == 401


def test_embeddings_are_cached_per_text(gw: GatewayProcess, sim: SimControl) -> None:
    import openai

    with openai.OpenAI(base_url=gw.url + "/v1", api_key=MASTER_KEY, max_retries=0) as oai:
        first = oai.embeddings.create(model="sim-embed", input=["alpha", "beta", "gamma"])
        time.sleep(0.2)  # per-text entries are written in the background
        raw = oai.embeddings.with_raw_response.create(
            model="sim-embed", input=["beta", "delta", "alpha", "epsilon"]
        )
        mixed = raw.parse()
        assert raw.headers["x-interlock-embedding-cache"] == "2/4"
        direct = oai.embeddings.create(
            model="sim-embed", input="delta", extra_headers={"x-interlock-cache": "bypass"}
        )
    sent = [r for r in sim.requests() if r["path"] == "/v1/embeddings"]
    assert (
        '"alpha"' not in sent[1]["body"] and '"delta"' in sent[1]["body"]
    )  # only the new texts went out
    assert mixed.data[0].embedding == first.data[1].embedding  # beta, from the cache
    assert mixed.data[1].embedding == direct.data[0].embedding  # delta, fresh and correct
    assert [d.index for d in mixed.data] == [0, 1, 2, 3]
    assert (
        mixed.usage.prompt_tokens < first.usage.prompt_tokens * 4 / 3
    )  # charged for 2 texts, not 4


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["stopped", "frozen"])
def test_redis_down_or_frozen_is_a_bounded_miss(
    sim_url: str, sim: SimControl, tmp_path: Path, fault: str
) -> None:
    """L2 behind a proxy that refuses connections or swallows bytes: every request is
    still answered, as a miss, within the tier timeout; the tier is used again after."""
    require("Redis", "127.0.0.1", 6379)
    proxy = TcpProxy("127.0.0.1", 6379, free_port())
    proxy.start()
    cfg = sim_config(
        sim_url,
        tmp_path / "state",
        cache={"memory": {"enabled": False}, "redis": {"enabled": True}, "tier_timeout_s": 0.05},
        state={"redis_url": f"redis://127.0.0.1:{proxy.port}/0",
               "key_prefix": f"t{free_port()}:"},
    )
    g = GatewayProcess(cfg, tmp_path).start()
    try:
        with httpx.Client(base_url=g.url, timeout=30) as c:
            user = keys(c)
            body = {**BODY, "messages": [{"role": "user", "content": f"redis {fault}"}]}
            assert c.post("/v1/chat/completions", headers=user, json=body).headers[
                "x-interlock-cache"
            ] == "miss"
            deadline = time.monotonic() + 5
            while True:  # the L2 write is in the background
                r = c.post("/v1/chat/completions", headers=user, json=body)
                if r.headers["x-interlock-cache"] == "hit-l2":
                    break
                assert time.monotonic() < deadline
                time.sleep(0.05)
            proxy.freeze() if fault == "frozen" else proxy.cut()
            for i in range(5):
                t0 = time.monotonic()
                r = c.post("/v1/chat/completions", headers=user, json=body)
                elapsed = time.monotonic() - t0
                assert r.status_code == 200, r.text
                assert r.headers["x-interlock-cache"] == "miss"
                assert elapsed < 1.0, f"request {i} took {elapsed:.2f}s with Redis {fault}"
            proxy.thaw() if fault == "frozen" else proxy.start()
            deadline = time.monotonic() + 10
            while c.post("/v1/chat/completions", headers=user, json=body).headers[
                "x-interlock-cache"
            ] != "hit-l2":
                assert time.monotonic() < deadline, "L2 not used again after recovery"
                time.sleep(0.2)
    finally:
        g.stop()
        proxy.close()


def test_cache_hits_keep_their_feature_tags(gw: GatewayProcess) -> None:
    import sqlite3

    with httpx.Client(base_url=gw.url, timeout=30) as c:
        for _ in range(2):
            r = c.post("/v1/chat/completions", json=BODY,
                       headers={**ADMIN, "x-interlock-tags": "feature:search"})
            assert r.status_code == 200
    deadline = time.monotonic() + 10
    while True:
        db = sqlite3.connect(gw.workdir / "state" / "interlock.db")
        rows = db.execute("SELECT cache, tags FROM ledger ORDER BY created_at").fetchall()
        db.close()
        if len(rows) >= 2:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert [r[0] for r in rows] == ["miss", "hit-l1"]
    assert all("feature:search" in str(r[1]) for r in rows), rows
