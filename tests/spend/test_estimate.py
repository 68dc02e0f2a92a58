"""The estimator: exact monthly arithmetic, comparisons, ledger projection and break-even."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.settings import StorageSettings
from interlock.spend.estimate import break_even, compare, from_ledger, monthly_estimate
from interlock.spend.ledger import LedgerRecord
from interlock.spend.prices import Price, PriceTable
from interlock.storage.engine import create_engine, run_migrations
from interlock.storage.ledger import LedgerStore

PRICES = PriceTable.load()
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)  # November: 30 days


def price(model: str) -> Price:
    entry = PRICES.get(model)
    assert entry is not None
    return entry.price


def test_monthly_estimate_is_exact() -> None:
    est = monthly_estimate(1_000_000, 500, 200, price("gpt-4o"))
    # (500 x 2.50 + 200 x 10.00) / 1M = 0.00325 per request
    assert est == {
        "per_request": Decimal("0.00325"),
        "base": Decimal("3250"),
        "buffered": Decimal("8125"),  # x 2.5
    }
    fee = Price(input=Decimal(1), output=Decimal(2), per_request=Decimal("0.01"))
    est = monthly_estimate(100, 1000, 500, fee, buffer=Decimal(3))
    assert est == {"per_request": Decimal("0.012"), "base": Decimal("1.2"),
                   "buffered": Decimal("3.6")}  # fmt: skip
    with pytest.raises(ValueError):
        monthly_estimate(1, 1, 1, fee, buffer=Decimal("0.5"))
    with pytest.raises(ValueError):
        monthly_estimate(-1, 1, 1, fee)


def test_compare_orders_cheapest_first() -> None:
    rows = compare(["gpt-4o", "claude-haiku-4-5", "gpt-4o-mini"], 1_000_000, 500, 200, PRICES)
    assert [(r["model"], r["base"], r["buffered"], r["vs_cheapest"]) for r in rows] == [
        ("gpt-4o-mini", Decimal("195"), Decimal("487.5"), Decimal("1.00")),
        ("claude-haiku-4-5", Decimal("1500"), Decimal("3750"), Decimal("7.69")),
        ("gpt-4o", Decimal("3250"), Decimal("8125"), Decimal("16.67")),
    ]
    assert rows[1]["provider"] == "anthropic"
    # Upstream ids resolve to their canonical entries.
    assert compare(["gpt-4o-2024-08-06"], 1, 1, 1, PRICES)[0]["priced_as"] == "gpt-4o"
    with pytest.raises(KeyError, match="no-such-model"):
        compare(["no-such-model"], 1, 1, 1, PRICES)


def test_break_even_hand_computed() -> None:
    r = break_even(price("gpt-4o"), 500, 200, "2.5", 1500, "0.6")
    assert r["api_cost_per_request"] == Decimal("0.00325")
    assert r["api_cost_per_1M"] == Decimal("4.6428571429")  # 0.00325 / 700 x 1M
    # 2.5 USD/h over 1500 tok/s x 3600 s x 0.6 = 3.24M tokens an hour
    assert r["self_hosted_cost_per_1M"] == Decimal("0.7716049383")
    assert r["gpu_monthly_usd"] == Decimal("1825")  # 2.5 x 730 h
    assert r["requests_per_gpu_month"] == 3_378_857  # 1500 x 3600 x 730 x 0.6 / 700
    assert r["break_even_requests_per_month"] == 561_539  # ceil(1825 / 0.00325)
    assert r["break_even_tokens_per_month"] == 561_539 * 700
    # At that volume the API costs at least the GPU-month, one request less it does not.
    assert 561_539 * Decimal("0.00325") >= 1825 > 561_538 * Decimal("0.00325")


def test_break_even_never_when_the_api_is_cheaper_per_token() -> None:
    r = break_even(price("gpt-4o-mini"), 500, 200, "2.5", 100, "0.05")
    assert r["self_hosted_cost_per_1M"] > r["api_cost_per_1M"]
    assert r["break_even_requests_per_month"] is None
    with pytest.raises(ValueError):
        break_even(price("gpt-4o"), 500, 200, 2.5, 1500, 0)
    with pytest.raises(ValueError):
        break_even(price("gpt-4o"), 0, 0, 2.5, 1500, 1)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/e.db"))
    await run_migrations(eng)
    rows = []
    for i in range(8):  # one a day; the eighth is older than the 7-day window
        rec = LedgerRecord(request_id=f"r{i}", endpoint="chat", status=200, outcome="ok",
                           model="gpt-4o", deployment="d", provider="openai", attempts=1,
                           prompt_tokens=1000, completion_tokens=500, cost_usd=Decimal("0.1"),
                           stream=True, created_at=NOW - timedelta(days=i, hours=1))  # fmt: skip
        data = rec.to_json()
        data["cost_usd"], data["saved_usd"] = rec.cost_usd, rec.saved_usd
        data["created_at"] = rec.created_at
        rows.append(data)
    await LedgerStore(eng).insert_many(rows)
    yield eng
    await eng.dispose()


async def test_from_ledger_projects_the_month(engine: AsyncEngine) -> None:
    r = await from_ledger(engine, 7, PRICES, now=NOW, cheaper_tier="gpt-4o-mini",
                          cache_hit_rate=Decimal("0.2"), upstream={"d": ("gpt-4o", "openai")})  # fmt: skip
    assert r["requests"] == 7 and r["observed_cost_usd"] == Decimal("0.7")
    assert r["cost_per_day"] == Decimal("0.1") and r["days_in_month"] == 30
    assert r["projected_month_usd"] == Decimal("3") and r["projected_requests"] == 30
    # 7 x (1000 x 0.15 + 500 x 0.60) / 1M = 0.00315 in 7 days -> 0.0135 a month
    assert r["what_if"]["cheaper_tier"] == {"model": "gpt-4o-mini",
                                            "projected_month_usd": Decimal("0.0135"),
                                            "saving_usd": Decimal("2.9865")}  # fmt: skip
    assert r["what_if"]["cache"] == {"hit_rate": Decimal("0.2"),
                                     "projected_month_usd": Decimal("2.4"),
                                     "saving_usd": Decimal("0.6")}  # fmt: skip
    assert r["what_if"]["optimisation"]["best_per_model_saving_usd"] == Decimal("2.9865")
    r = await from_ledger(engine, 7, PRICES, now=NOW)
    assert set(r["what_if"]) == {"optimisation"}
    with pytest.raises(ValueError):
        await from_ledger(engine, 0, PRICES, now=NOW)
