"""The reconciler: replica_lost rows rewritten from the provider's usage API.

Against the real simulator's OpenAI usage endpoint: requests the simulator served, some
recorded by the ledger and some lost with their process (worst case); after reconcile
the ledger's total equals the provider's bill to 1e-10, rerunning changes nothing, and a
row reachable through a provider without a usage API keeps its worst case.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.settings import Settings
from interlock.sim import SimControl
from interlock.spend.ledger import LedgerRecord, lost_record
from interlock.spend.reconcile import reach_from, reconcile, split, views_from
from interlock.storage.ledger import LedgerStore
from interlock.storage.tables import ledger, ledger_reconcile

IN, OUT = Decimal(3), Decimal(50)  # USD per 1M tokens


def settings(sim_url: str, tmp_path: Path) -> Settings:
    price = {"input_per_mtok": float(IN), "output_per_mtok": float(OUT)}
    return Settings.model_validate(
        {
            "state_dir": str(tmp_path),
            "server": {"request_timeout_s": 5},
            "providers": {
                "sim": {
                    "kind": "openai_compatible",
                    "base_url": f"{sim_url}/v1",
                    "api_key": "k",
                    "usage_api": {"admin_key": "sk-admin-x", "settle_delay_s": 0},
                },
                "other": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1"},
            },
            "deployments": {
                "small": {"provider": "sim", "model": "sim-small", "price": price},
                "medium": {"provider": "sim", "model": "sim-medium", "price": price},
                "elsewhere": {"provider": "other", "model": "sim-small", "price": price},
            },
            "models": {
                "chat": {"deployments": ["small"]},
                "med": {"deployments": ["medium"]},
                "fb": {"deployments": ["medium"], "fallbacks": [{"models": ["chat"]}]},
                "mixed": {"deployments": ["elsewhere", "small"]},
            },
        }
    )


def served(sim_url: str, model: str, text: str) -> tuple[int, int]:
    r = httpx.post(f"{sim_url}/v1/chat/completions", headers={"Authorization": "Bearer k"},
                   json={"model": model, "messages": [{"role": "user", "content": text}]})  # fmt: skip
    u = r.json()["usage"]
    return u["prompt_tokens"], u["completion_tokens"]


def cost(tokens: tuple[int, int]) -> Decimal:
    return (tokens[0] * IN + tokens[1] * OUT) / 1_000_000


async def test_lost_rows_take_what_the_provider_billed(
    engine: AsyncEngine, sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    cfg = settings(sim_url, tmp_path)
    store = LedgerStore(engine)
    now = datetime.now(UTC)
    rows = []
    billed = Decimal(0)
    for i in range(7):
        model = "sim-medium" if i == 6 else "sim-small"
        toks = served(sim_url, model, f"request {i} " + "word " * i)
        billed += cost(toks)
        rec = LedgerRecord(request_id=f"r{i}", endpoint="chat", status=200, outcome="ok",
                           model="chat", deployment="small", provider="sim",
                           prompt_tokens=toks[0], completion_tokens=toks[1],
                           cost_usd=cost(toks), created_at=now)  # fmt: skip
        if i >= 4:  # lost with their process: the worst case, as a replay writes it
            rec = lost_record(rec, Decimal("0.05"))
            rec.deployment = rec.provider = None
            rec.model = "med" if i == 6 else "chat"
        rows.append(rec.to_row())
    # One more lost row on an alias that may have gone to a provider without usage_api.
    other = lost_record(LedgerRecord(request_id="x", endpoint="chat", status=200, outcome="ok",
                                     model="mixed", created_at=now), Decimal("0.05"))  # fmt: skip
    rows.append(other.to_row())
    await store.insert_rows(rows)
    before = await total(engine)
    assert before == sum(cost_of_row(r) for r in rows)
    later = now + timedelta(seconds=30)
    args = (store, views_from(cfg), reach_from(cfg), now - timedelta(minutes=5), later)
    report = await reconcile(*args, reach_s=5, now=later)
    assert report.rewritten == 3 and report.skipped == 1
    after = await total(engine, exclude="x")
    assert after == billed  # to 1e-10: the ledger equals the provider's bill
    got = await by_id(engine)
    assert got["x"]["cost_usd"] == Decimal("0.05")  # kept at its worst case
    assert got["r6"]["deployment"] == "medium" and got["r6"]["provider"] == "sim"
    assert got["r6"]["cost_usd"] == cost(served_tokens(got["r6"]))
    assert all(got[f"r{i}"]["outcome"] == "replica_lost" for i in range(4, 7))
    # Again: recomputed from the worst cases, the same result; the log grows.
    report = await reconcile(*args, reach_s=5, now=later)
    assert await total(engine, exclude="x") == billed
    async with engine.connect() as conn:
        log = (await conn.execute(select(ledger_reconcile))).fetchall()
    assert {r.model for r in log} >= {"sim-small", "sim-medium"}
    small = next(r for r in log if r.model == "sim-small")
    assert small.provider_requests == 6 and small.lost_rows == 2
    # A fallback alias can reach both models.
    assert reach_from(cfg)["fb"] == {("sim", "sim-medium"), ("sim", "sim-small")}


async def test_a_lost_row_never_takes_more_than_its_worst_case(
    engine: AsyncEngine, sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    cfg = settings(sim_url, tmp_path)
    store = LedgerStore(engine)
    now = datetime.now(UTC)
    toks = served(sim_url, "sim-small", "billed, but the ledger knows only a tiny worst case")
    served(sim_url, "sim-small", "traffic of someone else in the same organization")
    tiny = cost(toks) / 2
    rec = lost_record(LedgerRecord(request_id="t", endpoint="chat", status=200, outcome="ok",
                                   model="chat", created_at=now), tiny)  # fmt: skip
    await store.insert_rows([rec.to_row()])
    later = now + timedelta(seconds=30)
    report = await reconcile(store, views_from(cfg), reach_from(cfg),
                             now - timedelta(minutes=5), later, reach_s=5, now=later)  # fmt: skip
    assert (await by_id(engine))["t"]["cost_usd"] == tiny
    line = next(ln for ln in report.lines if ln.model == "sim-small")
    assert line.unattributed_usd > 0 and line.lost_after_usd == tiny


@given(
    amount=st.decimals(min_value=0, max_value=1000, places=6),
    rows=st.lists(
        st.tuples(st.decimals(min_value="0.000001", max_value=100, places=6), st.booleans()),
        min_size=1,
        max_size=8,
    ),
)
def test_split_is_exact_and_capped(amount: Decimal, rows: list[tuple[Decimal, bool]]) -> None:
    weights = {f"k{i}": w for i, (w, _) in enumerate(rows)}
    caps = {f"k{i}": (w if capped else None) for i, (w, capped) in enumerate(rows)}
    shares, left = split(amount, weights, caps)
    assert all(s >= 0 for s in shares.values())
    assert all(caps[k] is None or s <= caps[k] for k, s in shares.items())  # type: ignore[operator]
    assert sum(shares.values(), Decimal(0)) + left == amount
    if any(c is None for c in caps.values()):
        assert left == 0  # an uncapped row takes whatever the capped ones cannot


async def total(engine: AsyncEngine, exclude: str = "") -> Decimal:
    got = await by_id(engine)
    return sum((r["cost_usd"] for k, r in got.items() if k != exclude), Decimal(0))


async def by_id(engine: AsyncEngine) -> dict[str, dict]:
    async with engine.connect() as conn:
        got = (await conn.execute(select(ledger))).fetchall()
    return {r.request_id: dict(r._mapping) for r in got}


def cost_of_row(row: list) -> Decimal:
    return Decimal(row[18])


def served_tokens(row: dict) -> tuple[int, int]:
    return row["prompt_tokens"], row["completion_tokens"]
