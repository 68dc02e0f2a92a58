"""`interlock report …` and `interlock estimate …` against a real database, as subprocesses."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from interlock.settings import StorageSettings
from interlock.spend.ledger import LedgerRecord
from interlock.storage.engine import create_engine, run_migrations
from interlock.storage.ledger import LedgerStore


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    return subprocess.run([sys.executable, "-m", "interlock.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)  # fmt: skip


@pytest.fixture
async def config(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path}/state/db.sqlite"
    cfg = {
        "state_dir": str(tmp_path / "state"),
        "storage": {"url": url},
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": "x"}},
        "deployments": {"d-4o": {"provider": "p", "model": "gpt-4o-2024-08-06"}},
    }
    path = tmp_path / "interlock.yaml"
    path.write_text(yaml.safe_dump(cfg))
    engine = create_engine(StorageSettings(url=url))
    await run_migrations(engine)
    now = datetime.now(UTC)
    rows = []
    spec = [  # team, user, tags, cost, outcome, attempts, stream, hours ago
        ("search", "alice", ["search"], "0.0075", "ok", 1, False, 1),
        ("search", "bob", ["search", "chat"], "0.006", "ok", 2, True, 2),
        ("chat", "carol", [], "0", "upstream_unavailable", 3, False, 3),
        ("chat", "carol", ["chat"], "0.001", "ok", 1, False, 4),
        ("chat", "dave", ["chat"], "5", "ok", 1, False, 24 * 40),  # outside 30d
    ]
    for i, (team, user, tags, cost, outcome, attempts, stream, ago) in enumerate(spec):
        rec = LedgerRecord(request_id=f"r{i}", endpoint="chat", status=200, outcome=outcome,
                           team_id=team, user_id=user, tags=tags, model="gpt-4o",
                           deployment="d-4o", provider="p", attempts=attempts, stream=stream,
                           prompt_tokens=1000, completion_tokens=500, cost_usd=Decimal(cost),
                           created_at=now - timedelta(hours=ago))  # fmt: skip
        data = rec.to_json()
        data["cost_usd"], data["saved_usd"] = rec.cost_usd, rec.saved_usd
        data["created_at"] = rec.created_at
        rows.append(data)
    await LedgerStore(engine).insert_many(rows)
    await engine.dispose()
    return str(path)


def test_report_spend_formats(config: str, tmp_path: Path) -> None:
    base = ("report", "spend", "--config", config, "--by", "team", "--since", "30d")
    r = run(*base, "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["group"], x["requests"], x["cost_usd"], x["share"]) for x in rows] == [
        ("search", 2, "0.0135", "0.931"),
        ("chat", 2, "0.001", "0.069"),
    ]
    assert rows[0]["cost_per_request"] == "0.00675" and rows[0]["prompt_tokens"] == 2000

    r = run(*base, "--format", "csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    parsed = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(x["group"], x["cost_usd"]) for x in parsed] == [
        ("search", "0.0135"),
        ("chat", "0.001"),
    ]

    r = run(*base, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["TEAM", "REQUESTS", "PROMPT", "TOK", "COMPL", "TOK", "COST",
                                "PER", "REQUEST", "SHARE"]  # fmt: skip
    assert lines[2].split() == ["search", "2", "2,000", "1,000", "$0.0135", "$0.00675", "93.10%"]
    assert "total: 4 requests, $0.0145" in r.stdout

    r = run("report", "spend", "--config", config, "--by", "feature", "--since", "90d",
            "--format", "json", cwd=tmp_path)  # fmt: skip
    feats = {x["group"]: (x["requests"], x["cost_usd"]) for x in json.loads(r.stdout)}
    assert feats == {"chat": (3, "5.007"), "search": (2, "0.0135"), "(untagged)": (1, "0")}

    # An ISO date works as --since; a bad one is refused.
    since = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    r = run("report", "spend", "--config", config, "--since", since, "--format", "json",
            cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 2
    r = run("report", "spend", "--config", config, "--since", "yesterday", cwd=tmp_path)
    assert r.returncode != 0 and "expected a span" in r.stderr


def test_report_top_waste_optimise(config: str, tmp_path: Path) -> None:
    r = run("report", "top", "--config", config, "--by", "user", "--since", "7d", "--limit", "2",
            "--format", "json", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [(x["rank"], x["group"], x["cost_usd"]) for x in json.loads(r.stdout)] == [
        (1, "alice", "0.0075"),
        (2, "bob", "0.006"),
    ]

    r = run("report", "waste", "--config", config, "--since", "7d", "--format", "json",
            cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    w = json.loads(r.stdout)
    assert w["failed_calls"] == {"requests": 1, "cost_usd": "0", "share": "0.25"}
    assert w["retries"] == {"extra_attempts": 3, "requests": 2}
    assert w["possible_hedges"] == {"requests": 1, "extra_attempts": 1}
    table = run("report", "waste", "--config", config, "--since", "7d", cwd=tmp_path).stdout
    assert "failed:upstream_unavailable" in table

    r = run("report", "optimise", "--config", config, "--since", "7d", "--format", "json",
            cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    # d-4o serves gpt-4o-2024-08-06, priced as gpt-4o; 4 x 1000 in + 4 x 500 out on
    # gpt-4o-mini: (4000 x 0.15 + 2000 x 0.6) / 1M = 0.0018
    assert row["priced_as"] == "gpt-4o" and row["cheaper_model"] == "gpt-4o-mini"
    assert row["cheaper_cost_usd"] == "0.0018" and row["cheaper_saving_usd"] == "0.0127"
    assert row["cache_saving_usd"] == "0.0029"
    assert row["batchable_cost_usd"] == "0.0085" and row["batch_saving_usd"] == "0.00425"
    r = run("report", "optimise", "--config", config, "--since", "7d", "--format", "csv",
            cwd=tmp_path)  # fmt: skip
    assert r.stdout.splitlines()[0].startswith("model,priced_as,requests,cost_usd")
    table = run("report", "optimise", "--config", config, "--since", "7d", cwd=tmp_path).stdout
    assert "What-ifs" in table and "gpt-4o-mini" in table


def test_estimate_commands(config: str, tmp_path: Path) -> None:
    r = run("estimate", "monthly", "--model", "gpt-4o", "--requests-per-month", "1000000",
            "--input-tokens", "500", "--output-tokens", "200", "--compare",
            "gpt-4o-mini,claude-haiku-4-5", "--format", "json", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["model"], x["base"], x["buffered"]) for x in rows] == [
        ("gpt-4o-mini", "195", "487.5"),
        ("claude-haiku-4-5", "1500", "3750"),
        ("gpt-4o", "3250", "8125"),
    ]
    r = run("estimate", "monthly", "--model", "gpt-4o", "--requests-per-month", "1000000",
            "--input-tokens", "500", "--output-tokens", "200", "--buffer", "3", "--format", "csv",
            cwd=tmp_path)  # fmt: skip
    (row,) = csv.DictReader(io.StringIO(r.stdout))
    assert row["base"] == "3250" and row["buffered"] == "9750"
    r = run("estimate", "monthly", "--model", "gpt-4o", "--requests-per-month", "10",
            "--input-tokens", "500", "--output-tokens", "200", cwd=tmp_path)  # fmt: skip
    assert "$0.0325" in r.stdout and "$0.08125" in r.stdout
    r = run("estimate", "monthly", "--model", "nope", "--requests-per-month", "1",
            "--input-tokens", "1", "--output-tokens", "1", cwd=tmp_path)  # fmt: skip
    assert r.returncode != 0 and "no price" in r.stderr

    r = run("estimate", "ledger", "--config", config, "--days", "7", "--cache-hit-rate", "0.2",
            "--cheaper-tier", "gpt-4o-mini", "--format", "json", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    assert p["observed_cost_usd"] == "0.0145" and p["requests"] == 4
    assert Decimal(p["what_if"]["cache"]["saving_usd"]) == (
        Decimal(p["projected_month_usd"]) * Decimal("0.2")
    ).quantize(Decimal("1e-10"))
    table = run("estimate", "ledger", "--config", config, "--days", "7", "--cheaper-tier",
                "gpt-4o-mini", cwd=tmp_path).stdout  # fmt: skip
    assert "projected month" in table and "all on gpt-4o-mini" in table

    args = ("estimate", "break-even", "--model", "gpt-4o", "--gpu-usd-per-hour", "2.5",
            "--tokens-per-second", "1500", "--utilisation", "0.6", "--input-tokens", "500",
            "--output-tokens", "200")  # fmt: skip
    r = run(*args, "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    assert b["break_even_requests_per_month"] == 561539
    assert b["self_hosted_cost_per_1M"] == "0.7716049383" and b["api_cost_per_1M"] == "4.6428571429"
    table = run(*args, cwd=tmp_path).stdout
    assert "561,539" in table
    r = run(*args[:-2], "--output-tokens", "200", "--utilisation", "0", cwd=tmp_path)
    assert r.returncode != 0 and "utilisation" in r.stderr
    assert "break-even" in run("estimate", "--help", cwd=tmp_path).stdout
