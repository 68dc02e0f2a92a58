"""What the request-path parts of :class:`~interlock.gateway.core.Gateway` share.

The gateway is split along what it holds: the answer cache (``answers.py``), the
embeddings paths (``embeddings.py``), model-tier selection (``tiers.py``) and the core
request path (``core.py``). Each part is a mixin over this base, which names the
long-lived objects they use and the core methods they call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from interlock.cache.tiered import TieredCache
from interlock.errors import (
    InterlockError,
)
from interlock.providers.registry import Deployment
from interlock.resilience.degradation import Level
from interlock.routing.catalog import Catalog, Route
from interlock.routing.embed_batch import EmbeddingBatcher
from interlock.routing.executor import Executor, Plan
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
)

if TYPE_CHECKING:  # the semantic cache (numpy, usearch) is imported only when enabled
    from interlock.cache.semantic.cache import SemanticCache
    from interlock.cache.semantic.index import Vector


class GatewayBase(ABC):
    settings: Settings
    catalog: Catalog
    executor: Executor
    metrics: Metrics
    spend: Accountant
    cache: TieredCache | None
    semantic: SemanticCache | None
    tier_routers: dict[str, TierRouter]
    _embed_batchers: dict[str, EmbeddingBatcher]

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
    ) -> LedgerRecord: ...

    @abstractmethod
    async def _semantic_embed(self, texts: list[str]) -> list[Vector]: ...
