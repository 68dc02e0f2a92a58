"""A worker (re)started while the database is down comes up, and refuses safely.

uvicorn's supervisor restarts a worker that died; if the new one then failed its
startup because PostgreSQL was unreachable, uvicorn would stop the whole server. So a
worker must start without its database: it says it is not ready, refuses what it
cannot check (keys it has never seen, budgeted spend) with a clear 503, and recovers by
itself when the database returns.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import MASTER_KEY, GatewayProcess, free_port, sim_config
from tests.support.services import PG_URL, require
from tests.support.tcpproxy import TcpProxy

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


def wait_alive(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, "the gateway did not come up"
            time.sleep(0.2)


@pytest.mark.postgres
@pytest.mark.slow
def test_gateway_starts_while_database_is_down(sim_url: str, tmp_path: Path) -> None:
    require("PostgreSQL", "127.0.0.1", 5432)
    proxy = TcpProxy("127.0.0.1", 5432, free_port())
    proxy.start()
    db_url = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    # Migrate once with the database up, as the serving parent does.
    first = GatewayProcess(
        sim_config(sim_url, tmp_path / "a", storage={"url": db_url, "db_schema": "nodb_t"}),
        tmp_path,
    ).start(timeout=60)
    first.stop()
    proxy.cut()
    cfg = sim_config(
        sim_url,
        tmp_path / "b",
        storage={"url": db_url, "db_schema": "nodb_t", "run_migrations": False},
    )
    cfg["spend"]["budget_reload_s"] = 0.5
    gw = GatewayProcess(cfg, tmp_path)
    try:
        gw.start_unready()
        wait_alive(gw.url)
        assert httpx.get(gw.url + "/readyz").status_code == 503
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            headers=ADMIN,
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "budget_state_unavailable"
        assert gw.proc is not None and gw.proc.poll() is None
        proxy.start()  # the database is back: the worker recovers by itself
        deadline = time.monotonic() + 30
        while httpx.get(gw.url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, gw.output()[-4000:]
            time.sleep(0.3)
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            headers=ADMIN,
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 200, r.text
    finally:
        gw.stop()
        proxy.close()
