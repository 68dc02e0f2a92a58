"""Runs a request against a planned route: attempts, retries, failover and hedging.

Rules (docs/decisions.md has the why):
* Deployments are tried in the plan's order; a deployment whose circuit is open, whose
  Retry-After cooldown has not elapsed or whose RPM/TPM/concurrency is used up is
  skipped before the call.
* A retryable failure (connect error, timeout, 429, 5xx, malformed answer) moves on to
  the next deployment at once; coming back to a deployment already tried waits a
  backoff with full jitter (at least its Retry-After). Every retry spends from the
  retry budget and must fit the request's deadline.
* Streams fail over only until the first chunk exists; after that a failure reaches
  the client as a final error event.
* A hedge (non-streaming, when enabled for the alias) starts a second attempt on another
  deployment when the first has not answered by the alias's observed p95.
* An attempt the gateway stops waiting for while the provider may still bill it (a hedge
  that lost, a timeout or the client's deadline before the answer or the first chunk) is
  not cut when the plan has an ``on_abandoned`` listener: it runs on in the background to
  its deployment's total timeout and is handed over (:class:`interlock.types.Abandoned`),
  so that the gateway records and charges what the provider bills for it.

This module holds the non-streamed path and hedging; the streamed path is in
``streaming.py``, and what both share (the plan, one attempt's steps) in ``attempts.py``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from interlock.errors import (
    DeadlineExceeded,
    InterlockError,
    InvalidRequest,
    UpstreamError,
    UpstreamTimeout,
)
from interlock.providers.base import warnings_header
from interlock.providers.registry import Deployment
from interlock.providers.tokens import estimate_request_tokens
from interlock.providers.transport import PendingReply, Transport
from interlock.resilience.retry import RetryBudget
from interlock.routing.attempts import Plan, Tries
from interlock.routing.catalog import Route
from interlock.routing.health import DeploymentHealth
from interlock.routing.streaming import StreamingPath
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.redact import Redactor
from interlock.telemetry.tracing import Tracing
from interlock.types import (
    Attempt,
    GatewayRequest,
    GatewayResponse,
)


class _NotAdmitted(Exception):
    """The breaker gave the slot away between planning and the call (half-open)."""


@dataclass(slots=True)
class _Ticket:
    """One hedged attempt: once it has lost the race it is handed over whole, so an
    abandonment of its own (its timeout) continues its answer instead of being reported
    a second time."""

    dep: Deployment
    started_at: float = 0.0
    lost: bool = False
    later: Awaitable[GatewayResponse | None] | None = None


class _Quantile:
    """The p95 of an alias's recent latencies, recomputed every few samples."""

    __slots__ = ("_every", "_n", "_q", "_samples", "value")

    def __init__(self, q: float, size: int = 256, every: int = 16) -> None:
        self._samples: deque[float] = deque(maxlen=size)
        self._q = q
        self._every = every
        self._n = 0
        self.value: float | None = None

    def add(self, x: float) -> None:
        self._samples.append(x)
        self._n += 1
        if self._n % self._every == 0 and len(self._samples) >= 16:
            ordered = sorted(self._samples)
            self.value = ordered[min(len(ordered) - 1, int(self._q * len(ordered)))]


