"""The answer cache in the request path: exact keys, semantic hits, cached answers.

Exact lookups and stores go through :class:`~interlock.cache.tiered.TieredCache`; a
semantic hit (``cache/semantic``) maps a reworded request to a stored answer's exact
key. A cached answer costs $0 and its ledger record says what it saved.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from interlock.cache.keys import cache_key
from interlock.cache.policy import CacheDecision, decide
from interlock.cache.replay import replay_chunks
from interlock.cache.tiered import CachedAnswer
from interlock.gateway.base import GatewayBase
from interlock.gateway.tiers import tier_headers
from interlock.localembed import MODEL_NAME as LOCAL_EMBED_MODEL
from interlock.resilience.degradation import Level
from interlock.routing.catalog import Route
from interlock.types import (
    Chunk,
    Endpoint,
    GatewayRequest,
    GatewayResponse,
    GatewayStream,
    Principal,
    Usage,
)

if TYPE_CHECKING:  # the semantic cache (numpy, usearch) is imported only when enabled
    from interlock.cache.semantic.cache import Probe
    from interlock.cache.semantic.index import Vector


@dataclass(slots=True)
class _CachePlan:
    key: str  # the exact-match key
    decision: CacheDecision
    namespace: str  # the tenant's
    probe: Probe | None = None  # the semantic lookup, remembered with the answer


class AnswerCachePath(GatewayBase):
    def _cache_plan(
        self, req: GatewayRequest, principal: Principal, route: Route
    ) -> _CachePlan | None:
        if self.cache is None:
            return None
        decision = decide(
            self.settings.cache,
            route.spec.cache,
            req.endpoint,
            req.body,
            req.cache_mode,
            req.cache_control,
        )
        if decision is None:
            return None
        if self.settings.cache.namespace == "team" and principal.team:
            namespace = "team:" + principal.team
        else:
            namespace = "key:" + principal.key_id
        if decision.write:
            req.cache_namespace = namespace
        key = cache_key(namespace, route.alias, req.endpoint.value, req.body)
        return _CachePlan(key, decision, namespace)

    def _cacheable(
        self, body: bytes, result: GatewayResponse | GatewayStream, cost: Decimal, ttl_s: float
    ) -> CachedAnswer | None:
        """Only complete, successful answers are stored (never filtered or errored ones)."""
        if len(body) > self.settings.cache.max_entry_bytes or b'"content_filter"' in body:
            return None
        now = time.time()
        return CachedAnswer(
            body, result.usage, result.deployment, result.provider, cost, now, now + ttl_s
        )

    def _store_answer(self, plan: _CachePlan, ans: CachedAnswer) -> None:
        assert self.cache is not None
        self.cache.put(plan.key, ans)
        if plan.probe is not None and self.semantic is not None:
            self.semantic.remember(plan.probe, plan.key, ans.fresh_until)

    def _semantic_threshold(self, route: Route) -> float | None:
        """The route's similarity threshold, or None when it is not matched by meaning."""
        if self.semantic is None:
            return None
        cfg, spec = self.settings.cache.semantic, route.spec.cache
        enabled = spec.semantic if spec is not None and spec.semantic is not None else cfg.enabled
        if not enabled:
            return None
        if spec is not None and spec.semantic_threshold is not None:
            return spec.semantic_threshold
        return cfg.threshold

    async def _semantic_hit(
        self, plan: _CachePlan, threshold: float, level: Level
    ) -> CachedAnswer | None:
        assert self.semantic is not None and self.cache is not None
        if plan.probe is None:
            return None
        match = self.semantic.match(plan.probe, threshold)
        for reason in match.rejected if match else ():
            self.metrics.semantic_rejected(reason)
        if match is None:
            return None
        return await self.cache.get(
            match.candidate.key,
            max_age_s=plan.decision.max_age_s,
            allow_stale=level >= Level.CACHED,
        )

    async def _semantic_embed(self, texts: list[str]) -> list[Vector]:
        """Embed lookups with the configured embeddings model (the local one by default)."""
        alias = self.settings.cache.semantic.embedder or LOCAL_EMBED_MODEL
        route = self.catalog.resolve(alias, Endpoint.EMBEDDINGS)
        body: dict[str, Any] = {"model": alias, "input": texts}
        req = GatewayRequest(Endpoint.EMBEDDINGS, alias, body, orjson.dumps(body))
        resp = await self.executor.complete(req, self.plan(req, route, Level.FULL))
        import numpy as np

        data = sorted(orjson.loads(resp.body)["data"], key=lambda d: d["index"])
        return [np.asarray(d["embedding"], dtype=np.float32) for d in data]

    async def _from_cache(
        self,
        req: GatewayRequest,
        principal: Principal,
        alias: str,
        started: float,
        ans: CachedAnswer,
        status: str | None = None,
    ) -> GatewayResponse | GatewayStream:
        """A cached answer: costs $0, and the ledger records what it saved."""
        status = status or f"hit-{ans.tier}"
        result: GatewayResponse | GatewayStream
        if req.stream:
            chunks = replay_chunks(ans.body, req.include_usage, ans.usage)
            result = GatewayStream(
                _one_batch(chunks),
                ans.deployment,
                "cache",
                usage=ans.usage or Usage(),
                completed=True,
            )
        else:
            result = GatewayResponse(200, ans.body, ans.usage, ans.deployment, "cache")
        result.cache = status
        result.cost_usd = Decimal(0)
        result.headers.extend(tier_headers(req))
        rec = self._record(req, principal, alias, started, None, result)
        rec.cache, rec.saved_usd, rec.provider = status, ans.cost_usd, "cache"
        await self.spend.finish(None, Decimal(0), rec)
        self.metrics.cache_hit(alias, status)
        return result


async def _one_batch(chunks: list[Chunk]) -> AsyncGenerator[list[Chunk], None]:
    yield chunks
