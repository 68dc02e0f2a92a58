"""What the request-path parts of :class:`~interlock.gateway.core.Gateway` share.

The gateway is split along what it holds: the answer cache (``answers.py``), the
embeddings paths (``embeddings.py``), model-tier selection (``tiers.py``), planning
(``planning.py``), intents and abandoned attempts (``abandoned.py``) and the core
request path (``core.py``). Each part is a mixin over this base, which names the
long-lived objects they use and the core methods they call.
"""

from __future__ import annotations

import asyncio
import random
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from interlock.cache.tiered import TieredCache
from interlock.errors import (
    InterlockError,
)
from interlock.providers.registry import Deployment
from interlock.resilience.degradation import Level
from interlock.resilience.retry import RetryConfig
from interlock.routing.affinity import PromptAffinity
from interlock.routing.attempts import Plan
from interlock.routing.catalog import Catalog, Route
from interlock.routing.embed_batch import EmbeddingBatcher
from interlock.routing.executor import Executor
from interlock.routing.health import DeploymentHealth
from interlock.routing.tiers.router import TierRouter
from interlock.settings import Settings
from interlock.spend.accounting import Accountant
from interlock.spend.ledger import LedgerRecord
from interlock.telemetry.metrics import Metrics
from interlock.types import (
    GatewayRequest,
    GatewayResponse,
    GatewayStream,
    Principal,
    Usage,
)

if TYPE_CHECKING:  # the semantic cache (numpy, usearch) is imported only when enabled
    from interlock.cache.semantic.cache import SemanticCache
    from interlock.cache.semantic.index import Vector


class GatewayBase(ABC):
    settings: Settings
    deployments: dict[str, Deployment]
    catalog: Catalog
    health: DeploymentHealth
    rng: random.Random
    executor: Executor
    affinity: PromptAffinity
    _retry: dict[str, RetryConfig]
    metrics: Metrics
    spend: Accountant
    cache: TieredCache | None
    semantic: SemanticCache | None
    tier_routers: dict[str, TierRouter]
    _embed_batchers: dict[str, EmbeddingBatcher]
    _abandoned: set[asyncio.Task[None]]  # abandoned attempts being recorded

    @abstractmethod
    def plan(self, req: GatewayRequest, route: Route, level: Level) -> Plan: ...

    @abstractmethod
    async def _run(
        self, req: GatewayRequest, route: Route, level: Level
    ) -> GatewayResponse | GatewayStream: ...

    @abstractmethod
    def _cost_candidates(self, route: Route, principal: Principal) -> list[Deployment]: ...

    @abstractmethod
    def _record(
        self,
        req: GatewayRequest,
        principal: Principal,
        alias: str,
        started: float,
        err: InterlockError | None,
        result: GatewayResponse | GatewayStream | None = None,
        cache: str = "miss",
    ) -> LedgerRecord: ...

    @abstractmethod
    async def _semantic_embed(self, texts: list[str]) -> list[Vector]: ...


def record_usage(rec: LedgerRecord, usage: Usage) -> None:
    """Put what the provider reported (or what was counted) for a call on its record."""
    rec.prompt_tokens, rec.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    rec.cached_tokens, rec.reasoning_tokens = usage.cached_tokens, usage.reasoning_tokens
    rec.cache_write_tokens = usage.cache_write_tokens
    rec.cache_write_1h_tokens = usage.cache_write_1h_tokens
    rec.usage_estimated = usage.estimated
