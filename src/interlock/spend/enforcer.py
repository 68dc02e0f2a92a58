"""Hard budgets that cannot be overshot, and the alerts that come before them.

Before a call, the request's worst-case cost (the whole prompt at the input price plus
``max_tokens`` at the output price) is reserved against every budget that applies, in
one atomic step; the call is refused with 429 ``budget_exceeded`` if any hard limit
would be passed. After the call the reservation is settled to the actual cost, or
released if nothing was spent. Because spend is only ever admitted against
settled + reserved amounts, concurrent requests — on any number of replicas sharing the
state — cannot together pass a limit unless a provider bills more than the worst case.

Settlements must land: one that fails (the shared state is unreachable) is queued and
retried until it does (:mod:`interlock.spend.settlements`); the spool has it too, for
when this process dies first. A hold whose owner never settles is charged at its
reserved amount when it expires (:mod:`interlock.state.reservations`).

While the shared state is unreachable, a budget with a hard limit refuses
(``503 budget_state_unavailable``) unless ``spend.state_unavailable_allowance_usd`` gives
this replica a bounded allowance: it then admits up to that much worst-case spend per
budget on its own, within what it last saw of the counter, and charges what was spent
into the counters once the state is back.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from interlock.errors import RateLimited, ServiceUnavailable
from interlock.settings import SpendSettings
from interlock.spend.budgets import (
    Budget,
    applicable,
    counter_key,
    from_nano,
    to_nano,
    window_bounds,
)
from interlock.spend.cost import format_usd
from interlock.spend.settlements import CHARGE, HOLD, Settle, SettleQueue
from interlock.state.reservations import (
    Hold,
    LocalReservations,
    RedisReservations,
    StateUnavailable,
)
from interlock.storage.budgets import BudgetStore
from interlock.storage.ledger import LedgerStore

log = logging.getLogger("interlock.budgets")

# Alert thresholds: fractions of the hard limit, and of the planned budget.
LIMIT_THRESHOLDS = (Decimal("0.5"), Decimal("0.8"), Decimal("1.0"))
BUDGET_THRESHOLDS = ((Decimal("1.2"), "warning"), (Decimal("1.5"), "critical"))
_SLACK_S = 7 * 24 * 3600  # counters outlive their window by this (reports, late settles)


class BudgetExceeded(RateLimited):
    code = "budget_exceeded"


@dataclass(slots=True)
class Reservation:
    rid: str
    keys: list[str]
    amount: int
    budgets: list[Budget]
    settled: bool = False
    # Admitted while the shared state was unreachable: no hold exists; its cost is
    # charged into the counters once the state is back.
    local: bool = False


@dataclass(slots=True)
class BudgetAlert:
    budget_id: str
    description: str
    level: str  # info | warning | critical
    threshold: str  # e.g. "80% of limit"
    spent_usd: str
    window_start: str
    at: str


@dataclass(slots=True)
class _AlertLog:
    fired: set[tuple[str, str, str]] = field(default_factory=set)
    recent: list[BudgetAlert] = field(default_factory=list)


class BudgetEnforcer:
    def __init__(
        self,
        cfg: SpendSettings,
        reservations: LocalReservations | RedisReservations,
        ledger: LedgerStore,
        store: BudgetStore,
        *,
        hold_s: float,
        clock: Callable[[], float] = time.time,
        on_alert: Callable[[BudgetAlert], None] | None = None,
    ) -> None:
        self._cfg = cfg
        self._res = reservations
        self._ledger = ledger
        self._store = store
        self._hold = hold_s
        self._clock = clock
        self._on_alert = on_alert
        self._config_budgets = [
            Budget(
                f"cfg-{i}",
                b.scope,
                b.subject,
                b.window,
                Decimal(str(b.limit_usd)) if b.limit_usd is not None else None,
                Decimal(str(b.budget_usd)) if b.budget_usd is not None else None,
                b.timezone or cfg.timezone,
            )
            for i, b in enumerate(cfg.budgets)
        ]
        self.budgets: list[Budget] = list(self._config_budgets)
        # False until the stored budgets were read once: until then this process does not
        # know every limit that applies (a worker started while the database is down).
        self.loaded = False
        self._alerts = _AlertLog()
        self.settles = SettleQueue(self._apply_one, max_items=cfg.settle_queue_max)
        # Per counter key: settled + held as last seen in the shared state, and what this
        # process admitted without seeing it (open worst cases, then actual costs until
        # their charge lands): the bounded allowance while the state is unreachable.
        self._seen: dict[str, int] = {}
        self._blind: dict[str, int] = {}
        self._blind_warned = False

    # -- the budget list -----------------------------------------------------------

    async def reload(self) -> None:
        rows = await self._store.all()
        dynamic = [
            Budget(
                r["id"],
                r["scope"],
                r["subject"],
                r["window"],
                r["limit_usd"],
                r["budget_usd"],
                r["timezone"],
            )
            for r in rows
        ]
        self.budgets = self._config_budgets + dynamic
        self.loaded = True

    async def create(
        self,
        scope: str,
        subject: str | None,
        window: str,
        limit_usd: Decimal | None,
        budget_usd: Decimal | None,
        timezone: str | None,
    ) -> Budget:
        b = Budget(
            "b_" + secrets.token_hex(8),
            scope,
            subject,
            window,
            limit_usd,
            budget_usd,
            timezone or self._cfg.timezone,
        )
        await self._store.insert(
            {
                "id": b.id,
                "scope": scope,
                "subject": subject,
                "window": window,
                "limit_usd": limit_usd,
                "budget_usd": budget_usd,
                "timezone": b.timezone,
            }
        )
        await self.reload()
        return b

    async def delete(self, budget_id: str) -> bool:
        ok = await self._store.delete(budget_id)
        await self.reload()
        return ok

    def applicable(
        self, key_id: str, user: str | None, team: str | None, tags: tuple[str, ...]
    ) -> list[Budget]:
        return applicable(self.budgets, key_id=key_id, user=user, team=team, tags=tags)

    # -- counters --------------------------------------------------------------------

    def _window(self, b: Budget, now: float) -> tuple[datetime, datetime | None]:
        return window_bounds(b.window, b.timezone, datetime.fromtimestamp(now, UTC))

    def _hold_for(self, b: Budget, now: float) -> Hold:
        start, end = self._window(b, now)
        ttl = int((end.timestamp() - now) if end else 400 * 24 * 3600) + _SLACK_S
        limit = to_nano(b.limit_usd) if b.limit_usd is not None else -1
        return Hold(counter_key(b, start), limit, ttl)

    async def _seed(self, b: Budget, key: str, ttl: int, now: float) -> None:
        """Initialise a counter from the ledger (first use, or after the state was lost)."""
        start, _ = self._window(b, now)
        where: dict[str, str | None] = {}
        if b.scope in ("key", "user", "team"):
            where[b.scope] = b.subject
        if b.scope == "tag":
            spent = await self._ledger.spend_since_tag(start, b.subject or "")
        else:
            spent = await self._ledger.spend_since(start, **where)
        await self._res.init(key, to_nano(spent), ttl)

    def require_loaded(self) -> None:
        """Refuse (fail_closed) while the stored budgets are unknown to this process."""
        if self.loaded or self._cfg.hard_limits_on_state_error == "fail_open":
            return
        raise ServiceUnavailable(
            "spend limits cannot be checked right now (budgets not loaded: database "
            "unreachable); refusing rather than risking an overspend",
            code="budget_state_unavailable",
            retry_after=5,
        )

    async def reserve(self, budgets: list[Budget], worst_usd: Decimal) -> Reservation | None:
        if not budgets:
            return None
        now = self._clock()
        holds = [self._hold_for(b, now) for b in budgets]
        amount = to_nano(worst_usd, up=True)
        rid = secrets.token_hex(8)
        try:
            for _ in range(3):
                result = await self._res.reserve(holds, amount, rid, self._hold)
                if not result.uninitialised:
                    break
                for b, h in zip(budgets, holds, strict=True):
                    if h.key in result.uninitialised:
                        await self._seed(b, h.key, h.ttl_s, now)
        except StateUnavailable:
            return self._reserve_blind(budgets, holds, amount, rid)
        self._blind_warned = False
        if result.ok:
            if len(self._seen) > 10_000:
                self._seen.clear()  # old windows' keys; the live ones come back at once
            for h, seen in zip(holds, result.seen, strict=False):
                self._seen[h.key] = seen
            return Reservation(rid, [h.key for h in holds], amount, budgets)
        self._seen[holds[result.denied].key] = result.spent
        b = budgets[result.denied]
        _, end = self._window(b, now)
        retry = max(1.0, end.timestamp() - now) if end else None
        spent = from_nano(result.spent)
        raise BudgetExceeded(
            f"the {b.describe()} would be exceeded: ${spent:.6f} of ${b.limit_usd} spent or "
            f"reserved, and this request may cost up to ${worst_usd:.6f}",
            retry_after=retry,
        )

    def _reserve_blind(
        self, budgets: list[Budget], holds: list[Hold], amount: int, rid: str
    ) -> Reservation:
        """Admit without the shared state, within the bounded allowance, or refuse."""
        allowance = to_nano(Decimal(str(self._cfg.state_unavailable_allowance_usd)))
        fail_open = self._cfg.hard_limits_on_state_error == "fail_open"
        for h in holds:
            if h.limit < 0 or fail_open:
                continue  # a planned budget only counts; fail_open is the operator's call
            blind = self._blind.get(h.key, 0)
            seen = self._seen.get(h.key)
            if seen is None or blind + amount > allowance or seen + blind + amount > h.limit:
                raise ServiceUnavailable(
                    "spend limits cannot be checked right now (shared state unreachable); "
                    "refusing rather than risking an overspend",
                    code="budget_state_unavailable",
                    retry_after=5,
                )
        if not self._blind_warned:  # once per outage, not once per request
            self._blind_warned = True
            log.warning(
                "budget state unavailable; admitting without it (planned budgets, fail_open, "
                "or within spend.state_unavailable_allowance_usd); charged when it is back"
            )
        for h in holds:
            self._blind[h.key] = self._blind.get(h.key, 0) + amount
        return Reservation(rid, [h.key for h in holds], amount, budgets, local=True)

    def settlements(self, res: Reservation | None, actual_usd: Decimal) -> list[Settle]:
        """What settling ``res`` at ``actual_usd`` writes (once: a reservation settles one
        time; later calls return nothing). Spool these before :meth:`apply`."""
        if res is None or res.settled:
            return []
        res.settled = True
        actual = to_nano(actual_usd)
        if not res.local:
            return [Settle(res.rid, tuple(res.keys), actual, HOLD)]
        for k in res.keys:  # the worst case was counted blind; now the actual cost is
            self._blind[k] = self._blind.get(k, 0) - res.amount + actual
        return [Settle(res.rid, tuple(res.keys), actual, CHARGE)]

    def lost_settles(self, reservations: list[Reservation]) -> list[Settle]:
        """What charges these reservations at their reserved amounts if their request is
        lost with its process (spooled with the request's intent)."""
        return [
            Settle(r.rid, tuple(r.keys), r.amount, CHARGE if r.local else HOLD)
            for r in reservations
        ]

    async def _apply_one(self, s: Settle) -> None:
        await self._res.settle(list(s.keys), s.rid, s.actual, s.mode)
        if s.mode == CHARGE:
            for k in s.keys:
                left = self._blind.get(k, 0) - s.actual
                if left > 0:
                    self._blind[k] = left
                else:
                    self._blind.pop(k, None)

    async def apply(
        self,
        settles: list[Settle],
        budgets: list[Budget] | None = None,
        on_landed: Callable[[], None] | None = None,
    ) -> None:
        """Write ``settles`` now, or queue them to be retried until they land."""
        if not settles:
            if on_landed is not None:
                on_landed()
            return
        if len(self.settles):
            # Earlier settles are still waiting for the state: keep the order, and keep
            # this request from waiting on a state known to be unreachable.
            self.settles.push(settles, on_landed)
            return
        try:
            for s in settles:
                await self._apply_one(s)
        except StateUnavailable:
            log.warning("could not settle a budget reservation yet; retrying in the background")
            self.settles.push(settles, on_landed)
            return
        if on_landed is not None:
            on_landed()
        if budgets and any(s.actual > 0 for s in settles):
            await self._check_alerts(budgets)

    async def apply_replayed(self, settles: list[Settle]) -> None:
        """Settles read back from a dead process's spool; raises StateUnavailable so that
        the replay is retried later rather than lost."""
        for s in settles:
            await self._res.settle(list(s.keys), s.rid, s.actual, s.mode)

    async def settle(self, res: Reservation | None, actual_usd: Decimal) -> None:
        await self.apply(self.settlements(res, actual_usd), res.budgets if res else None)

    async def release(self, res: Reservation | None) -> None:
        await self.settle(res, Decimal(0))

    async def close(self) -> None:
        await self.settles.close()

    # -- visibility --------------------------------------------------------------------

    async def status(self, b: Budget) -> dict[str, Any]:
        now = self._clock()
        start, end = self._window(b, now)
        key = counter_key(b, start)
        try:
            counts = await self._res.read(key)
        except StateUnavailable:
            counts = None
        if counts is None:
            spent_usd = await self._spent_from_ledger(b, start)
            reserved = Decimal(0)
        else:
            spent_usd, reserved = from_nano(counts[0]), from_nano(counts[1])
        elapsed = max(1.0, now - start.timestamp())
        burn_per_hour = spent_usd / Decimal(elapsed) * 3600
        out: dict[str, Any] = {
            "id": b.id,
            "scope": b.scope,
            "subject": b.subject,
            "window": b.window,
            "timezone": b.timezone,
            "limit_usd": format_usd(b.limit_usd) if b.limit_usd is not None else None,
            "budget_usd": format_usd(b.budget_usd) if b.budget_usd is not None else None,
            "window_start": start.isoformat(),
            "window_end": end.isoformat() if end else None,
            "spent_usd": format_usd(spent_usd),
            "reserved_usd": format_usd(reserved),
            "burn_usd_per_hour": f"{burn_per_hour:.6f}",
            "remaining_usd": None,
            "exhausted_at": None,
        }
        if b.limit_usd is not None:
            remaining = max(Decimal(0), b.limit_usd - spent_usd - reserved)
            out["remaining_usd"] = format_usd(remaining)
            if burn_per_hour > 0:
                hours = float(remaining / burn_per_hour)
                at = now + hours * 3600
                if end is None or at < end.timestamp():
                    out["exhausted_at"] = datetime.fromtimestamp(at, UTC).isoformat()
        return out

    async def _spent_from_ledger(self, b: Budget, start: datetime) -> Decimal:
        if b.scope == "tag":
            return await self._ledger.spend_since_tag(start, b.subject or "")
        where: dict[str, str | None] = (
            {b.scope: b.subject} if b.scope in ("key", "user", "team") else {}
        )
        return await self._ledger.spend_since(start, **where)

    async def _check_alerts(self, budgets: list[Budget]) -> None:
        now = self._clock()
        for b in budgets:
            start, _ = self._window(b, now)
            try:
                counts = await self._res.read(counter_key(b, start))
            except StateUnavailable:
                return
            if counts is None:
                continue
            spent = from_nano(counts[0])
            marks: list[tuple[str, str]] = []
            if b.limit_usd:
                for frac in LIMIT_THRESHOLDS:
                    if spent >= b.limit_usd * frac:
                        level = (
                            "critical"
                            if frac >= 1
                            else ("warning" if frac >= Decimal("0.8") else "info")
                        )
                        marks.append((f"{int(frac * 100)}% of limit", level))
            if b.budget_usd:
                for frac, level in BUDGET_THRESHOLDS:
                    if spent >= b.budget_usd * frac:
                        marks.append((f"{int(frac * 100)}% of budget", level))
            for threshold, level in marks:
                fired = (b.id, start.isoformat(), threshold)
                if fired in self._alerts.fired:
                    continue
                self._alerts.fired.add(fired)
                alert = BudgetAlert(
                    b.id, b.describe(), level, threshold, format_usd(spent), start.isoformat(),
                    datetime.fromtimestamp(now, UTC).isoformat(),
                )  # fmt: skip
                self._alerts.recent.append(alert)
                del self._alerts.recent[:-200]
                log.warning(
                    "budget alert: %s reached %s ($%s)", b.describe(), threshold, spent,
                    extra={"event": "budget_alert", "budget": b.id, "level": level},
                )  # fmt: skip
                if self._on_alert is not None:
                    self._on_alert(alert)

    def alerts(self) -> list[BudgetAlert]:
        return list(self._alerts.recent)
