"""Model-tier selection in the request path (routing/tiers, docs/routing.md)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from interlock.errors import InterlockError, PermissionDenied
from interlock.gateway.base import GatewayBase
from interlock.resilience.degradation import Level
from interlock.routing.catalog import Route
from interlock.routing.tiers.escalation import failed_check
from interlock.routing.tiers.learned import LearnedModel
from interlock.routing.tiers.router import TierChoice, TierRouter, embedding_text
from interlock.settings import Settings
from interlock.spend.accounting import Admission
from interlock.types import (
    GatewayRequest,
    GatewayResponse,
    Principal,
)

log = logging.getLogger("interlock.gateway")


class TierPath(GatewayBase):
    async def _tiered(self, req: GatewayRequest, route: Route, principal: Principal) -> Route:
        """A tiered alias: pick the tier and return the route of the alias serving it.

        The key's model allowlist applies to the tier's alias too: a pinned tier the key
        may not use is refused (403 ``model_not_allowed``, the client named it); a chosen
        one is replaced by the nearest size the key may use (docs/decisions.md)."""
        router = self.tier_routers.get(route.alias)
        if router is None:
            return route  # a concrete model: no routing, x-interlock-tier is ignored
        embedding = None
        if router.uses_embedding and not req.tier_pin:
            embedding = await self._router_embedding(router, req)
        chosen = router.choose(req.body, req.tier_pin, embedding)
        if req.tier_pin:
            choice = chosen if principal.may_use(chosen.alias) else None
        else:
            choice = router.nearest_allowed(chosen, principal.may_use)
        if choice is None:
            raise PermissionDenied(
                f"This key may not use the model '{chosen.alias}' that serves tier "
                f"'{chosen.tier}' of '{route.alias}'"
                if req.tier_pin
                else f"This key may use none of the tiers of '{route.alias}'",
                code="model_not_allowed",
                param="x-interlock-tier" if req.tier_pin else "model",
            )
        req.tier, req.tier_reason, req.tier_choice = choice.tier, choice.reason, choice
        self.metrics.tier_routed(route.alias, choice.tier)
        target = self.catalog.get(choice.alias)
        assert target is not None  # settings check every tier's alias
        return target

    async def _router_embedding(self, router: TierRouter, req: GatewayRequest) -> Any:
        """The learned path's embedding; None (feature path only) when it cannot be had."""
        try:
            async with asyncio.timeout(self.settings.cache.semantic.embed_timeout_s):
                if router.description_vectors is None and router.cfg.specialized:
                    import numpy as np

                    texts = [t.description for t in router.cfg.specialized.values()]
                    router.description_vectors = np.stack(await self._semantic_embed(texts))
                (vec,) = await self._semantic_embed([embedding_text(req.body)])
                return vec
        except (InterlockError, TimeoutError) as exc:
            log.warning("tier router: no embedding (%s); feature path only", type(exc).__name__)
            return None

    async def _escalate(
        self,
        req: GatewayRequest,
        principal: Principal,
        route: Route,
        level: Level,
        started: float,
        admission: Admission | None,
        result: GatewayResponse,
    ) -> tuple[GatewayResponse, Admission | None]:
        """Retry once on the next tier up when the answer fails a cheap check. Both calls
        are charged: the first is recorded as its own ledger row (outcome ``escalated``)."""
        choice: TierChoice = req.tier_choice
        router = self.tier_routers.get(req.model)
        if router is None or not router.cfg.escalate or result.status != 200:
            return result, admission
        failed = failed_check(req.body, result.body, router.cfg.escalate_on)
        up = router.next_up(choice, principal.may_use) if failed is not None else None
        upper = self.catalog.get(up.alias) if up is not None else None
        if up is None or upper is None:
            return result, admission
        try:
            again = await self.spend.admit(req, principal, self._cost_candidates(upper, principal))
        except InterlockError:
            return result, admission  # e.g. the budget cannot cover a second call
        tried = len(req.attempts)  # the first tier's attempts (its own ledger row)
        try:
            better = await self._run(req, upper, level)
        except InterlockError:
            if again is not None:
                await self.spend.enforcer.release(again.reservation)
            return result, admission
        if not isinstance(better, GatewayResponse):  # pragma: no cover - never streamed
            return result, admission
        first = self._record(req, principal, route.alias, started, None, result)
        first.request_id = f"{first.request_id[:46]}:{choice.tier[:16]}"
        first.outcome, first.attempts = "escalated", tried
        await self.spend.finish(admission, self.spend.cost(result.deployment, result.usage), first)
        self.metrics.tier_escalated(req.model, choice.tier, up.tier, str(failed))
        req.tier, req.tier_choice = up.tier, up
        req.tier_reason = f"escalated from {choice.tier} ({failed}); {choice.reason}"[:200]
        better.fallback = up.alias
        better.headers.append((b"x-interlock-escalated", f"{choice.tier}:{failed}".encode()))
        return better, again


def tier_routers_for(settings: Settings) -> dict[str, TierRouter]:
    """One router per tiered alias (its learned artifact loaded once, at start)."""
    routers = {}
    for alias, spec in settings.models.items():
        if spec.tiers is None:
            continue
        path = spec.tiers.model_path
        routers[alias] = TierRouter(alias, spec.tiers, LearnedModel.load(path) if path else None)
    return routers


def tier_headers(req: GatewayRequest) -> list[tuple[bytes, bytes]]:
    if req.tier is None:
        return []
    return [
        (b"x-interlock-tier", req.tier.encode()),
        (b"x-interlock-route-reason", (req.tier_reason or "").encode()),
    ]
