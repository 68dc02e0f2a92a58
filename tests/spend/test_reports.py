"""Spend reports: exact Decimal totals per group, feature tags, windows, waste and what-ifs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.spend.ledger import LedgerRecord
from interlock.spend.prices import PriceTable
from interlock.spend.reports import (
    cheaper_alternative,
    optimisation,
    spend_by,
    tokens_cost,
    top_spenders,
    totals,
    waste,
)
from interlock.storage.ledger import LedgerStore
from tests.support.databases import BACKENDS, migrated

BASE = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SINCE = BASE - timedelta(days=10)
UPSTREAM = {"d-4o": ("gpt-4o", "openai"), "d-haiku": ("claude-haiku-4-5", "anthropic")}


def row(rid: str, at: datetime, cost: str, **kw: Any) -> dict[str, Any]:
    rec = LedgerRecord(request_id=rid, endpoint="chat", status=200, outcome="ok",
                       model="gpt-4o", deployment="d-4o", provider="openai", attempts=1,
                       cost_usd=Decimal(cost), created_at=at)  # fmt: skip
    for k, v in kw.items():
        setattr(rec, k, v)
    data = rec.to_json()
    data["cost_usd"], data["saved_usd"] = rec.cost_usd, rec.saved_usd
    data["created_at"] = rec.created_at
    return data


ROWS = [
    row("r1", BASE, "0.0075", team_id="a", user_id="u1", tags=["search", "chat"],
        prompt_tokens=1000, cached_tokens=200, completion_tokens=500),
    row("r2", BASE + timedelta(hours=1), "0.006", team_id="a", user_id="u2", tags=["search"],
        prompt_tokens=2000, completion_tokens=100, stream=True, attempts=2),
    row("r3", BASE + timedelta(hours=2), "0", team_id="b", user_id="u3", model="claude",
        deployment="d-haiku", provider="anthropic", outcome="upstream_unavailable", status=503,
        attempts=3),
    row("r4", BASE + timedelta(hours=3), "0.001", team_id="b", user_id="u3", tags=["chat"],
        prompt_tokens=100, completion_tokens=75, fallback="gpt-4o-mini", usage_estimated=True),
    row("r5", BASE + timedelta(hours=4), "0.0005", outcome="client_closed", status=499,
        prompt_tokens=200),
    # Older than every window.
    row("r6", BASE - timedelta(days=40), "1", team_id="a", tags=["search"]),
    # Rolled up into ledger_daily below, inside the 10-day window.
    row("r7", BASE - timedelta(days=5), "0.0125", team_id="a", user_id="u1", tags=["search"],
        prompt_tokens=1000, completion_tokens=1000),
    row("r8", BASE - timedelta(days=5), "0", team_id="c", outcome="rate_limited", status=429,
        deployment=None, provider=None, attempts=0),
]  # fmt: skip


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated(request.param, tmp_path) as db:
        store = LedgerStore(db.engine)
        await store.insert_many(ROWS)
        assert await store.roll_up(BASE - timedelta(days=4)) == 3
        yield db.engine


def table(rows: list[Any]) -> dict[str, tuple[int, Decimal]]:
    return {r["group"]: (r["requests"], r["cost_usd"]) for r in rows}


async def test_spend_by_team_merges_raw_rows_and_roll_ups(engine: AsyncEngine) -> None:
    rows = await spend_by(engine, "team", SINCE)
    assert [r["group"] for r in rows] == ["a", "b", "(none)", "c"]  # cost desc
    assert table(rows) == {
        "a": (3, Decimal("0.026")),  # r1 + r2 + rolled-up r7; r6 is older than the window
        "b": (2, Decimal("0.001")),
        "(none)": (1, Decimal("0.0005")),
        "c": (1, Decimal(0)),
    }
    a = rows[0]
    assert a["prompt_tokens"] == 4000 and a["completion_tokens"] == 1600
    assert a["cost_per_request"] == Decimal("0.0086666667")
    assert a["share"] == Decimal("0.9455")  # 0.026 / 0.0275
    assert (await totals(engine, SINCE)).cost_usd == Decimal("0.0275")


async def test_feature_tags_are_exploded(engine: AsyncEngine) -> None:
    rows = await spend_by(engine, "feature", SINCE)
    assert [r["group"] for r in rows] == ["search", "(rolled up)", "chat", "(untagged)"]
    assert table(rows) == {
        "search": (2, Decimal("0.0135")),
        "(rolled up)": (2, Decimal("0.0125")),  # the roll-up keeps no tags
        "chat": (2, Decimal("0.0085")),  # r1 counts in both of its features
        "(untagged)": (2, Decimal("0.0005")),
    }


async def test_groups_the_roll_up_does_not_keep(engine: AsyncEngine) -> None:
    assert table(await spend_by(engine, "provider", SINCE)) == {
        "openai": (4, Decimal("0.015")),
        "(rolled up)": (2, Decimal("0.0125")),
        "anthropic": (1, Decimal(0)),
    }
    assert table(await spend_by(engine, "model", SINCE)) == {
        "gpt-4o": (6, Decimal("0.0275")),
        "claude": (1, Decimal(0)),
    }
    with pytest.raises(ValueError, match="cannot group"):
        await spend_by(engine, "colour", SINCE)


async def test_since_and_until(engine: AsyncEngine) -> None:
    # Since half an hour after r1: r2..r5 only; the rolled-up day is before it.
    assert table(await spend_by(engine, "team", BASE + timedelta(minutes=30))) == {
        "a": (1, Decimal("0.006")),
        "b": (2, Decimal("0.001")),
        "(none)": (1, Decimal("0.0005")),
    }
    # Until before r4: r1..r3 and the roll-up.
    assert table(await spend_by(engine, "team", SINCE, BASE + timedelta(minutes=150))) == {
        "a": (3, Decimal("0.026")),
        "b": (1, Decimal(0)),
        "c": (1, Decimal(0)),
    }
    # A window ending before the rolled-up day leaves it out.
    assert await spend_by(engine, "team", SINCE, BASE - timedelta(days=6)) == []
    # 40 days back reaches r6, itself rolled up.
    assert table(await spend_by(engine, "team", BASE - timedelta(days=41)))["a"] == (
        4,
        Decimal("1.026"),
    )


async def test_top_spenders(engine: AsyncEngine) -> None:
    top = await top_spenders(engine, "user", SINCE, 2)
    assert [(r["group"], r["cost_usd"]) for r in top] == [
        ("u1", Decimal("0.02")),
        ("u2", Decimal("0.006")),
    ]


async def test_waste(engine: AsyncEngine) -> None:
    w = await waste(engine, SINCE)
    assert w["requests"] == 7 and w["cost_usd"] == Decimal("0.0275")
    assert w["failed_calls"] == {"requests": 3, "cost_usd": Decimal("0.0005"),
                                 "share": Decimal("0.4286")}  # fmt: skip
    assert w["failed_by_outcome"] == {
        "client_closed": {"requests": 1, "cost_usd": Decimal("0.0005")},
        "rate_limited": {"requests": 1, "cost_usd": Decimal(0)},
        "upstream_unavailable": {"requests": 1, "cost_usd": Decimal(0)},
    }
    assert w["retries"] == {"extra_attempts": 3, "requests": 2}
    assert w["possible_hedges"] == {"requests": 1, "extra_attempts": 1}
    assert w["fallbacks"] == {"requests": 1, "cost_usd": Decimal("0.001")}
    assert w["estimated_usage"] == {"requests": 1, "cost_usd": Decimal("0.001"),
                                    "share": Decimal("0.2")}  # fmt: skip


def test_cheaper_alternative_prefers_the_family() -> None:
    prices = PriceTable.load()
    gpt4o = prices.get("gpt-4o")
    assert gpt4o is not None
    alt = cheaper_alternative(prices, gpt4o)
    assert alt is not None and alt.id == "gpt-4o-mini"
    haiku = prices.get("claude-sonnet-4-5")
    assert haiku is not None
    alt = cheaper_alternative(prices, haiku)
    assert alt is not None and alt.provider == "anthropic" and "embed" not in alt.id
    nano = prices.get("gpt-5-nano")
    assert nano is not None and cheaper_alternative(prices, nano) is None


async def test_optimisation_what_ifs(engine: AsyncEngine) -> None:
    prices = PriceTable.load()
    rows = await optimisation(engine, SINCE, prices, upstream=UPSTREAM)
    assert [r["model"] for r in rows] == ["gpt-4o", "claude"]
    g = rows[0]
    assert g["priced_as"] == "gpt-4o" and g["requests"] == 6
    assert g["cost_usd"] == Decimal("0.0275")
    assert g["cheaper_model"] == "gpt-4o-mini"
    # Prompt 4300 (200 cached), completion 1675 at gpt-4o-mini's 0.15 / 0.075 / 0.60:
    # (4100 x 0.15 + 200 x 0.075 + 1675 x 0.6) / 1M = 0.001635
    assert g["cheaper_cost_usd"] == Decimal("0.001635")
    assert g["cheaper_saving_usd"] == Decimal("0.025865")
    assert g["cache_saving_usd"] == Decimal("0.0055")  # 20 % of 0.0275
    # Non-streaming raw rows only (r1, r4, r5); r2 streamed, r7 is a roll-up.
    assert g["batchable_cost_usd"] == Decimal("0.009")
    assert g["batch_saving_usd"] == Decimal("0.0045")
    assert g["best"] == "cheaper tier"
    c = rows[1]
    assert c["priced_as"] == "claude-haiku-4-5" and c["cost_usd"] == 0 and c["best"] == "-"
    # An explicit target, and a different cache hit rate.
    rows = await optimisation(engine, SINCE, prices, upstream=UPSTREAM,
                              targets={"gpt-4o": "gpt-4.1-nano"}, cache_hit_rate=Decimal("0.5"))  # fmt: skip
    g = rows[0]
    assert g["cheaper_model"] == "gpt-4.1-nano"
    # (4100 x 0.10 + 200 x 0.025 + 1675 x 0.40) / 1M
    assert g["cheaper_cost_usd"] == Decimal("0.001085")
    nano = prices.get("gpt-4.1-nano")
    assert nano is not None
    assert tokens_cost(nano.price, 6, 4300, 200, 1675) == Decimal("0.001085")
    assert g["cache_saving_usd"] == Decimal("0.01375")
