"""Which rate limits apply to a request, and applying them (RPM, TPM, concurrency).

Limits come from the configuration (``spend.rate_limits`` per key, user, team, model
or global) and from the key itself (``rate_limits`` on the key). All request and token
limits of a request are checked in one all-or-nothing step (atomic in Redis across
replicas); the token estimate admitted is corrected by the actual usage afterwards.

When the shared store (Redis) is unavailable — really unavailable: its calls are bounded
by Redis's own time, not by this process's event-loop lag (state/redis_call.py) —
``spend.rate_limits_on_state_error`` decides: ``fail_closed`` refuses with 503, and
``fail_open`` admits against a local limiter in this process that enforces
``spend.rate_limits_local_share`` of every limit. Fail-open is therefore bounded: with N
replicas (processes) at most N × share × the limit gets through while Redis is down,
never an unlimited amount; with a healthy Redis the local limiter is never consulted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from interlock.errors import RateLimited, ServiceUnavailable
from interlock.settings import SpendSettings
from interlock.spend.ratelimit import (
    Decision,
    Limit,
    RateLimitBackendError,
    RateLimiter,
    admitted,
    ratelimit_headers,
    retry_after,
)
from interlock.state.ratelimit_local import LocalRateLimiter
from interlock.types import Principal

log = logging.getLogger("interlock.ratelimit")

# Concurrency leases expire on their own after this, so a crashed replica cannot hold
# capacity forever; long streams renew theirs.
LEASE_TTL_S = 900.0


@dataclass(slots=True)
class Admitted:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    token_limits: list[Limit] = field(default_factory=list)
    tokens_admitted: int = 0
    leases: list[tuple[str, str]] = field(default_factory=list)  # (key, lease id)
    local: bool = False  # admitted by the local fallback (the shared store was down)


@dataclass(frozen=True, slots=True)
class _Rule:
    scope: str
    subject: str | None
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None


class RateLimits:
    def __init__(
        self, cfg: SpendSettings, limiter: RateLimiter, *, fallback: RateLimiter | None = None
    ) -> None:
        self._limiter = limiter
        self._fail_open = cfg.rate_limits_on_state_error == "fail_open"
        self._share = cfg.rate_limits_local_share
        # Consulted only while `limiter` (Redis) is unavailable and fail_open applies.
        self._fallback: RateLimiter = fallback or LocalRateLimiter()
        self._degraded = False  # logging: once per outage, not once per request
        self._rules = [
            _Rule(r.scope, r.subject, r.rpm, r.tpm, r.max_concurrency) for r in cfg.rate_limits
        ]

    def _rules_for(self, p: Principal, model: str) -> list[_Rule]:
        out = [
            r
            for r in self._rules
            if r.scope == "global"
            or (r.scope == "key" and r.subject == p.key_id)
            or (r.scope == "user" and p.user is not None and r.subject == p.user)
            or (r.scope == "team" and p.team is not None and r.subject == p.team)
            or (r.scope == "model" and r.subject == model)
        ]
        if p.rpm or p.tpm or p.max_concurrency:
            out.append(_Rule("key", p.key_id, p.rpm, p.tpm, p.max_concurrency))
        return out

    async def admit(
        self, p: Principal, model: str, tokens_of: Callable[[], int]
    ) -> Admitted | None:
        """Check and consume; raises RateLimited (429) when a limit is reached.

        ``tokens_of`` estimates the request's tokens; called only when a TPM limit applies.
        """
        if not self._rules and not (p.rpm or p.tpm or p.max_concurrency):
            return None
        rules = self._rules_for(p, model)
        if not rules:
            return None
        tokens = tokens_of() if any(r.tpm for r in rules) else 0
        checks: list[tuple[Limit, int]] = []
        token_limits: list[Limit] = []
        for r in rules:
            base = f"rl:{r.scope}:{r.subject or '*'}"
            if r.rpm:
                lim = Limit(base + ":rpm", r.rpm)
                checks.append((lim, 1))
            if r.tpm:
                lim = Limit(base + ":tpm", r.tpm)
                checks.append((lim, tokens))
                token_limits.append(lim)
        try:
            out = await self._apply(
                self._limiter,
                p,
                rules,
                checks,
                Admitted(token_limits=token_limits, tokens_admitted=tokens),
            )
        except RateLimitBackendError:
            if not self._fail_open:
                raise ServiceUnavailable(
                    "rate limits cannot be checked right now",
                    code="ratelimit_state_unavailable",
                    retry_after=5,
                ) from None
            if not self._degraded:
                log.warning(
                    "rate-limit state unavailable; enforcing %.0f%% of each limit in this "
                    "process until it is back (fail_open)",
                    self._share * 100,
                )
                self._degraded = True
            local = [(self._local_limit(lim), cost) for lim, cost in checks]
            adm = Admitted(
                token_limits=[self._local_limit(lim) for lim in token_limits],
                tokens_admitted=tokens,
                local=True,
            )
            return await self._apply(self._fallback, p, rules, local, adm, share=self._share)
        if self._degraded:
            log.info("rate-limit state reachable again")
            self._degraded = False
        return out

    def _local_limit(self, lim: Limit) -> Limit:
        """This process's share of ``lim`` (its own key: the local store is separate)."""
        return Limit(lim.key, max(1, math.floor(lim.rate * self._share)), lim.period_s)

    async def _apply(
        self,
        limiter: RateLimiter,
        p: Principal,
        rules: list[_Rule],
        checks: list[tuple[Limit, int]],
        out: Admitted,
        *,
        share: float = 1.0,
    ) -> Admitted:
        if checks:
            decisions = await limiter.acquire(checks, priority=p.priority, max_wait_s=p.max_wait_s)
            # Report the tightest limit of each kind, as OpenAI's headers do.
            req_ds = [
                d for d, (lim, _) in zip(decisions, checks, strict=True) if lim.key.endswith(":rpm")
            ]
            tok_ds = [
                d for d, (lim, _) in zip(decisions, checks, strict=True) if lim.key.endswith(":tpm")
            ]
            req_d = min(req_ds, key=lambda d: d.remaining) if req_ds else None
            tok_d = min(tok_ds, key=lambda d: d.remaining) if tok_ds else None
            out.headers = ratelimit_headers(req_d, tok_d)
            if not admitted(decisions):
                raise self._refusal(decisions, out.headers)
        for r in rules:
            if r.max_concurrency:
                key = f"rl:{r.scope}:{r.subject or '*'}:conc"
                most = max(1, math.floor(r.max_concurrency * share))
                try:
                    lease = await limiter.lease(key, most, LEASE_TTL_S)
                except RateLimitBackendError:
                    await self.release(out)
                    raise
                if lease is None:
                    await self.release(out)
                    raise RateLimited(
                        f"too many requests in flight for {r.scope} {r.subject or ''}".strip(),
                        code="rate_limited",
                        retry_after=1,
                    )
                out.leases.append((key, lease))
        return out

    @staticmethod
    def _refusal(decisions: list[Decision], headers: list[tuple[bytes, bytes]]) -> RateLimited:
        denied = next(d for d in decisions if not d.allowed)
        wait = retry_after(decisions)
        kind = "tokens" if denied.key.endswith(":tpm") else "requests"
        err = RateLimited(
            f"rate limit reached ({denied.limit} {kind} per minute)"
            + (": this request alone exceeds it" if denied.too_large else ""),
            code="rate_limited",
            retry_after=None if wait == float("inf") else wait,
        )
        err.extra_headers = headers
        return err

    async def finish(self, adm: Admitted | None, actual_tokens: int | None) -> None:
        """Correct the token estimate with the actual usage and release concurrency."""
        if adm is None:
            return
        limiter = self._fallback if adm.local else self._limiter
        try:
            if actual_tokens is not None and adm.token_limits:
                delta = actual_tokens - adm.tokens_admitted
                if delta:
                    for lim in adm.token_limits:
                        await limiter.adjust(lim, delta)
        except RateLimitBackendError:
            log.warning("could not correct a token estimate (rate-limit state unavailable)")
        await self.release(adm)

    async def release(self, adm: Admitted) -> None:
        limiter = self._fallback if adm.local else self._limiter
        for key, lease in adm.leases:
            try:
                await limiter.unlease(key, lease)
            except RateLimitBackendError:
                log.warning("could not release a concurrency lease; it expires on its own")
        adm.leases.clear()
