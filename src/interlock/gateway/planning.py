"""Planning in the request path: a route's deployments, in the order they are tried.

The plan (:class:`~interlock.routing.attempts.Plan`) holds the deployments the
degradation level allows that can hold the request, ranked by the alias's strategy
(with health, load and expected cost), the slow ones last, a cached prompt prefix's
deployment first; the retry policy, the deadline (the client's own where shorter), the
hedge and the request's hooks for billable and abandoned attempts.
"""

from __future__ import annotations

import time

from interlock.gateway.base import GatewayBase
from interlock.providers.registry import Deployment
from interlock.resilience.degradation import Level
from interlock.routing.affinity import PromptAffinity
from interlock.routing.attempts import Plan
from interlock.routing.catalog import Route
from interlock.routing.strategies import Candidate, rank
from interlock.types import Endpoint, GatewayRequest, Usage


class PlanningPath(GatewayBase):
    def _deployments_at(self, route: Route, level: Level) -> list[Deployment]:
        deps = self.spend.priced(list(route.deployments))
        if level >= Level.LIMITED:
            wanted = route.spec.limited_deployments
            cheap = [d for d in deps if (d.name in wanted if wanted else not d.settings.expensive)]
            deps = cheap or deps  # never let 'limited' empty a route
        return deps

    def plan(self, req: GatewayRequest, route: Route, level: Level) -> Plan:
        deps = self._deployments_at(route, level)
        # The prompt estimate is only needed for context windows, TPM capacity and costs.
        needs_prompt = route.spec.strategy == "lowest_cost" or any(
            d.settings.context_window or d.settings.tpm for d in deps
        )
        prompt = self.executor.prompt_tokens(req) if needs_prompt else 0
        if needs_prompt:
            deps = self.executor.check_context(req, route, deps, prompt)
        strategy = route.spec.strategy
        if strategy != "priority" and len(deps) > 1:
            now = time.time()
            states = {d.name: self.health.state(d.name) for d in deps}
            cands = [
                Candidate(
                    d.name,
                    weight=d.settings.weight,
                    latency_s=states[d.name].latency(now),
                    in_flight=states[d.name].in_flight,
                    max_concurrency=d.settings.max_concurrency,
                    cost=self._expected_cost(d, req, prompt),
                )
                for d in deps
            ]
            by_name = {d.name: d for d in deps}
            deps = [by_name[c.name] for c in rank(strategy, cands, self.rng)]
        # Whatever the strategy: a deployment far slower than its peers goes last.
        deps = self.health.route_around_slow(deps)
        if route.spec.prompt_affinity and req.endpoint is Endpoint.CHAT and len(deps) > 1:
            deps = self._prefer_cached_prefix(req, route, deps)
        res = self.settings.resilience
        timeout = self.settings.server.request_timeout_s
        client_deadline = False
        if req.timeout_s is not None:
            chosen = max(res.client_timeout_min_s, min(res.client_timeout_max_s, req.timeout_s))
            # A timeout at a deadline the client chose is the client's (errors.py: blame).
            client_deadline = chosen < timeout
            timeout = min(timeout, chosen)
        hedge = (
            route.spec.hedge
            if route.spec.hedge.enabled and not req.stream and level is Level.FULL
            else None
        )
        return Plan(
            route,
            deps,
            self._retry[route.alias],
            time.monotonic() + timeout,
            hedge,
            prompt,
            client_deadline=client_deadline,
            before_attempt=req.before_attempt,
            on_abandoned=req.on_abandoned,
            attempts=req.attempts,
        )

    def _prefer_cached_prefix(
        self, req: GatewayRequest, route: Route, deps: list[Deployment]
    ) -> list[Deployment]:
        req.prompt_digests = PromptAffinity.digests(
            route.alias, req.body, route.spec.prompt_affinity_min_tokens
        )
        preferred = self.affinity.preferred(req.prompt_digests)
        if preferred is None:
            return deps
        first = [d for d in deps if d.name == preferred]
        if first:
            self.metrics.affinity_routed(route.alias)
        return first + [d for d in deps if d.name != preferred]

    def _expected_cost(self, dep: Deployment, req: GatewayRequest, prompt: int) -> float | None:
        """For lowest-cost routing: this request's cost on ``dep`` (None: price unknown)."""
        price = self.spend.prices[dep.name].price
        if price is None or self.spend.prices[dep.name].warning:
            return None
        out = req.body.get("max_completion_tokens") or req.body.get("max_tokens") or 256
        usage = Usage(prompt_tokens=prompt, completion_tokens=out if isinstance(out, int) else 256)
        return float(self.spend.cost(dep.name, usage))
