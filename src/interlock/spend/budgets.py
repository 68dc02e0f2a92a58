"""Budgets: which apply to a request, their calendar windows, and money in integer units.

Counters hold nano-dollars (1e-9 USD) as integers so that Redis (INCRBY) and Python
agree exactly; conversion from Decimal rounds reservations up and settlements to the
nearest unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

NANO = Decimal("1e9")
LIFETIME_START = datetime(2000, 1, 1, tzinfo=UTC)


def to_nano(usd: Decimal, *, up: bool = False) -> int:
    return int((usd * NANO).to_integral_value(ROUND_CEILING if up else ROUND_HALF_EVEN))


def from_nano(n: int) -> Decimal:
    return Decimal(n) / NANO


@dataclass(frozen=True, slots=True)
class Budget:
    id: str
    scope: str  # key | user | team | tag | global
    subject: str | None
    window: str  # daily | weekly | monthly | lifetime
    limit_usd: Decimal | None
    budget_usd: Decimal | None
    timezone: str

    def describe(self) -> str:
        who = "global" if self.scope == "global" else f"{self.scope} {self.subject}"
        return f"{self.window} budget of {who}"


def window_bounds(window: str, tz: str, now: datetime) -> tuple[datetime, datetime | None]:
    """[start, end) of the calendar window containing ``now`` (end None: lifetime)."""
    if window == "lifetime":
        return LIFETIME_START, None
    local = now.astimezone(ZoneInfo(tz))
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if window == "daily":
        start = day
        end = _add_days(day, 1)
    elif window == "weekly":  # ISO weeks: Monday 00:00
        start = _add_days(day, -local.weekday())
        end = _add_days(start, 7)
    else:  # monthly
        start = day.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
    return start.astimezone(UTC), end.astimezone(UTC)


def _add_days(day: datetime, n: int) -> datetime:
    # Calendar arithmetic in local time, re-resolved so DST changes keep midnight.
    naive = day.replace(tzinfo=None) + timedelta(days=n)
    assert day.tzinfo is not None
    return naive.replace(tzinfo=day.tzinfo)


def counter_key(b: Budget, start: datetime) -> str:
    return f"budget:{{{b.id}}}:{int(start.timestamp())}"


def applicable(
    budgets: Iterable[Budget],
    *,
    key_id: str,
    user: str | None,
    team: str | None,
    tags: Iterable[str],
) -> list[Budget]:
    tagset = set(tags)
    out = []
    for b in budgets:
        if (
            b.scope == "global"
            or (b.scope == "key" and b.subject == key_id)
            or (b.scope == "user" and user is not None and b.subject == user)
            or (b.scope == "team" and team is not None and b.subject == team)
            or (b.scope == "tag" and b.subject in tagset)
        ):
            out.append(b)
    return out
