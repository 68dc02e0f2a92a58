"""`interlock serve`: the embedded default, and several worker processes on one port."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config
from tests.support.metrics import scrape, value

MSG = [{"role": "user", "content": "hello"}]


def test_embedded_default_runs_with_no_config(tmp_path: Path) -> None:
    gw = GatewayProcess(None, tmp_path).start(timeout=60)
    try:
        out = gw.output()
        match = re.search(r"Admin key \(shown once, stored hashed\): (sk-il-\S+)", out)
        assert match, out
        key = match.group(1)
        assert (tmp_path / ".interlock" / "interlock.db").exists()
        for model in ("sim-small", "sim-claude", "sim-gemini"):
            r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": model, "messages": MSG},
                           headers={"authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip
            assert r.status_code == 200, (model, r.text)
        r = httpx.post(f"{gw.url}/v1/embeddings", json={"model": "sim-embed", "input": "x"},
                       headers={"authorization": f"Bearer {key}"})  # fmt: skip
        assert r.status_code == 200
    finally:
        gw.stop()
    again = GatewayProcess(None, tmp_path).start(timeout=60)
    try:
        assert "Admin key (shown once" not in again.output()  # shown only at first start
        r = httpx.get(f"{again.url}/admin/keys", headers={"authorization": f"Bearer {key}"})
        assert r.status_code == 200
    finally:
        again.stop()


@pytest.mark.slow
def test_workers_share_metrics_and_revocation(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    gw = GatewayProcess(sim_config(sim_url, tmp_path / "state"), tmp_path, workers=2).start(
        timeout=60
    )
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    try:
        created = httpx.post(f"{gw.url}/admin/keys", json={"user": "w"}, headers=admin).json()
        key = {"authorization": f"Bearer {created['key']}"}
        pids = set()
        for _ in range(40):  # new connections, so both workers serve some
            r = httpx.post(
                f"{gw.url}/v1/chat/completions",
                json={"model": "chat", "messages": MSG},
                headers=key,
            )
            assert r.status_code == 200
        samples = scrape(httpx.get(f"{gw.url}/metrics").text)
        total = value(
            samples,
            "interlock_requests_total",
            route="/v1/chat/completions",
            model="chat",
            status="200",
        )
        assert total == 40  # summed over both processes, whichever one answered the scrape
        assert sim.ledger()["totals"]["requests"] == 40
        pids = {
            int(p.name.split("_")[-1].split(".")[0])
            for p in Path(gw.workdir / "state").glob("prometheus-*/*.db")
        }
        assert len(pids) >= 2, pids

        httpx.delete(f"{gw.url}/admin/keys/{created['id']}", headers=admin)
        time.sleep(1.0)  # auth.cache_ttl_s = 0.5
        codes = {httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "chat", "messages": MSG},
                            headers=key).status_code for _ in range(20)}  # fmt: skip
        assert codes == {401}
    finally:
        gw.stop()


@pytest.mark.postgres
def test_gateway_on_postgresql(sim_url: str, sim: SimControl, tmp_path: Path) -> None:
    import asyncio
    import secrets as _secrets

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.support.services import PG_URL, require

    require("PostgreSQL", "127.0.0.1", 5432)
    schema = "gw_" + _secrets.token_hex(6)
    cfg = sim_config(sim_url, tmp_path / "state", storage={"url": PG_URL, "db_schema": schema})
    gw = GatewayProcess(cfg, tmp_path, workers=2).start(timeout=60)
    try:
        admin = {"authorization": f"Bearer {MASTER_KEY}"}
        created = httpx.post(f"{gw.url}/admin/keys", json={"team": "pg"}, headers=admin).json()
        r = httpx.post(f"{gw.url}/v1/chat/completions", json={"model": "chat", "messages": MSG},
                       headers={"authorization": f"Bearer {created['key']}"})  # fmt: skip
        assert r.status_code == 200
    finally:
        gw.stop()

    async def drop() -> list[str]:
        engine = create_async_engine(PG_URL)
        async with engine.begin() as conn:
            rows = (await conn.execute(text(f'SELECT key_id FROM "{schema}".api_keys'))).fetchall()
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()
        return [r[0] for r in rows]

    assert created["id"] in asyncio.run(drop())
