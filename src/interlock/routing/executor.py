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
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

from interlock.errors import (
    DeadlineExceeded,
    InterlockError,
    InvalidRequest,
    ServiceUnavailable,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from interlock.providers.base import StreamDecoder
from interlock.providers.registry import Deployment
from interlock.providers.tokens import estimate_request_tokens
from interlock.providers.transport import (
    PendingReply,
    PendingStream,
    Timeouts,
    Transport,
    UpstreamStream,
)
from interlock.resilience.retry import RetryBudget, RetryConfig, backoff_s
from interlock.routing.catalog import Route
from interlock.routing.health import DeploymentHealth
from interlock.settings import HedgeSettings
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.redact import Redactor
from interlock.telemetry.tracing import Tracing
from interlock.types import (
    Abandoned,
    Attempt,
    Chunk,
    GatewayRequest,
    GatewayResponse,
    GatewayStream,
)

# A 429 without Retry-After still keeps the deployment cool for this long.
DEFAULT_COOLDOWN_S = 1.0
# Timers fire at or after their deadline; this only absorbs clock rounding.
_DEADLINE_SLACK_S = 0.01


def error_class(err: InterlockError) -> str:
    """The fallback/error class of a failure (see settings.FallbackSettings.on)."""
    if err.code == "context_length_exceeded":
        return "context_window"
    if err.code in ("content_filter", "content_policy", "content_policy_violation"):
        return "content_policy"
    if isinstance(err, UpstreamRateLimited) or err.code in ("rate_limited", "deployment_busy"):
        return "rate_limit"
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, UpstreamError) and err.retryable:
        return "server_error"
    if err.code == "circuit_open":
        return "server_error"
    return "client_error"


# Defaults of a deployment's first-byte timeout when its configuration leaves it unset
# (`timeouts.first_byte_s: null`, the default). A streamed answer's first chunk and an
# embedding come quickly from a working provider; a non-streamed answer arrives whole, so
# its first byte waits for the whole generation: the bound grows with the output the
# request may produce, at a pace every hosted model beats (the Anthropic SDK assumes the
# same ~35 tokens/s when it refuses non-streamed calls expected to run past 10 minutes).
FIRST_BYTE_STREAM_S = 15.0
FIRST_BYTE_EMBEDDINGS_S = 10.0
FIRST_BYTE_BASE_S = 10.0
FIRST_BYTE_TOKENS_PER_S = 35.0
# Output assumed for a non-streamed request that names no max_tokens.
FIRST_BYTE_DEFAULT_OUTPUT = 4096


def auto_first_byte_s(dep: Deployment, req: GatewayRequest, stream: bool) -> float:
    """The first-byte timeout of one attempt when the deployment sets none."""
    if dep.settings.kind == "embeddings":
        return FIRST_BYTE_EMBEDDINGS_S
    if stream:
        return FIRST_BYTE_STREAM_S
    body = req.body
    out = (
        body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
    )
    tokens = out if isinstance(out, int) and not isinstance(out, bool) and out > 0 else None
    wait = FIRST_BYTE_BASE_S + (tokens or FIRST_BYTE_DEFAULT_OUTPUT) / FIRST_BYTE_TOKENS_PER_S
    return min(wait, dep.timeouts.total_s)


@dataclass(slots=True)
class Plan:
    route: Route
    deployments: list[Deployment]
    retry: RetryConfig
    deadline: float  # on the executor's clock
    hedge: HedgeSettings | None = None
    prompt_tokens: int = 0
    # The deadline is the client's own (x-interlock-timeout, a job's deadline), shorter
    # than the gateway's: a timeout at it is the client's, not the deployment's.
    client_deadline: bool = False
    # Awaited with the deployment's name before every attempt (the gateway's budget
    # reservation for each billable attempt); raising vetoes it and ends the retries.
    before_attempt: Callable[[str], Awaitable[None]] | None = None
    # Told about every attempt abandoned while the provider may still bill it (the
    # gateway records and charges each); None: such attempts are cut, as nobody records.
    on_abandoned: Callable[[Abandoned], None] | None = None


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


