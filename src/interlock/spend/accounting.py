"""Accounting for one request: its price, worst case, budgets, cost and ledger record.

The gateway calls :meth:`Accountant.admit` before routing (reserving the worst case
against every applicable budget), awaits :meth:`Accountant.attempt_hook`'s callback before
each upstream attempt (every billable attempt after the first reserves its own worst
case) and calls :meth:`Accountant.finish` once the answer — or the stream, or the
failure — is complete (settling the reservations and spooling the ledger record).

The worst case is :mod:`interlock.spend.bound`'s upper bound of what the provider can
bill, at the most expensive deployment the request can reach. A request without an output
cap that a hard limit applies to gets one (:meth:`Accountant.admit` writes it into the
body), so that its worst case is finite and fits what the budget has left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from interlock.errors import InterlockError, ServiceUnavailable
from interlock.providers.registry import Deployment
from interlock.providers.tokens import estimate_request_tokens
from interlock.settings import SpendSettings
from interlock.spend.bound import MediaRules, RequestBound, bound_request, cap_fitting, media_rules
from interlock.spend.bound import worst_usd as bound_worst_usd
from interlock.spend.budgets import Budget, from_nano, to_nano, window_bounds
from interlock.spend.cost import cost_of, format_usd
from interlock.spend.enforcer import BudgetEnforcer, BudgetExceeded, Reservation
from interlock.spend.ledger import LedgerRecord, LedgerWriter
from interlock.spend.prices import PriceDecision, PriceTable, UnknownPricePolicy, resolve_price
from interlock.spend.settlements import Settle
from interlock.telemetry.tracing import Tracing
from interlock.types import Endpoint, GatewayRequest, Principal, Usage

log = logging.getLogger("interlock.spend")


@dataclass(slots=True)
class Admission:
    """What was decided about a request's money before it ran."""

    reservation: Reservation | None  # the first attempt's
    tags: tuple[str, ...]
    worst_usd: Decimal
    at: float = field(default_factory=time.monotonic)  # to tell an expired reservation
    budgets: list[Budget] = field(default_factory=list)
    bound: RequestBound | None = None
    cap: int = 0  # the output cap per completion every worst case assumes
    injected: bool = False  # the gateway set that cap (the client had none)
    # One reservation per billable attempt after the first (retries, failovers, fallback
    # aliases, a hedge's second call); finish settles them with the first.
    extra: list[Reservation] = field(default_factory=list)
    attempts: int = 0
    refused: bool = False  # a budget refused an extra attempt: stop trying

    @property
    def reservations(self) -> list[Reservation]:
        first = [self.reservation] if self.reservation is not None else []
        return first + self.extra


# Told about every finished record (metrics, the request's log line), with the age of its
# reservation in seconds (None: nothing was reserved).
OnFinish = Callable[[LedgerRecord, float | None], None]
# Awaited with a deployment's name before an upstream attempt; raises to refuse it.
AttemptHook = Callable[[str], Awaitable[None]]


