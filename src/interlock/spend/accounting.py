"""Accounting for one request: its price, worst case, budgets, cost and ledger record.

The gateway calls :meth:`Accountant.admit` before routing (reserving the worst case
against every applicable budget) and :meth:`Accountant.finish` once the answer — or the
stream, or the failure — is complete (settling the reservation and spooling the ledger
record).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from interlock.errors import ServiceUnavailable
from interlock.providers.registry import Deployment
from interlock.providers.tokens import estimate_request_tokens
from interlock.settings import SpendSettings
from interlock.spend.cost import cost_of, worst_case
from interlock.spend.enforcer import BudgetEnforcer, Reservation
from interlock.spend.ledger import LedgerRecord, LedgerWriter
from interlock.spend.prices import PriceDecision, PriceTable, UnknownPricePolicy, resolve_price
from interlock.telemetry.tracing import Tracing
from interlock.types import GatewayRequest, Principal, Usage

log = logging.getLogger("interlock.spend")


@dataclass(slots=True)
class Admission:
    """What was decided about a request's money before it ran."""

    reservation: Reservation | None
    tags: tuple[str, ...]
    worst_usd: Decimal
    at: float = field(default_factory=time.monotonic)  # to tell an expired reservation

# Told about every finished record (metrics, the request's log line), with the age of its
# reservation in seconds (None: nothing was reserved).
OnFinish = Callable[[LedgerRecord, float | None], None]


class Accountant:
    def __init__(
        self,
        cfg: SpendSettings,
        deployments: dict[str, Deployment],
        enforcer: BudgetEnforcer,
        ledger: LedgerWriter,
        table: PriceTable | None = None,
        *,
        on_finish: OnFinish | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._cfg = cfg
        self._on_finish = on_finish
        self._tracing = tracing
        self.enforcer = enforcer
        self.ledger = ledger
        table = table or PriceTable.load()
        u = cfg.unknown_price
        policy = UnknownPricePolicy(
            u.action, Decimal(str(u.input_per_mtok)), Decimal(str(u.output_per_mtok))
        )
        self.prices: dict[str, PriceDecision] = {
            name: resolve_price(dep.settings, dep.provider_kind, table, policy, deployment=name)
            for name, dep in deployments.items()
        }
        self.warnings = [d.warning for d in self.prices.values() if d.warning]
        for w in self.warnings:
            log.warning(w)

    def priced(self, deps: list[Deployment]) -> list[Deployment]:
        """Deployments whose price is known (or allowed by policy); the rest are blocked."""
        ok = [d for d in deps if not self.prices[d.name].blocked]
        if deps and not ok:
            raise ServiceUnavailable(
                "no deployment of this model has a known price, and the unknown-price policy "
                "blocks it; set deployments.<name>.price in the configuration",
                code="price_unknown",
            )
        return ok

    def cost(self, deployment: str, usage: Usage | None) -> Decimal:
        decision = self.prices.get(deployment)
        if usage is None or decision is None or decision.price is None:
            return Decimal(0)
        return cost_of(usage, decision.price)

    def _worst(self, req: GatewayRequest, deps: list[Deployment]) -> Decimal:
        prompt = estimate_request_tokens(req.body)
        body = req.body
        out = body.get("max_completion_tokens") or body.get("max_tokens")
        if not isinstance(out, int):
            out = self._cfg.default_max_output_tokens
        n = body.get("n")
        choices = n if isinstance(n, int) and n > 1 else 1
        worst = Decimal(0)
        for d in deps:
            price = self.prices[d.name].price
            if price is not None:
                worst = max(worst, worst_case(prompt, out * choices, price))
        return worst

    async def admit(
        self, req: GatewayRequest, principal: Principal, deps: list[Deployment]
    ) -> Admission:
        tags = tuple(dict.fromkeys((*principal.tags, *req.tags)))
        self.enforcer.require_loaded()
        budgets = self.enforcer.applicable(principal.key_id, principal.user, principal.team, tags)
        if not budgets:
            return Admission(None, tags, Decimal(0))
        worst = self._worst(req, deps)
        return Admission(await self.enforcer.reserve(budgets, worst), tags, worst)

    async def finish(self, admission: Admission | None, cost: Decimal, rec: LedgerRecord) -> None:
        """Settle (or release, at cost 0) and spool the ledger record."""
        if self._tracing is not None and self._tracing.enabled:
            with self._tracing.span("accounting", **{"interlock.cost_usd": float(cost)}):
                await self._finish(admission, cost, rec)
        else:
            await self._finish(admission, cost, rec)
        if self._on_finish is not None:
            age = None
            if admission is not None and admission.reservation is not None:
                age = time.monotonic() - admission.at
            self._on_finish(rec, age)

    async def _finish(self, admission: Admission | None, cost: Decimal, rec: LedgerRecord) -> None:
        if admission is not None:
            rec.tags = list(admission.tags)
            await self.enforcer.settle(admission.reservation, cost)
        rec.cost_usd = cost
        self.ledger.record(rec)