class Executor:
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

    def _pick(self, plan: Plan, tried: dict[str, int]) -> tuple[Deployment | None, float | None]:
        """The next deployment to call, or (None, seconds until one may be available)."""
        now = time.time()
        soonest: float | None = None
        fresh: Deployment | None = None
        again: Deployment | None = None
        for dep in plan.deployments:
            wait = self._health.unavailable_for(dep.name, now, plan.prompt_tokens)
            if wait > 0:
                soonest = wait if soonest is None else min(soonest, wait)
                continue
            if not tried.get(dep.name):
                fresh = dep
                break
            if again is None or tried[dep.name] < tried[again.name]:
                again = dep
        chosen = fresh or again
        return (chosen, None) if chosen is not None else (None, soonest)

    def _failed(
        self, dep: Deployment, err: UpstreamError, started: float, attempts: list[Attempt]
    ) -> None:
        err.message = self._redact(
            err.message.replace("provider upstream", f"provider {dep.provider}")
        )
        elapsed = self._clock() - started
        attempts.append(Attempt(dep.name, dep.provider, err.code, elapsed))
        self._metrics.observe_attempt(dep.provider, dep.name, err.code, elapsed)
        if self._tracing is not None:
            self._tracing.attempt(dep.name, dep.provider, err.code, elapsed, len(attempts))

    def _blame(
        self, err: UpstreamError, dep: Deployment, plan: Plan, started: float
    ) -> UpstreamError:
        """The error as the client and the breaker should see it. A timeout that fired at
        the client's own deadline, before the deployment's own total timeout would have, is
        the client's choice: a 504 ``deadline_exceeded`` that blames nobody upstream."""
        if (
            isinstance(err, UpstreamTimeout)
            and not isinstance(err, DeadlineExceeded)
            and plan.client_deadline
            and self._clock() >= plan.deadline - _DEADLINE_SLACK_S
            and plan.deadline < started + dep.timeouts.total_s
        ):
            return _client_deadline(err)
        return err

    def _release_error(
        self, dep: Deployment, err: UpstreamError, started: float, *, streamed: bool = False
    ) -> None:
        cls = error_class(err)
        retry_after = None
        if cls == "rate_limit":
            retry_after = err.retry_after if err.retry_after is not None else DEFAULT_COOLDOWN_S
        self._health.release(
            dep.name,
            ok=False,
            duration_s=self._clock() - started,
            # The one rule for shared state (errors.py): only the upstream's own failures.
            counts_as_failure=err.blames_upstream and cls in ("server_error", "timeout"),
            retry_after_s=retry_after,
            streamed=streamed,
        )

    def _no_deployment(
        self, plan: Plan, wait: float | None, last: UpstreamError | None
    ) -> InterlockError:
        if last is not None:
            return last
        states = [self._health.state(d.name) for d in plan.deployments]
        err: InterlockError
        if any(s.cooldown_until > time.time() for s in states):
            err = UpstreamRateLimited(
                f"every deployment of '{plan.route.alias}' asked to slow down",
                code="rate_limited",
                retry_after=wait,
            )
        elif any(s.breaker.state.value != "closed" for s in states):
            err = ServiceUnavailable(
                f"every deployment of '{plan.route.alias}' is unavailable (circuit open)",
                code="circuit_open",
                retry_after=wait,
            )
        else:
            err = UpstreamRateLimited(
                f"every deployment of '{plan.route.alias}' is at capacity",
                code="deployment_busy",
                retry_after=wait,
            )
        # A consequence of earlier failures (already counted) or of the gateway's own
        # capacity limits, not a new upstream failure: it must not feed shared state.
        err.blames_upstream = False
        return err

    async def _next(
        self, plan: Plan, tried: dict[str, int], n: int, last: UpstreamError | None
    ) -> Deployment | None:
        """Choose the deployment for attempt ``n``, waiting for backoff or cooldown."""
        dep, wait = self._pick(plan, tried)
        if dep is None:
            remaining = plan.deadline - self._clock()
            if wait is None or wait > plan.retry.max_retry_after_s or wait > remaining:
                return None
            await asyncio.sleep(wait)
            dep, _ = self._pick(plan, tried)
            if dep is None:
                return None
        if n > 0:
            # Failing over to a deployment not tried yet is not a retry: it sends nothing
            # more to the one that failed, so the budget (which keeps a failing provider
            # from being hammered by its own retries) is spent only on coming back.
            if tried.get(dep.name) and not self._budget.try_spend():
                self._metrics.retry(dep.name, "budget_exhausted")
                return None
            self._metrics.retry(dep.name, error_class(last) if last else "unavailable")
            if tried.get(dep.name):
                delay = backoff_s(plan.retry, tried[dep.name] - 1, self._rng)
                if self._clock() + delay >= plan.deadline:
                    return None
                await asyncio.sleep(delay)
        return dep

    @staticmethod
    async def _vetted(plan: Plan, dep: Deployment, last: UpstreamError | None) -> None:
        """Let the plan's owner veto (and pay for) the next attempt. A veto (e.g. the
        budget cannot cover another billable call) ends the retries: the client gets the
        last upstream error, or the veto when nothing was tried yet."""
        if plan.before_attempt is None:
            return
        try:
            await plan.before_attempt(dep.name)
        except InterlockError:
            if last is not None:
                raise last from None
            raise

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

    def _timeouts_for(
        self, dep: Deployment, plan: Plan, req: GatewayRequest, *, stream: bool = False
    ) -> Timeouts:
        remaining = max(0.001, plan.deadline - self._clock())
        t = dep.timeouts
        if dep.settings.timeouts.first_byte_s is None:
            t = replace(t, first_byte_s=auto_first_byte_s(dep, req, stream))
        # Only a deadline noticeably shorter than the deployment's own is worth a new value.
        if remaining + 1.0 < t.total_s:
            return replace(t, total_s=remaining, first_byte_s=min(t.first_byte_s, remaining))
        return t

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
        attempts.append(Attempt(dep.name, dep.provider, "ok", elapsed))
        self._metrics.observe_attempt(dep.provider, dep.name, "ok", elapsed)
        if self._tracing is not None:
            self._tracing.attempt(dep.name, dep.provider, "ok", elapsed, len(attempts))
        self._latency.setdefault(
            plan.route.alias, _Quantile(plan.hedge.quantile if plan.hedge else 0.95)
        ).add(elapsed)
        return GatewayResponse(200, done.body, done.usage, dep.name, dep.provider, attempts)

    async def complete(self, req: GatewayRequest, plan: Plan) -> GatewayResponse:
        attempts: list[Attempt] = []
        tried: dict[str, int] = {}
        last: UpstreamError | None = None
        self._budget.on_request()
        n = 0
        # Every deployment of the plan gets one try before max_attempts limits retries.
        while n < max(plan.retry.max_attempts, len(plan.deployments)):
            dep = await self._next(plan, tried, n, last)
            if dep is None:
                break
            await self._vetted(plan, dep, last)
            tried[dep.name] = tried.get(dep.name, 0) + 1
            n += 1
            try:
                if plan.hedge is not None and n == 1 and len(plan.deployments) > 1:
                    return await self._hedged(req, dep, plan, attempts, tried)
                return await self._attempt(req, dep, plan, attempts)
            except _NotAdmitted:
                n -= 1
                continue
            except UpstreamError as err:
                last = err
                if not err.retryable:
                    raise
        raise self._no_deployment(plan, self._pick(plan, tried)[1], last)

    async def _hedged(
        self,
        req: GatewayRequest,
        dep: Deployment,
        plan: Plan,
        attempts: list[Attempt],
        tried: dict[str, int],
    ) -> GatewayResponse:
        assert plan.hedge is not None
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
    async def _loser_answer(
        loser: asyncio.Future[GatewayResponse], ticket: _Ticket
    ) -> GatewayResponse | None:
        try:
            return await loser
        except UpstreamError:
            if ticket.later is not None:  # it timed out in turn: its answer comes later
                return await ticket.later
            raise

    @staticmethod
    def _abandon(
        plan: Plan,
        why: str,
        req: GatewayRequest,
        dep: Deployment,
        started_at: float,
        answer: Awaitable[GatewayResponse | None],
    ) -> None:
        assert plan.on_abandoned is not None
        plan.on_abandoned(
            Abandoned(why, req, plan.route.alias, dep.name, dep.provider, started_at, answer)
        )

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

    @staticmethod
    async def _stream_later(
        upstream: UpstreamStream | PendingStream,
        decoder: StreamDecoder | None,
        req: GatewayRequest,
        dep: Deployment,
        until: float,
    ) -> GatewayResponse | None:
        """An abandoned stream's usage, read to its end (see Abandoned): ``upstream`` is
        open, with ``decoder`` holding what was already read, or still pending."""
        if isinstance(upstream, PendingStream):
            opened = await upstream.stream()
            if opened is None:
                return None  # not even the headers before the bound: a hang
            upstream = opened
        try:
            if upstream.status >= 300:
                body = await upstream.read_all()
                raise dep.adapter.error(upstream.status, upstream.headers, body)
            if decoder is None:
                decoder = dep.adapter.stream_decoder(req, dep.target)
            async for data in upstream.rest(until):
                _feed_rest(decoder, data)
            cut = not upstream.ended
            complete = False
            if not cut:
                try:
                    decoder.close()
                    complete = True
                except UpstreamError:
                    pass  # broke off: counted so far
        finally:
            upstream.close()
        usage = decoder.usage if complete else None
        if usage is None:
            # Counted in a worker thread, as for any stream that ended early (_pump).
            usage = await asyncio.to_thread(decoder.partial_usage, cut)
        return GatewayResponse(200, b"", usage, dep.name, dep.provider)

    # -- streaming --------------------------------------------------------------------

    async def stream(self, req: GatewayRequest, plan: Plan) -> GatewayStream:
        attempts: list[Attempt] = []
        tried: dict[str, int] = {}
        last: UpstreamError | None = None
        self._budget.on_request()
        n = 0
        # Every deployment of the plan gets one try before max_attempts limits retries.
        while n < max(plan.retry.max_attempts, len(plan.deployments)):
            dep = await self._next(plan, tried, n, last)
            if dep is None:
                break
            await self._vetted(plan, dep, last)
            tried[dep.name] = tried.get(dep.name, 0) + 1
            n += 1
            if not self._health.acquire(dep.name, plan.prompt_tokens):
                n -= 1
                continue
            started = self._clock()
            started_at = time.time()
            upstream: UpstreamStream | None = None
            pending: PendingStream | None = None
            decoder: StreamDecoder | None = None
            until = asyncio.get_running_loop().time() + dep.timeouts.total_s
            try:
                call = dep.adapter.build(req, dep.target)
                await dep.auth.apply(call)
                timeouts = self._timeouts_for(dep, plan, req, stream=True)
                if plan.on_abandoned is None:
                    upstream = await self._transport.open(call, timeouts, dep.provider)
                else:
                    got = await self._transport.open_kept(call, timeouts, dep.provider, until)
                    if isinstance(got, PendingStream):
                        pending = got
                        raise UpstreamTimeout(f"provider {dep.provider} did not answer in time")
                    upstream = got
                if upstream.status >= 300:
                    body = await upstream.read_all()
                    raise dep.adapter.error(upstream.status, upstream.headers, body)
                decoder = dep.adapter.stream_decoder(req, dep.target)
                source = upstream.chunks()
                # Until the first chunk with content exists, failing over is invisible to
                # the client (a bare role chunk is held back with it).
                first: list[Chunk] = []
                ended = False
                while not any(_substantive(c) for c in first):
                    data = await anext(source, None)
                    if data is None:
                        ended = True
                        first += decoder.close()
                        break
                    first += decoder.feed(data)
            except UpstreamError as caught:
                err = self._blame(caught, dep, plan, started)
                kept = pending or upstream
                if (
                    plan.on_abandoned is not None
                    and isinstance(err, UpstreamTimeout)
                    and kept is not None
                    and not (isinstance(kept, UpstreamStream) and kept.status >= 300)
                ):
                    # Abandoned before its first chunk: the provider may still be
                    # generating (and billing) it, so it is read to its end and charged.
                    why = "deadline" if isinstance(err, DeadlineExceeded) else "timeout"
                    later = self._stream_later(kept, decoder, req, dep, until)
                    self._abandon(plan, why, req, dep, started_at, later)
                elif upstream is not None:
                    upstream.close()
                self._release_error(dep, err, started)
                self._failed(dep, err, started, attempts)
                last = err
                if not err.retryable:
                    if err is not caught:
                        raise err from None
                    raise
                continue
            except BaseException:
                if upstream is not None:
                    upstream.close()
                self._health.release(
                    dep.name, ok=False, duration_s=self._clock() - started, counts_as_failure=False
                )
                raise
            ttft = self._clock() - started
            self._health.first_byte(dep.name, ttft)
            attempts.append(Attempt(dep.name, dep.provider, "ok", ttft))
            self._metrics.observe_attempt(dep.provider, dep.name, "ok", ttft)
            if self._tracing is not None:
                self._tracing.attempt(dep.name, dep.provider, "ok", ttft, len(attempts))
            result = GatewayStream(
                chunks=_empty(), deployment=dep.name, provider=dep.provider, attempts=attempts
            )
            result.chunks = self._pump(
                result,
                dep,
                started,
                upstream,
                source,
                decoder,
                first,
                ended,
                plan.deadline,
                plan.client_deadline,
            )
            return result
        raise self._no_deployment(plan, self._pick(plan, tried)[1], last)

    async def _pump(
        self,
        result: GatewayStream,
        dep: Deployment,
        started: float,
        upstream: UpstreamStream,
        source: AsyncIterator[bytes],
        decoder: StreamDecoder,
        first: list[Chunk],
        ended: bool,
        deadline: float,
        client_deadline: bool = False,
    ) -> AsyncGenerator[list[Chunk], None]:
        failure: UpstreamError | None = None
        try:
            if first:
                yield first
            if not ended:
                async for data in source:
                    # One batch per upstream read: one write to the client, not one per event.
                    batch = decoder.feed(data)
                    if batch:
                        yield batch
                    if self._clock() > deadline:
                        late = UpstreamTimeout(
                            f"provider {dep.provider} stream exceeded the request's total time"
                        )
                        raise _client_deadline(late) if client_deadline else late
                tail = decoder.close()
                if tail:
                    yield tail
            result.completed = True
        except UpstreamError as err:
            err.message = self._redact(err.message)
            failure = err
            raise
        finally:
            hung_up = False
            if not result.completed:
                # The provider bills what it generated: decode what already arrived and was
                # not read, and note whether the gateway is the one hanging up on a live
                # stream (the client left, a deadline fired): then more was in flight.
                hung_up = not upstream.ended
                _feed_rest(decoder, upstream.drain())
            upstream.close()
            duration = self._clock() - started
            if failure is not None:
                self._release_error(dep, failure, started, streamed=True)
            else:
                # A client that left mid-stream says nothing about the deployment.
                self._health.release(
                    dep.name,
                    ok=result.completed,
                    duration_s=duration,
                    counts_as_failure=False,
                    streamed=True,
                )
            if result.completed and decoder.usage is not None:
                result.usage = decoder.usage
            else:
                # Tokenized in a worker thread (tiktoken releases the GIL): a long prompt is
                # milliseconds of CPU the event loop need not wait for.
                try:
                    result.usage = await asyncio.to_thread(decoder.partial_usage, hung_up)
                except asyncio.CancelledError:
                    # Cancelled again (shutdown): count here rather than lose the charge;
                    # counting only reads the decoder, so the abandoned thread is harmless.
                    result.usage = decoder.partial_usage(hung_up)
                    raise


def _feed_rest(decoder: StreamDecoder, data: bytes) -> None:
    """Decode the last bytes of a stream that ended early, for the count only."""
    if not data:
        return
    try:
        decoder.feed(data)
    except Exception:  # noqa: S110 - a half event or the provider's error: counted so far
        pass


def _client_deadline(err: UpstreamTimeout) -> DeadlineExceeded:
    return DeadlineExceeded(
        err.message.replace("did not answer in time", "did not answer")
        + " before the request's own deadline (x-interlock-timeout) ran out",
        upstream_status=err.upstream_status,
    )


def _substantive(chunk: Chunk) -> bool:
    """Whether a chunk carries generated content (not just the assistant role)."""
    choices = chunk.obj.get("choices")
    if not choices:
        return chunk.obj.get("usage") is not None
    for choice in choices:
        if not isinstance(choice, dict):
            return True
        if choice.get("finish_reason") is not None:
            return True
        delta = choice.get("delta")
        if (
            not isinstance(delta, dict)
            or delta.get("content")
            or delta.get("tool_calls")
            or delta.get("refusal")
        ):
            return True
        if choice.get("text"):
            return True
    return False


async def _empty() -> AsyncGenerator[list[Chunk], None]:
    return
    yield