def cut_by_gateway(admission: Admission | None, body: bytes) -> bool:
    """Whether an answer may have been cut at an output cap the gateway set, not the
    client: it is no answer to the client's request, so it must not be cached for it."""
    return admission is not None and admission.injected and b'"length"' in body


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
        self._deployments = deployments
        self._rules: dict[str, MediaRules] = {}
        for name, dep in deployments.items():
            entry = table.get(self.prices[name].table_id or "")
            self._rules[name] = media_rules(
                dep.provider_kind, entry.provider if entry else None, entry.id if entry else None
            )
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

    def worst_on(self, bound: RequestBound, deployment: str, cap: int) -> Decimal:
        """The most ``bound`` can cost on one deployment (0 where its requests are blocked)."""
        price = self.prices[deployment].price
        if price is None:
            return Decimal(0)
        return bound_worst_usd(bound, self._rules[deployment], price, cap)

    def worst(self, req: GatewayRequest, deps: list[Deployment]) -> Decimal:
        """The worst case of ``req`` over ``deps`` with the output cap it carries (or
        ``spend.default_max_output_tokens``): what :meth:`admit` reserves, without budgets."""
        bound = bound_request(req.endpoint, req.body)
        cap = bound.cap if bound.cap is not None else self._cfg.default_max_output_tokens
        return max((self.worst_on(bound, d.name, cap) for d in deps), default=Decimal(0))

    async def admit(
        self, req: GatewayRequest, principal: Principal, deps: list[Deployment]
    ) -> Admission:
        tags = tuple(dict.fromkeys((*principal.tags, *req.tags)))
        self.enforcer.require_loaded()
        budgets = self.enforcer.applicable(principal.key_id, principal.user, principal.team, tags)
        if not budgets:
            return Admission(None, tags, Decimal(0))
        bound = bound_request(req.endpoint, req.body)
        names = list(dict.fromkeys(d.name for d in deps if self.prices[d.name].price is not None))
        cap, injected = bound.cap, False
        if cap is None:
            hard = [b for b in budgets if b.limit_usd is not None]
            if hard and bound.has_output:
                cap, injected = await self._choose_cap(req, bound, names, hard), True
                self._inject(req, names, cap)
            else:
                # Nothing can be refused: the default only sizes the (informational) hold.
                cap = self._cfg.default_max_output_tokens
        worst = max((self.worst_on(bound, n, cap) for n in names), default=Decimal(0))
        try:
            reservation = await self.enforcer.reserve(budgets, worst)
        except BudgetExceeded as refused:
            raise await self._refusal(refused, req, bound, names, budgets, cap) from None
        return Admission(
            reservation, tags, worst, budgets=budgets, bound=bound, cap=cap, injected=injected
        )

    async def _choose_cap(
        self, req: GatewayRequest, bound: RequestBound, names: list[str], hard: list[Budget]
    ) -> int:
        """The output cap for a request that set none: the smallest of
        ``spend.default_max_output_tokens``, the models' ``max_output_tokens``, the room its
        context windows leave, and what the tightest hard limit has left at the most
        expensive deployment. Refuses (429 budget_exceeded) when not one token fits."""
        cap = self._cfg.default_max_output_tokens
        deps = [self._deployments[n].settings for n in names]
        for d in deps:
            if d.max_output_tokens is not None:
                cap = min(cap, d.max_output_tokens)
        if any(d.context_window for d in deps):
            # The context check (routing) adds the cap to the prompt *estimate*; a cap that
            # made a request stop fitting would refuse what fits without one.
            prompt = estimate_request_tokens(req.body)
            for d in deps:
                if d.context_window is not None:
                    cap = min(cap, max(1, d.context_window - prompt))
        tightest, left = hard[0], None
        for b in hard:
            st = await self.enforcer.status(b)
            rem = Decimal(st["remaining_usd"])
            if left is None or rem < left:
                tightest, left = b, rem
        assert left is not None
        for n in names:
            price = self.prices[n].price
            assert price is not None
            fits = cap_fitting(bound, self._rules[n], price, left)
            if fits is not None:
                cap = min(cap, fits)
        if cap < 1:
            now = datetime.now(UTC)
            _, end = window_bounds(tightest.window, tightest.timezone, now)
            floor = max(self.worst_on(bound, n, 1) for n in names)
            raise BudgetExceeded(
                f"the {tightest.describe()} has ${format_usd(left)} left, less than this "
                f"request can cost with even one output token (up to ${format_usd(floor)}: "
                f"its input is bounded by its size, at the most expensive deployment it may "
                f"reach); send less input or wait for the next window",
                retry_after=max(1.0, (end - now).total_seconds()) if end else None,
            )
        return cap

    async def _refusal(
        self,
        refused: BudgetExceeded,
        req: GatewayRequest,
        bound: RequestBound,
        names: list[str],
        budgets: list[Budget],
        cap: int,
    ) -> BudgetExceeded:
        """What the client is told when a hard limit refused the request's worst case.

        When a smaller output cap fits what every hard limit has left right now, waiting
        is not what helps: the refusal names the largest cap that would be admitted and
        carries no Retry-After (clients that obey it would stall until the window resets,
        a day for a daily budget). Only when not even one output token fits is the
        Retry-After the window's reset."""
        hard = [b for b in budgets if b.limit_usd is not None]
        if not hard or not names or not bound.has_output:
            return refused
        left: Decimal | None = None
        for b in hard:
            rem = Decimal((await self.enforcer.status(b))["remaining_usd"])
            left = rem if left is None else min(left, rem)
        assert left is not None
        fits: int | None = cap
        for n in names:
            price = self.prices[n].price
            assert price is not None
            room = cap_fitting(bound, self._rules[n], price, left)
            if room is not None:
                fits = min(fits, room) if fits is not None else room
        if fits is None or fits < 1 or fits >= cap:
            return refused  # nothing smaller fits now (or the refusal was not the output)
        param = "max_completion_tokens" if "max_completion_tokens" in req.body else "max_tokens"
        return BudgetExceeded(
            f"{refused.message}; a smaller request fits what is left now "
            f"(${format_usd(left)}): {param} up to {fits} would be admitted",
            param=param,
        )

    def _inject(self, req: GatewayRequest, names: list[str], cap: int) -> None:
        """Write ``cap`` into the body every attempt sends (the adapter re-serialises it).

        OpenAI and Azure take ``max_completion_tokens`` for chat (their reasoning models
        refuse ``max_tokens``); every other adapter reads it as well, but an arbitrary
        OpenAI-compatible server may only know ``max_tokens``, and a cap it ignores would
        bound nothing; so ``max_tokens`` whenever such a server may answer, and for
        completions."""
        kinds = {self._deployments[n].provider_kind for n in names}
        newer = bool(kinds) and "openai_compatible" not in kinds
        key = "max_completion_tokens" if req.endpoint is Endpoint.CHAT and newer else "max_tokens"
        req.body[key] = cap
        req.raw = b""

    def attempt_hook(self, admission: Admission) -> AttemptHook:
        """The callback awaited before each upstream attempt of the admitted request.

        The first attempt is covered by the admission's reservation; every later one (a
        retry, a failover, a fallback alias, a hedge's second call: the provider may bill
        each) reserves its own worst case on the deployment it goes to. A refusal raises
        (429 ``budget_exceeded``) and marks the admission ``refused``, so that nothing
        more is tried."""

        async def before(deployment: str) -> None:
            admission.attempts += 1
            if admission.attempts == 1 or admission.bound is None or not admission.budgets:
                return
            if admission.refused:
                raise BudgetExceeded("the budget refused a further attempt of this request")
            worst = self.worst_on(admission.bound, deployment, admission.cap)
            try:
                res = await self.enforcer.reserve(admission.budgets, worst)
            except InterlockError:
                admission.refused = True
                raise
            if res is None:
                return
            if admission.reservation is None:
                # The first reservation was held back for an abandoned attempt (hold_back):
                # this one takes its place, and the answer's cost lands on it.
                admission.reservation = res
            else:
                admission.extra.append(res)

        return before

    def hold_back(self, admission: Admission, worst: Decimal) -> Reservation | None:
        """Take one reservation out of ``admission`` for an attempt the gateway abandoned
        while the provider may still bill it up to ``worst``: it is settled on its own, at
        that attempt's cost, when it ends. Every attempt reserved its worst case before it
        was made (the first shares the admission's), so one that covers ``worst`` is there:
        the smallest that does (the first reservation covers every deployment); the rest
        stay with the request, and the first is replaced if it was the one taken."""
        need = to_nano(worst, up=True)
        live = [r for r in admission.extra if not r.settled]
        fits = [r for r in live if r.amount >= need]
        first = admission.reservation
        if fits:
            taken = min(fits, key=lambda r: r.amount)
        elif first is not None and not first.settled:
            taken = first
        elif live:
            taken = max(live, key=lambda r: r.amount)  # short of worst: the most there is
        else:
            return None
        if taken is first:
            admission.reservation = admission.extra.pop(0) if admission.extra else None
        else:
            admission.extra.remove(taken)
        return taken

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
        rec.cost_usd = cost
        settles: list[Settle] = []
        if admission is not None:
            rec.tags = list(admission.tags)
            held = admission.reservations
            if held:
                rec.reserved_usd = from_nano(sum(r.amount for r in held))
            # The recorded cost lands on the first reservation (it may exceed that one's
            # amount: the counter adds what was spent); the extra attempts' are released.
            settles = self.enforcer.settlements(admission.reservation, cost)
            for extra in admission.extra:
                settles += self.enforcer.settlements(extra, Decimal(0))
        # Record first, settle after: the spooled record carries its settlements, so a
        # process that dies before they land has them replayed from its spool (B2).
        self.ledger.record(rec, settles)
        rid = rec.request_id
        await self.enforcer.apply(
            settles,
            admission.budgets if admission is not None else None,
            lambda: self.ledger.landed(rid),
        )
