"""`interlock report routing`: each tier's traffic and cost against always-large."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import yaml

from interlock.settings import StorageSettings
from interlock.spend.ledger import LedgerRecord
from interlock.storage.engine import create_engine, run_migrations
from interlock.storage.ledger import LedgerStore


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    return subprocess.run([sys.executable, "-m", "interlock.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=env)  # fmt: skip


async def test_report_routing(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/db.sqlite"
    price = {"input_per_mtok": 10.0, "output_per_mtok": 30.0}  # the large tier's price
    cfg = {
        "state_dir": str(tmp_path / "state"),
        "storage": {"url": url},
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"}},
        "deployments": {
            "d-small": {"provider": "p", "model": "m-small", "price": {"input_per_mtok": 0.1,
                                                                       "output_per_mtok": 0.4}},
            "d-large": {"provider": "p", "model": "m-large", "price": price},
        },
        "models": {"small": {"deployments": ["d-small"]}, "large": {"deployments": ["d-large"]},
                   "auto": {"tiers": {"small": "small", "large": "large"}}},
    }  # fmt: skip
    (tmp_path / "interlock.yaml").write_text(yaml.safe_dump(cfg))
    engine = create_engine(StorageSettings(url=url))
    await run_migrations(engine)
    now = datetime.now(UTC)
    spec = [  # id, tier, outcome, prompt, completion, cost
        ("a", "small", "ok", 1000, 100, "0.00014"),
        ("b", "small", "ok", 1000, 100, "0.00014"),
        ("c", "small", "escalated", 1000, 100, "0.00014"),
        ("d", "large", "ok", 1000, 100, "0.013"),
        ("e", None, "ok", 5000, 500, "1"),  # not tiered: not in the report
    ]
    rows = []
    for rid, tier, outcome, prompt, completion, cost in spec:
        rec = LedgerRecord(request_id=rid, endpoint="chat", status=200, outcome=outcome,
                           model=tier or "other", deployment="d", tier=tier,
                           prompt_tokens=prompt, completion_tokens=completion,
                           cost_usd=Decimal(cost), created_at=now - timedelta(minutes=5))  # fmt: skip
        data = rec.to_json()
        data["cost_usd"], data["saved_usd"], data["created_at"] = rec.cost_usd, Decimal(0), now
        rows.append(data)
    await LedgerStore(engine).insert_many(rows)
    await engine.dispose()

    r = run("report", "routing", "--config", "interlock.yaml", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = {x["tier"]: x for x in json.loads(r.stdout)}
    # Each answered request's tokens at $10/$30 per 1M: 1000 * 10 + 100 * 30 = $0.013.
    assert got["small"]["requests"] == 2 and got["small"]["escalated"] == 1
    assert Decimal(got["small"]["cost_usd"]) == Decimal("0.00042")
    assert Decimal(got["small"]["large_cost_usd"]) == Decimal("0.026")
    assert Decimal(got["large"]["saved_usd"]) == 0
    total = got["(all)"]
    assert (total["requests"], Decimal(total["share"])) == (3, 1)
    assert Decimal(total["large_cost_usd"]) == Decimal("0.039")
    assert Decimal(total["saved_usd"]) == Decimal("0.039") - Decimal("0.01342")
    assert Decimal(got["small"]["share"]) == Decimal("0.6667")

    table = run("report", "routing", "--config", "interlock.yaml", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:3] == ["TIER", "REQUESTS", "SHARE"]
    assert "34.4% of always-large" in table.stdout


async def test_report_routing_without_a_tiered_alias_never_prints_none(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/db.sqlite"
    cfg = {
        "state_dir": str(tmp_path / "state"),
        "storage": {"url": url},
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"}},
        "deployments": {"d": {"provider": "p", "model": "m", "price": {"input_per_mtok": 1.0,
                                                                        "output_per_mtok": 2.0}}},
        "models": {"chat": {"deployments": ["d"]}},  # no alias has tiers
    }  # fmt: skip
    (tmp_path / "interlock.yaml").write_text(yaml.safe_dump(cfg))
    engine = create_engine(StorageSettings(url=url))
    await run_migrations(engine)
    rec = LedgerRecord(request_id="u", endpoint="chat", status=200, outcome="ok", model="chat",
                       deployment="d", prompt_tokens=10, completion_tokens=5,
                       cost_usd=Decimal("0.00002"))  # fmt: skip
    data = rec.to_json()
    data["cost_usd"], data["saved_usd"], data["created_at"] = (
        rec.cost_usd,
        Decimal(0),
        rec.created_at,
    )
    await LedgerStore(engine).insert_many([data])
    await engine.dispose()

    table = run("report", "routing", "--config", "interlock.yaml", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "None" not in table.stdout, table.stdout
    assert "no tiered alias is configured" in table.stdout
    assert "untiered aliases are not in this report" in table.stdout
    got = json.loads(
        run(
            "report", "routing", "--config", "interlock.yaml", "--format", "json", cwd=tmp_path
        ).stdout
    )
    assert [r["tier"] for r in got] == ["(all)"] and got[0]["requests"] == 0
