"""Cost per request, the ledger and budgets over real HTTP against the simulated provider."""

from __future__ import annotations

import json
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
MSG = [{"role": "user", "content": "tell me about trains"}]
# sim-small's list price (USD per 1M tokens), from the built-in price table.
IN, OUT = Decimal("0.15"), Decimal("0.60")


@pytest.fixture
def gw(sim_url: str, sim: SimControl, tmp_path: Path) -> GatewayProcess:
    g = GatewayProcess(sim_config(sim_url, tmp_path / "state"), tmp_path).start()
    yield g  # type: ignore[misc]
    g.stop()


def ledger_rows(gw: GatewayProcess) -> list[dict]:
    db = sqlite3.connect(gw.workdir / "state" / "interlock.db")
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT * FROM ledger ORDER BY created_at")]
    db.close()
    return rows


def wait_ledger(gw: GatewayProcess, n: int) -> list[dict]:
    deadline = time.monotonic() + 10
    while True:
        rows = ledger_rows(gw)
        if len(rows) >= n:
            return rows
        assert time.monotonic() < deadline, f"{len(rows)} of {n} ledger rows"
        time.sleep(0.1)


def test_cost_header_ledger_and_provider_agree(gw: GatewayProcess, sim: SimControl) -> None:
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
        r = c.post("/v1/chat/completions", json={"model": "chat", "messages": MSG},
                   headers={"x-interlock-tags": "search,beta"})  # fmt: skip
        usage = r.json()["usage"]
        expected = (usage["prompt_tokens"] * IN + usage["completion_tokens"] * OUT) / 1_000_000
        assert Decimal(r.headers["x-interlock-cost-usd"]) == expected
        with c.stream(
            "POST", "/v1/chat/completions", json={"model": "chat", "messages": MSG, "stream": True}
        ) as s:
            lines = list(s.iter_lines())
        cost_line = next(line for line in lines if line.startswith(": x-interlock-cost-usd="))
        assert Decimal(cost_line.split("=", 1)[1]) == expected  # same prompt, same answer
    rows = wait_ledger(gw, 2)
    assert [r["request_id"] for r in rows] == [r.headers["x-request-id"], s.headers["x-request-id"]]
    assert all(Decimal(str(row["cost_usd"])) == expected for row in rows)
    assert json.loads(rows[0]["tags"]) == ["search", "beta"] and rows[0]["model"] == "chat"
    assert (
        rows[0]["deployment"] == "sim-small"
        and rows[0]["outcome"] == "ok"
        and rows[1]["stream"] == 1
    )
    served = sim.ledger()["totals"]
    assert sum(row["completion_tokens"] for row in rows) == served["completion_tokens"]
    assert Decimal(str(served["cost_usd"])).quantize(Decimal("1e-9")) == (2 * expected).quantize(
        Decimal("1e-9")
    )


def test_failed_requests_are_recorded_too(gw: GatewayProcess, sim: SimControl) -> None:
    sim.set_faults([{"type": "status", "status": 500}])
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
        r = c.post("/v1/chat/completions", json={"model": "chat", "messages": MSG})
    assert r.status_code == 502
    row = wait_ledger(gw, 1)[0]
    assert (
        row["status"] == 502
        and row["outcome"] == "upstream_unavailable"
        and Decimal(str(row["cost_usd"])) == 0
    )


def test_hard_budget_refuses_before_overspending(gw: GatewayProcess, sim: SimControl) -> None:
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
        created = c.post(
            # Room for ~25 requests: each reserves its sound worst case (~2.6x what it costs),
            # so the last ~10% of a limit is never usable by requests of this size.
            "/admin/keys", json={"user": "u", "budgets": [{"limit_usd": 0.0003, "window": "daily"}]}
        ).json()
        budget_id = created["budgets"][0]["id"]
        key = {"authorization": f"Bearer {created['key']}"}
        statuses = []
        spent = Decimal(0)
        for _ in range(40):
            r = c.post(
                "/v1/chat/completions",
                json={"model": "chat", "messages": MSG, "max_tokens": 16},
                headers=key,
            )
            statuses.append(r.status_code)
            if r.status_code == 200:
                spent += Decimal(r.headers["x-interlock-cost-usd"])
            else:
                assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"
                # Retry-After (the window's reset) only when no smaller cap fits now;
                # otherwise the message names the cap that would be admitted.
                smaller = "would be admitted" in r.json()["error"]["message"]
                assert smaller != ("retry-after" in r.headers)
                assert smaller or int(r.headers["retry-after"]) > 0
        assert 200 in statuses and 429 in statuses
        assert spent <= Decimal("0.0003")
        status = c.get(f"/admin/budgets/{budget_id}").json()
        assert Decimal(status["spent_usd"]) == spent and Decimal(status["reserved_usd"]) == 0
        assert Decimal(status["remaining_usd"]) == Decimal("0.0003") - spent
        alerts = c.get("/admin/budgets/alerts").json()["data"]
        assert {a["threshold"] for a in alerts if a["budget_id"] == budget_id} >= {
            "50% of limit",
            "80% of limit",
        }
    assert sim.ledger()["totals"]["requests"] == statuses.count(200)  # refused ones never left


def test_budgets_admin_api(gw: GatewayProcess) -> None:
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
        r = c.post("/admin/budgets", json={"scope": "team", "subject": "t1", "window": "monthly",
                                           "limit_usd": 50, "budget_usd": 40, "timezone": "Europe/Berlin"})  # fmt: skip
        assert r.status_code == 201
        b = r.json()
        assert (
            b["window_start"].endswith("+00:00")
            and b["limit_usd"] == "50"
            and b["spent_usd"] == "0"
        )
        assert b["id"] in {
            x["id"] for x in c.get("/admin/budgets", params={"scope": "team"}).json()["data"]
        }
        for bad, param in (({"scope": "galaxy", "limit_usd": 1}, "scope"), ({"scope": "team", "limit_usd": 1}, "subject"),
                           ({"scope": "global", "limit_usd": -1}, "limit_usd"), ({"scope": "global"}, "limit_usd"),
                           ({"scope": "global", "limit_usd": 1, "timezone": "Mars/Base"}, "timezone")):  # fmt: skip
            r = c.post("/admin/budgets", json=bad)
            assert r.status_code == 400 and r.json()["error"]["param"] == param, bad
        assert c.delete(f"/admin/budgets/{b['id']}").json()["deleted"] is True
        assert c.get(f"/admin/budgets/{b['id']}").status_code == 404


def test_tag_budget_counts_only_tagged_requests(gw: GatewayProcess) -> None:
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
        b = c.post(
            "/admin/budgets", json={"scope": "tag", "subject": "beta", "limit_usd": 1}
        ).json()
        c.post("/v1/chat/completions", json={"model": "chat", "messages": MSG})
        r = c.post(
            "/v1/chat/completions",
            json={"model": "chat", "messages": MSG, "metadata": {"tags": ["beta"]}},
        )
        spent = Decimal(c.get(f"/admin/budgets/{b['id']}").json()["spent_usd"])
        assert spent == Decimal(r.headers["x-interlock-cost-usd"])
        bad = c.post(
            "/v1/chat/completions",
            json={"model": "chat", "messages": MSG},
            headers={"x-interlock-tags": "no spaces"},
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-interlock-tags"
