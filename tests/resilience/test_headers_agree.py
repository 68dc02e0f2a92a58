"""What the response headers say, the access log and the ledger say too (issue 14).

* ``x-interlock-attempts`` counts every upstream attempt of the request: the deployments
  of the alias asked for that failed, then the fallback alias's; a failed request's row
  and log line count its attempts as well.
* ``x-interlock-cache`` and the access log's / ledger's ``cache`` are one value:
  ``bypass`` when the cache was not involved, ``miss`` when it was looked up, ``hit-*``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from interlock.sim import SimControl
from tests.resilience.conftest import ADMIN, MSG, ab_config
from tests.support.gateway import GatewayProcess


def fallback_config(sim_url: str, state_dir: Path) -> dict[str, Any]:
    cfg = ab_config(sim_url, state_dir)
    fast = cfg["deployments"]["A"]["timeouts"]
    cfg["deployments"]["A2"] = {"provider": "sim", "model": "sim-a", "timeouts": fast}
    cfg["models"] = {
        "primary": {
            "deployments": ["A", "A2"],
            "strategy": "priority",
            "retry": {"max_attempts": 2},
            "fallbacks": [{"on": ["server_error"], "models": ["backup"]}],
        },
        "backup": {"deployments": ["B"]},
    }
    return cfg


def ledger(gw: GatewayProcess, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        db = sqlite3.connect(Path(gw.config["state_dir"]) / "interlock.db")  # type: ignore[index]
        db.row_factory = sqlite3.Row
        try:
            row = db.execute("SELECT * FROM ledger WHERE request_id = ?", (request_id,)).fetchone()
        except sqlite3.OperationalError:
            row = None  # not migrated yet
        finally:
            db.close()
        if row is not None:
            return dict(row)
        assert time.monotonic() < deadline, f"no ledger row for {request_id}"
        time.sleep(0.1)


def access_line(gw: GatewayProcess, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        for line in gw.output().splitlines():
            if line.startswith("{") and '"interlock.access"' in line and request_id in line:
                got: dict[str, Any] = orjson.loads(line)
                if got.get("request_id") == request_id:
                    return got
        assert time.monotonic() < deadline, f"no access log line for {request_id}"
        time.sleep(0.1)


def test_attempts_after_a_fallback_count_every_deployment_tried(
    sim_url: str,
    sim: SimControl,
    tmp_path: Path,
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gw = start_gateway(fallback_config(sim_url, tmp_path / "s"))
    sim.set_faults([{"type": "status", "status": 503, "match": {"model": "sim-a"}}])
    body = {"model": "primary", "messages": MSG}
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=20) as c:
        r = c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        with c.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as s:
            assert s.status_code == 200
            list(s.iter_lines())
    calls = [q for q in sim.requests() if '"sim-a"' in q["body"]]
    assert len(calls) == 4  # A and A2 failed for each of the two requests
    for resp in (r, s):
        h = resp.headers
        assert (h["x-interlock-fallback"], h["x-interlock-deployment"]) == ("backup", "B")
        assert h["x-interlock-attempts"] == "3"  # A, A2 (primary), then B (backup)
        rid = h["x-request-id"]
        row, line = ledger(gw, rid), access_line(gw, rid)
        assert row["attempts"] == line["attempts"] == 3
        assert row["fallback"] == line["fallback"] == "backup"


def test_a_failed_request_records_its_attempts(
    sim_url: str,
    sim: SimControl,
    tmp_path: Path,
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gw = start_gateway(fallback_config(sim_url, tmp_path / "s"))
    sim.set_faults([{"type": "status", "status": 503}])  # the backup fails too
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=20) as c:
        r = c.post("/v1/chat/completions", json={"model": "primary", "messages": MSG})
    assert r.status_code >= 500
    rid = r.headers["x-request-id"]
    row, line = ledger(gw, rid), access_line(gw, rid)
    # A and A2, then the backup's B with its alias's retries: what the provider saw.
    calls = len(sim.requests())
    assert calls >= 3 and row["attempts"] == line["attempts"] == calls
    assert row["outcome"] == line["outcome"] != "ok"


def test_cache_header_log_and_ledger_agree(
    sim_url: str,
    sim: SimControl,
    tmp_path: Path,
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    gw = start_gateway(ab_config(sim_url, tmp_path / "s"))
    cacheable = {"model": "ab", "messages": MSG, "temperature": 0}
    cases: list[tuple[dict[str, Any], dict[str, str], str]] = [
        (cacheable, {"x-interlock-cache": "bypass"}, "bypass"),  # the client bypassed it
        ({**cacheable, "temperature": 1}, {}, "bypass"),  # not cacheable: not looked up
        (cacheable, {}, "miss"),  # looked up, not found
        (cacheable, {}, "hit-l1"),  # the answer just stored
        (cacheable, {"x-interlock-cache": "refresh"}, "miss"),  # not read, stored again
    ]
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=20) as c:
        for body, headers, want in cases:
            r = c.post("/v1/chat/completions", json=body, headers=headers)
            assert r.status_code == 200, r.text
            rid = r.headers["x-request-id"]
            row, line = ledger(gw, rid), access_line(gw, rid)
            assert (r.headers["x-interlock-cache"], line["cache"], row["cache"]) == (want,) * 3
        # A failed upstream call of a request the cache was not involved in says bypass
        # in its log line and row too.
        sim.set_faults([{"type": "status", "status": 500}])
        r = c.post("/v1/chat/completions", json={**cacheable, "temperature": 1})
        assert r.status_code >= 500
        rid = r.headers["x-request-id"]
        assert ledger(gw, rid)["cache"] == access_line(gw, rid)["cache"] == "bypass"
