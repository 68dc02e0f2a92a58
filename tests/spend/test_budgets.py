"""Budget windows, reservations and settlement with a fake clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from interlock.settings import SpendSettings, StorageSettings
from interlock.spend.budgets import Budget, applicable, from_nano, to_nano, window_bounds
from interlock.spend.enforcer import BudgetEnforcer, BudgetExceeded
from interlock.state.reservations import Hold, LocalReservations
from interlock.storage.budgets import BudgetStore
from interlock.storage.engine import create_engine, run_migrations
from interlock.storage.ledger import LedgerStore


def utc(*a: int) -> datetime:
    return datetime(*a, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("window", "tz", "now", "start", "end"),
    [
        ("daily", "UTC", utc(2026, 11, 27, 13, 5), utc(2026, 11, 27), utc(2026, 11, 28)),
        (
            "daily",
            "America/New_York",
            utc(2026, 11, 27, 3),
            utc(2026, 11, 26, 5),
            utc(2026, 11, 27, 5),
        ),
        (
            "weekly",
            "UTC",
            utc(2026, 11, 27, 13),
            utc(2026, 11, 23),
            utc(2026, 11, 30),
        ),  # Monday to Monday
        ("monthly", "UTC", utc(2026, 12, 31, 23, 59), utc(2026, 12, 1), utc(2027, 1, 1)),
        (
            "monthly",
            "Europe/Berlin",
            utc(2026, 10, 31, 23, 30),
            utc(2026, 10, 31, 23),
            utc(2026, 11, 30, 23),
        ),
        # The day the clocks change (Berlin, 2026-03-29) is 23 hours long.
        (
            "daily",
            "Europe/Berlin",
            utc(2026, 3, 29, 12),
            utc(2026, 3, 28, 23),
            utc(2026, 3, 29, 22),
        ),
    ],
)
def test_calendar_windows(
    window: str, tz: str, now: datetime, start: datetime, end: datetime
) -> None:
    assert window_bounds(window, tz, now) == (start, end)


def test_lifetime_window_has_no_end() -> None:
    assert window_bounds("lifetime", "UTC", utc(2026, 1, 1))[1] is None


def test_money_units_are_exact() -> None:
    assert to_nano(Decimal("0.0000000011"), up=True) == 2 and to_nano(Decimal("0.0000000011")) == 1
    assert from_nano(to_nano(Decimal("12.345678901"))) == Decimal("12.345678901")


def test_which_budgets_apply() -> None:
    bs = [Budget("g", "global", None, "daily", Decimal(1), None, "UTC"),
          Budget("k", "key", "k1", "daily", Decimal(1), None, "UTC"),
          Budget("t", "team", "t1", "daily", Decimal(1), None, "UTC"),
          Budget("f", "tag", "search", "daily", Decimal(1), None, "UTC"),
          Budget("o", "user", "other", "daily", Decimal(1), None, "UTC")]  # fmt: skip
    got = applicable(bs, key_id="k1", user="u1", team="t1", tags=("search",))
    assert [b.id for b in got] == ["g", "k", "t", "f"]


async def test_reservations_all_or_nothing_and_expiry() -> None:
    now = [1000.0]
    r = LocalReservations(clock=lambda: now[0])
    a, b = Hold("a", 100, 3600), Hold("b", 50, 3600)
    assert (await r.reserve([a, b], 10, "x", 60)).uninitialised == ("a", "b")
    await r.init("a", 0, 3600)
    await r.init("b", 45, 3600)
    res = await r.reserve([a, b], 10, "r1", 60)
    assert not res.ok and res.denied == 1 and res.spent == 45
    assert await r.read("a") == (0, 0)  # nothing held on 'a' either
    assert (await r.reserve([a], 90, "r2", 60)).ok
    assert not (await r.reserve([a], 20, "r3", 60)).ok  # 90 held + 20 > 100
    now[0] += 61  # r2's holder died: its hold expires and is charged, not released
    assert not (await r.reserve([a], 20, "r4", 60)).ok
    assert await r.read("a") == (90, 0)
    await r.settle(["a"], "r2", 5)  # the replayed record corrects it to the actual cost
    assert (await r.reserve([a], 20, "r4", 60)).ok


@pytest.fixture
async def enforcer_env(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = create_engine(StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/b.db"))
    await run_migrations(engine)
    now = [utc(2026, 11, 27, 23, 59, 0).timestamp()]
    cfg = SpendSettings(budgets=({"scope": "global", "window": "daily", "limit_usd": 1.0},))  # type: ignore[arg-type]
    enf = BudgetEnforcer(cfg, LocalReservations(clock=lambda: now[0]), LedgerStore(engine), BudgetStore(engine),
                         hold_s=600, clock=lambda: now[0])  # fmt: skip
    yield enf, now
    await engine.dispose()


async def test_sustained_load_under_the_limit_is_never_refused(enforcer_env) -> None:  # type: ignore[no-untyped-def]
    enf, now = enforcer_env
    budgets = enf.applicable("k", None, None, ())
    worst, actual = Decimal("0.01"), Decimal("0.004")
    refused = 0
    spent = Decimal(0)

    async def one() -> None:
        nonlocal refused, spent
        try:
            res = await enf.reserve(budgets, worst)
        except BudgetExceeded:
            refused += 1
            return
        await asyncio.sleep(0)
        await enf.settle(res, actual)
        spent += actual

    # 4 in flight at a time; stop while settled + 4 worst cases still fit under $1.
    while spent + 4 * worst <= Decimal("1.0") - actual * 4:
        await asyncio.gather(*(one() for _ in range(4)))
        now[0] += 0.01
    assert refused == 0
    assert spent > Decimal("0.9")


async def test_window_rollover_resets_exactly_once(enforcer_env) -> None:  # type: ignore[no-untyped-def]
    enf, now = enforcer_env
    budgets = enf.applicable("k", None, None, ())
    res = await enf.reserve(budgets, Decimal("0.9"))
    await enf.settle(res, Decimal("0.9"))
    with pytest.raises(BudgetExceeded) as exc:
        await enf.reserve(budgets, Decimal("0.2"))
    assert 0 < exc.value.retry_after <= 60  # one minute to midnight
    starts = set()
    for _ in range(120):  # across midnight, one request per second
        now[0] += 1.0
        try:
            r = await enf.reserve(budgets, Decimal("0.2"))
        except BudgetExceeded:
            continue
        await enf.settle(r, Decimal("0.2"))
        starts.add((await enf.status(budgets[0]))["window_start"])
    assert starts == {"2026-11-28T00:00:00+00:00"}  # the new window, and only it
    status = await enf.status(budgets[0])
    assert Decimal(status["spent_usd"]) == Decimal("1.0")  # five $0.2 requests fit the new day
