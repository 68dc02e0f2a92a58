"""The candidate configuration as the simulator needs it: routes, prices, quotas, limits.

Reduced to plain data once, so the event loop does dictionary look-ups, not settings
walks. What is modelled, as the gateway does it (routing/executor.py, spend/limits.py):

* a route's deployments in order (``priority``) or drawn by ``weight`` (every other
  strategy: their tie-breaks depend on live latency the model does not have), then the
  deployments of its ``fallbacks`` that fire on ``rate_limit``;
* a deployment at its ``rpm``/``tpm``/``max_concurrency`` is skipped; when all are, the
  request waits once for the soonest (up to ``retry.max_retry_after_s``), else it is
  refused ``429 deployment_busy``;
* ``spend.rate_limits`` rpm/tpm per key/team/model/global → ``429 rate_limited``;
* ``spend.budgets`` hard limits (``limit_usd``) per key/team/global, counted from the
  start of the replay → ``budget_exceeded``.

Not modelled: user and tag scopes, per-key limits set through the admin API, retries
after provider errors, circuit breakers, hedging, degradation levels, tier routing (a
tiered alias is served where the ledger says it was).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from interlock.settings import Settings
from interlock.simulate.demand import Demand
from interlock.spend.prices import Price, PriceTable, UnknownPricePolicy, resolve_price

__all__ = ["Candidate", "DeploymentPlan", "LimitRule", "RoutePlan", "candidate_from_settings"]


@dataclass(frozen=True, slots=True)
class DeploymentPlan:
    name: str
    price: Price | None  # None: blocked (unknown price, policy "block")
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None  # across all replicas
    weight: float


@dataclass(frozen=True, slots=True)
class RoutePlan:
    alias: str
    primary: tuple[str, ...]
    fallback: tuple[str, ...]
    weighted: bool
    cache: bool


@dataclass(frozen=True, slots=True)
class LimitRule:
    scope: str  # key | team | model | global
    subject: str | None
    rpm: int | None = None
    tpm: int | None = None
    limit_usd: Decimal | None = None

    def subject_of(self, d: Demand) -> str | None:
        """The counter this demand lands in, or None when the rule does not apply."""
        value = {"key": d.key_id, "team": d.team_id, "model": d.model, "global": "*"}.get(
            self.scope
        )
        if value is None or (self.subject is not None and self.subject != value):
            return None
        return f"{self.scope}:{value}"


@dataclass(frozen=True, slots=True)
class Candidate:
    deployments: dict[str, DeploymentPlan]
    routes: dict[str, RoutePlan]
    rate_limits: tuple[LimitRule, ...]
    budgets: tuple[LimitRule, ...]
    max_wait_s: float
    deadline_s: float

    def route(self, d: Demand) -> RoutePlan | None:
        plan = self.routes.get(d.model)
        if plan is not None and (plan.primary or plan.fallback):
            return plan
        if d.deployment in self.deployments:  # a tiered alias, or one the candidate renamed
            cache = plan.cache if plan is not None else True
            return RoutePlan(d.model, (d.deployment,), (), False, cache)  # type: ignore[arg-type]
        return None


def _deps(settings: Settings, alias: str) -> tuple[str, ...]:
    route = settings.models.get(alias)
    return tuple(d for d in route.deployments if d in settings.deployments) if route else ()


def candidate_from_settings(
    settings: Settings, table: PriceTable | None = None, replicas: int = 1
) -> Candidate:
    table = table or PriceTable.load()
    u = settings.spend.unknown_price
    policy = UnknownPricePolicy(
        u.action, Decimal(str(u.input_per_mtok)), Decimal(str(u.output_per_mtok))
    )
    deployments = {}
    for name, dep in settings.deployments.items():
        provider = settings.providers.get(dep.provider)
        decision = resolve_price(
            dep, provider.kind if provider else None, table, policy, deployment=name
        )
        conc = dep.max_concurrency * max(1, replicas) if dep.max_concurrency else None
        deployments[name] = DeploymentPlan(name, decision.price, dep.rpm, dep.tpm, conc, dep.weight)
    routes = {}
    cache_on = settings.cache.enabled
    for alias, route in settings.models.items():
        fallback: list[str] = []
        for fb in route.fallbacks:
            if "rate_limit" in fb.on:
                for other in fb.models:
                    fallback.extend(d for d in _deps(settings, other) if d not in fallback)
        primary = _deps(settings, alias)
        cache = cache_on and (route.cache is None or route.cache.enabled)
        routes[alias] = RoutePlan(
            alias, primary, tuple(fallback), route.strategy != "priority", cache
        )
    rate_limits = tuple(
        LimitRule(r.scope, r.subject, r.rpm, r.tpm)
        for r in settings.spend.rate_limits
        if r.scope in ("key", "team", "model", "global") and (r.rpm or r.tpm)
    )
    budgets = tuple(
        LimitRule(b.scope, b.subject, limit_usd=Decimal(str(b.limit_usd)))
        for b in settings.spend.budgets
        if b.limit_usd is not None and b.scope in ("key", "team", "global")
    )
    return Candidate(
        deployments,
        routes,
        rate_limits,
        budgets,
        max_wait_s=settings.resilience.retry.max_retry_after_s,
        deadline_s=settings.server.request_timeout_s,
    )
