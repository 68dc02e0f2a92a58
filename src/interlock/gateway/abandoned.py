"""What the provider may bill beyond the answer the client got: intents and abandoned
attempts.

Before its upstream call, a request spools its intent: a process that dies while the
request is at the provider leaves a ``replica_lost`` row at its worst case, and its holds
are charged at that amount, when its spool is replayed (spend/ledger.py). An attempt
the executor stops waiting for while the provider may still bill it (a hedge's loser, a
timeout, the client's deadline: :class:`~interlock.types.Abandoned`) takes a reservation
of its own out of the request's, spools its own intent and, once it ends, gets its own
ledger row with what the provider billed for it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from interlock.errors import InterlockError
from interlock.gateway.base import GatewayBase, record_usage
from interlock.providers.registry import Deployment
from interlock.spend.accounting import Admission
from interlock.spend.budgets import from_nano
from interlock.spend.ledger import LedgerRecord, lost_record
from interlock.storage.ledger import ABANDONED_HUNG
from interlock.types import Abandoned, GatewayRequest, GatewayResponse, Principal

log = logging.getLogger("interlock.gateway")

# How long close() waits for abandoned attempts still at the provider (_let_abandoned_end).
ABANDONED_CLOSE_GRACE_S = 2.0


class AbandonedPath(GatewayBase):
    def _track_billing(
        self,
        req: GatewayRequest,
        principal: Principal,
        alias: str,
        started: float,
        admission: Admission,
        candidates: list[Deployment],
    ) -> None:
        """Before the request's upstream call: spool its intent, have each billable attempt
        after the first reserve its own worst case (and spool the intent again), and
        listen for the attempts the executor abandons."""

        def record() -> LedgerRecord:  # the request's ledger record, as of now
            return self._record(req, principal, alias, started, None)

        intend = self._intent(req, record, admission, candidates)
        req.on_abandoned = self._abandoner(req, alias, record, admission, intend)
        if admission.bound is not None:
            # Every billable attempt after the first reserves its own worst case.
            hook = self.spend.attempt_hook(admission)
            req.before_attempt = _intending(hook, admission, intend)

    def _intent(
        self,
        req: GatewayRequest,
        record: Callable[[], LedgerRecord],
        admission: Admission,
        candidates: list[Deployment],
    ) -> Callable[[], None]:
        """Spool the request's intent before its upstream call (and return how to spool it
        again once more was reserved for it): a process that dies while the request is at
        the provider leaves a ``replica_lost`` row at its worst case, and its holds are
        charged at that amount, when its spool is replayed (spend/ledger.py)."""
        if not req.request_id:
            req.request_id = "req_" + secrets.token_hex(12)
        unbudgeted = self.spend.worst(req, candidates) if not admission.reservations else None

        def intend() -> None:
            held = admission.reservations
            worst = from_nano(sum(r.amount for r in held)) if held else unbudgeted or Decimal(0)
            rec = lost_record(record(), worst)
            rec.tags = list(admission.tags)
            self.spend.ledger.intent(rec, self.spend.enforcer.lost_settles(held))

        intend()
        return intend

    def _abandoner(
        self,
        req: GatewayRequest,
        alias: str,
        record: Callable[[], LedgerRecord],
        admission: Admission,
        intend: Callable[[], None],
    ) -> Callable[[Abandoned], None]:
        """The request's listener for attempts the executor abandons while the provider may
        still bill them (a hedge's loser, a timeout, the client's deadline; see
        :class:`~interlock.types.Abandoned`). Each, when handed over: takes a reservation
        out of the request's (it reserved one before it was made: spend/accounting.py
        ``hold_back``), spools an intent of its own (if this process dies first, the
        replay charges that hold at its worst case) and the request's again without it,
        then is recorded as its own ledger row once it ends (:meth:`_abandoned_ended`)."""
        counts = {"hedge": 0, "other": 0}

        def abandoned(a: Abandoned) -> None:
            kind = "hedge" if a.why == "hedge" else "other"
            counts[kind] += 1
            rid = _abandoned_id(req.request_id, a.why, counts[kind])
            dep = self.deployments[a.deployment]
            worst = self.spend.worst(a.request, [dep])  # of what was sent, on its deployment
            res = self.spend.hold_back(admission, worst)
            held = Admission(res, admission.tags, worst, budgets=admission.budgets)
            rec = record()
            rec.request_id, rec.tags = rid, list(admission.tags)
            rec.deployment, rec.provider, rec.attempts = a.deployment, a.provider, 1
            rec.fallback = a.alias if a.alias != alias else None
            lost = lost_record(replace(rec), worst)
            lost.created_at = datetime.fromtimestamp(a.started_at, UTC)
            self.spend.ledger.intent(lost, self.spend.enforcer.lost_settles([res] if res else []))
            if res is not None:
                intend()  # the request's own intent no longer charges that hold
            task = asyncio.ensure_future(self._abandoned_ended(a, rec, held, alias))
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)

        return abandoned

    async def _abandoned_ended(
        self, a: Abandoned, rec: LedgerRecord, held: Admission, alias: str
    ) -> None:
        """An abandoned attempt, once it ends: its own ledger row (outcome ``hedge_lost``,
        ``abandoned_timeout`` or ``abandoned_deadline``) with its real usage and cost,
        settled against the reservation held back for it; $0 if it ended without an answer
        the provider bills (an error status, a reset before any response); if it hung past
        its bound, ``abandoned_hung`` at the worst case of what was sent (usage estimated),
        which ``interlock spend reconcile`` corrects where the provider publishes usage."""
        answer: GatewayResponse | None
        try:
            answer = await a.answer
        except InterlockError as err:
            # Charged nothing, like any failed attempt; the row replaces its intent.
            rec.status, rec.outcome = err.status, err.code
            rec.latency_ms = (time.time() - a.started_at) * 1000
            await self.spend.finish(held, Decimal(0), rec)
            return
        except Exception:
            # A bug reading it: charged as a hang (never below what may have been billed).
            log.exception("reading an abandoned attempt's answer failed")
            answer = None
        if answer is None:
            rec.status, rec.outcome, rec.usage_estimated = 0, ABANDONED_HUNG, True
            # Reconciled like replica_lost rows: from when it may have started billing.
            rec.created_at = datetime.fromtimestamp(a.started_at, UTC)
            cost = rec.reserved_usd = held.worst_usd
        else:
            rec.outcome = _ABANDONED_OUTCOMES.get(a.why, "abandoned_timeout")
            usage = answer.usage
            if usage is not None:
                record_usage(rec, usage)
                self.metrics.observe_tokens(
                    alias, a.deployment, usage.prompt_tokens, usage.completion_tokens
                )
            cost = self.spend.cost(a.deployment, usage)
        rec.latency_ms = (time.time() - a.started_at) * 1000
        await self.spend.finish(held, cost, rec)

    async def _let_abandoned_end(self) -> None:
        """At close: abandoned attempts still at the provider are billed, so those about
        to end are recorded before the ledger stops (they ran on through the HTTP drain
        too). Those still running then are cut unrecorded (a hang would only have ended at
        its worst case anyway): their intents stay in the spool, and the next process to
        replay it charges them at their worst case (replica_lost)."""
        if not self._abandoned:
            return
        pending = set(self._abandoned)
        grace = min(self.settings.server.drain_timeout_s, ABANDONED_CLOSE_GRACE_S)
        _, late = await asyncio.wait(pending, timeout=grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)


# The ledger outcome of an abandoned attempt that answered, by why it was abandoned.
_ABANDONED_OUTCOMES = {
    "hedge": "hedge_lost",
    "timeout": "abandoned_timeout",
    "deadline": "abandoned_deadline",
}


def _abandoned_id(request_id: str, why: str, n: int) -> str:
    """The ledger id of a request's ``n``-th abandoned attempt (of its kind): its own row,
    next to the request's: ``<id>-hedge`` (then ``-hedge2``...) for a hedge's loser,
    ``<id>-a1``, ``-a2``... for the others. Within the column's 64 characters."""
    hedge = "-hedge" if n == 1 else f"-hedge{n}"
    suffix = hedge if why == "hedge" else f"-a{n}"
    return request_id[: 64 - len(suffix)] + suffix


def _intending(
    hook: Callable[[str], Awaitable[None]], admission: Admission, intend: Callable[[], None]
) -> Callable[[str], Awaitable[None]]:
    """``hook``, then the intent spooled again when it reserved another attempt."""

    async def before(deployment: str) -> None:
        n = len(admission.reservations)
        await hook(deployment)
        if len(admission.reservations) != n:
            intend()

    return before
