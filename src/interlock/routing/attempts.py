"""What both paths of the executor share: the plan they follow and the life of one
attempt in it.

The non-streamed path (``executor.py``, with hedging) and the streamed one
(``streaming.py``) are mixins over :class:`ExecutorBase`, which names the long-lived
objects they use and holds the steps every attempt takes: choosing its deployment
(cooldowns, backoff, the retry budget), the plan owner's veto, its timeouts, whom a
failure blames, the health and metrics bookkeeping, and handing over an attempt the
executor abandons while the provider may still bill it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from interlock.errors import (
    DeadlineExceeded,
    InterlockError,
    ServiceUnavailable,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from interlock.providers.registry import Deployment
from interlock.providers.transport import Timeouts, Transport
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
    GatewayRequest,
    GatewayResponse,
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
    """What the gateway asks the executor to run: deployments in order, within a deadline."""

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
    # Where this plan's attempts are appended: the request's own list (all its attempts,
    # across the aliases a fallback tries), so the answer counts every one of them.
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(slots=True)
class Tries:
    """One request's attempts so far (see :meth:`ExecutorBase._next_try`)."""

    attempts: list[Attempt] = field(default_factory=list)
    tried: dict[str, int] = field(default_factory=dict)  # calls made per deployment
    last: UpstreamError | None = None  # the latest failure
    n: int = 0  # attempts made


class ExecutorBase:
    """The steps of one attempt, shared by both paths (set up by ``Executor``)."""

    _transport: Transport
    _health: DeploymentHealth
    _metrics: Metrics
    _redact: Redactor
    _budget: RetryBudget
    _rng: random.Random
    _clock: Callable[[], float]
    _tracing: Tracing | None

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
        self._note(dep, err.code, self._clock() - started, attempts)

    def _note(self, dep: Deployment, outcome: str, elapsed: float, attempts: list[Attempt]) -> None:
        """One attempt's outcome: in the response's attempts, the metrics and the trace."""
        attempts.append(Attempt(dep.name, dep.provider, outcome, elapsed))
        self._metrics.observe_attempt(dep.provider, dep.name, outcome, elapsed)
        if self._tracing is not None:
            self._tracing.attempt(dep.name, dep.provider, outcome, elapsed, len(attempts))

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
            return as_client_deadline(err)
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

    def _no_deployment(self, plan: Plan, tries: Tries) -> InterlockError:
        """What the client gets when no attempt is left: the last upstream error, else why
        no deployment could be tried."""
        wait = self._pick(plan, tries.tried)[1]
        if tries.last is not None:
            return tries.last
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

    async def _next_try(self, plan: Plan, tries: Tries) -> Deployment | None:
        """The deployment of the next attempt, vetted by the plan's owner and counted as
        made; None when no attempt is left. Every deployment of the plan gets one try
        before ``max_attempts`` limits retries."""
        if tries.n >= max(plan.retry.max_attempts, len(plan.deployments)):
            return None
        dep = await self._next(plan, tries.tried, tries.n, tries.last)
        if dep is None:
            return None
        await self._vetted(plan, dep, tries.last)
        tries.tried[dep.name] = tries.tried.get(dep.name, 0) + 1
        tries.n += 1
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


def as_client_deadline(err: UpstreamTimeout) -> DeadlineExceeded:
    """A timeout at the client's own deadline, as the client sees it (blaming nobody)."""
    return DeadlineExceeded(
        err.message.replace("did not answer in time", "did not answer")
        + " before the request's own deadline (x-interlock-timeout) ran out",
        upstream_status=err.upstream_status,
    )