class Executor(StreamingPath):
    """Runs plans: :meth:`complete` (non-streamed, hedged where the plan says) and
    :meth:`~interlock.routing.streaming.StreamingPath.stream`."""

    def __init__(
        self,
        transport: Transport,
        health: DeploymentHealth,
        metrics: Metrics,
        redactor: Redactor,
        budget: RetryBudget,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        tracing: Tracing | None = None,
    ) -> None:
        self._tracing = tracing
        self._transport = transport
        self._health = health
        self._metrics = metrics
        self._redact = redactor
        self._budget = budget
        self._rng = rng or random.Random()
        self._clock = clock
        self._latency: dict[str, _Quantile] = {}

    # -- planning helpers ---------------------------------------------------------

    def prompt_tokens(self, req: GatewayRequest) -> int:
        return estimate_request_tokens(req.body)

    @staticmethod
    def check_context(
        req: GatewayRequest, route: Route, deps: list[Deployment], prompt: int
    ) -> list[Deployment]:
        """Drop deployments whose context window cannot hold this request."""
        body = req.body
        out_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or 0
        needed = prompt + (out_tokens if isinstance(out_tokens, int) else 0)
        fits = [
            d
            for d in deps
            if d.settings.context_window is None or needed <= d.settings.context_window
        ]
        if deps and not fits:
            raise InvalidRequest(
                f"the request needs about {needed} tokens, more than the context window of "
                f"every deployment of '{route.alias}'",
                code="context_length_exceeded",
                param="messages",
            )
        return fits

    # -- non-streaming --------------------------------------------------------------

    async def _attempt(
        self,
        req: GatewayRequest,
        dep: Deployment,
        plan: Plan,
        attempts: list[Attempt],
        ticket: _Ticket | None = None,
    ) -> GatewayResponse:
        if not self._health.acquire(dep.name, plan.prompt_tokens):
            raise _NotAdmitted
        started = self._clock()
        started_at = time.time()
        pending: PendingReply | None = None
        try:
            call = dep.adapter.build(req, dep.target)
            await dep.auth.apply(call)
            timeouts = self._timeouts_for(dep, plan, req)
            if plan.on_abandoned is None:
                reply = await self._transport.request(call, timeouts, dep.provider)
            else:
                until = asyncio.get_running_loop().time() + dep.timeouts.total_s
                if ticket is not None:
                    ticket.started_at = started_at  # from here on the provider may bill it
                got = await self._transport.request_kept(call, timeouts, dep.provider, until)
                if isinstance(got, PendingReply):
                    pending = got
                    raise got.failure or UpstreamTimeout(
                        f"provider {dep.provider} did not answer in time"
                    )
                reply = got
            if reply.status >= 300:
                raise dep.adapter.error(reply.status, reply.headers, reply.body)
            done = dep.adapter.parse(req, dep.target, reply.status, reply.body)
        except UpstreamError as caught:
            err = self._blame(caught, dep, plan, started)
            self._release_error(dep, err, started)
            self._failed(dep, err, started, attempts)
            if pending is not None:
                later = self._later(pending, req, dep)
                if ticket is not None and ticket.lost:
                    ticket.later = later  # a hedge's loser: its answer is already awaited
                else:
                    why = "deadline" if isinstance(err, DeadlineExceeded) else "timeout"
                    self._abandon(plan, why, req, dep, started_at, later)
            if err is not caught:
                raise err from None
            raise
        except BaseException:
            # Cancelled (a hedge lost, the client left) or a bug: not the deployment's fault.
            self._health.release(
                dep.name, ok=False, duration_s=self._clock() - started, counts_as_failure=False
            )
            raise
        elapsed = self._clock() - started
        self._health.release(dep.name, ok=True, duration_s=elapsed, counts_as_failure=False)
        self._note(dep, "ok", elapsed, attempts)
        self._latency.setdefault(
            plan.route.alias, _Quantile(plan.hedge.quantile if plan.hedge else 0.95)
        ).add(elapsed)
        answer = GatewayResponse(200, done.body, done.usage, dep.name, dep.provider, attempts)
        if call.warnings:
            answer.headers.append(warnings_header(call.warnings))
        return answer

    @staticmethod
    async def _later(
        pending: PendingReply, req: GatewayRequest, dep: Deployment
    ) -> GatewayResponse | None:
        """An abandoned non-streamed attempt's answer, once it ends (see Abandoned)."""
        reply = await pending.answer()
        if reply is None:
            return None
        if reply.status >= 300:
            raise dep.adapter.error(reply.status, reply.headers, reply.body)
        done = dep.adapter.parse(req, dep.target, reply.status, reply.body)
        return GatewayResponse(200, done.body, done.usage, dep.name, dep.provider)

    async def complete(self, req: GatewayRequest, plan: Plan) -> GatewayResponse:
        tries = Tries(attempts=plan.attempts)
        self._budget.on_request()
        while (dep := await self._next_try(plan, tries)) is not None:
            try:
                if plan.hedge is not None and tries.n == 1 and len(plan.deployments) > 1:
                    return await self._hedged(req, dep, plan, tries)
                return await self._attempt(req, dep, plan, tries.attempts)
            except _NotAdmitted:
                tries.n -= 1
                continue
            except UpstreamError as err:
                tries.last = err
                if not err.retryable:
                    raise
        raise self._no_deployment(plan, tries)

    # -- hedging ------------------------------------------------------------------------

    async def _hedged(
        self,
        req: GatewayRequest,
        dep: Deployment,
        plan: Plan,
        tries: Tries,
    ) -> GatewayResponse:
        assert plan.hedge is not None
        attempts, tried = tries.attempts, tries.tried
        alias = plan.route.alias
        p = self._latency.get(alias)
        delay = plan.hedge.max_delay_s if p is None or p.value is None else p.value
        delay = min(plan.hedge.max_delay_s, max(plan.hedge.min_delay_s, delay))
        tickets = [_Ticket(dep)]
        first = asyncio.ensure_future(self._attempt(req, dep, plan, attempts, tickets[0]))
        done, _ = await asyncio.wait({first}, timeout=delay)
        if done:
            return first.result()
        other, _ = self._pick(plan, tried)
        if (
            other is None
            or other.name == dep.name
            or not await self._vetted_hedge(plan, other)
            or not self._budget.try_spend()
        ):
            self._metrics.hedge(alias, "skipped")
            return await first
        tried[other.name] = tried.get(other.name, 0) + 1
        tickets.append(_Ticket(other))
        second = asyncio.ensure_future(self._attempt(req, other, plan, attempts, tickets[1]))
        pending = {first, second}
        error: BaseException | None = None
        winner: asyncio.Future[GatewayResponse] | None = None
        try:
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        error = task.exception()
                    elif winner is None:
                        winner = task
        finally:
            if winner is None:  # failed, or cancelled (the caller went away)
                for task in pending:
                    task.cancel()
        if winner is None:
            assert error is not None
            raise error
        self._metrics.hedge(alias, "won" if winner is second else "lost")
        response = winner.result()
        loser, ticket = (first, tickets[0]) if winner is second else (second, tickets[1])
        if loser.done() and loser.exception() is not None:
            return response  # it failed (an abandonment of its own was handed over then)
        if plan.on_abandoned is None or not ticket.started_at:
            loser.cancel()  # nobody records it, or it has not sent anything yet
            return response
        # Not cancelled: the provider finishes (and bills) a non-streamed answer even after
        # the caller hangs up, so the loser runs to its end, bounded by its own timeouts,
        # and is handed over to be recorded and charged (Gateway: outcome hedge_lost).
        ticket.lost = True
        answer = self._loser_answer(loser, ticket)
        self._abandon(plan, "hedge", req, ticket.dep, ticket.started_at, answer)
        return response

    @staticmethod
    async def _vetted_hedge(plan: Plan, dep: Deployment) -> bool:
        """A hedge's second call is billable too; vetoed, the first call goes on alone."""
        if plan.before_attempt is None:
            return True
        try:
            await plan.before_attempt(dep.name)
        except InterlockError:
            return False
        return True

    @staticmethod
    async def _loser_answer(
        loser: asyncio.Future[GatewayResponse], ticket: _Ticket
    ) -> GatewayResponse | None:
        try:
            return await loser
        except UpstreamError:
            if ticket.later is not None:  # it timed out in turn: its answer comes later
                return await ticket.later
            raise
