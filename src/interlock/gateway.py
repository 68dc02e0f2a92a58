"""The composition root: builds and owns every long-lived object; ``Gateway.handle``.

The HTTP API, the CLI and (later) the job worker all go through one :class:`Gateway`,
so there is exactly one request path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.auth.service import KeyService, load_or_create_pepper
from interlock.errors import PermissionDenied
from interlock.providers.registry import build_deployments, secrets_of
from interlock.providers.transport import Transport
from interlock.routing.catalog import Catalog, Route
from interlock.routing.executor import Executor
from interlock.settings import Settings
from interlock.storage.engine import create_engine, ping, run_migrations
from interlock.storage.keys import KeyStore
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.redact import Redactor
from interlock.types import GatewayRequest, GatewayResponse, GatewayStream, Principal


@dataclass(frozen=True, slots=True)
class Readiness:
    ok: bool
    checks: dict[str, bool]


class Gateway:
    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.redact = Redactor(secrets_of(settings))
        master = settings.auth.master_key
        if master is not None:
            self.redact.add(master.get_secret_value())
        self.deployments = build_deployments(settings)
        self.catalog = Catalog(settings, self.deployments)
        self.transport = Transport()
        self.executor = Executor(self.transport, self.metrics, self.redact)
        self.engine: AsyncEngine = create_engine(settings.storage)
        pepper_cfg = settings.auth.key_hash_secret
        self.keys = KeyService(
            KeyStore(self.engine),
            load_or_create_pepper(
                pepper_cfg.get_secret_value() if pepper_cfg else None, settings.state_dir
            ),
            master_key=master.get_secret_value() if master else None,
            cache_ttl_s=settings.auth.cache_ttl_s,
        )
        self.started_at = time.time()
        self._started = False

    async def start(self) -> None:
        if self.settings.storage.run_migrations:
            await run_migrations(self.engine, self.settings.storage.db_schema)
        await self.transport.start()
        self._started = True

    async def close(self) -> None:
        self._started = False
        await self.transport.close()
        await self.engine.dispose()

    async def ready(self) -> Readiness:
        checks = {"started": self._started, "storage": await ping(self.engine)}
        return Readiness(all(checks.values()), checks)

    async def authenticate(self, token: str | None) -> Principal:
        return await self.keys.authenticate(token)

    def route_for(self, req: GatewayRequest, principal: Principal) -> Route:
        route = self.catalog.resolve(req.model, req.endpoint)
        if not principal.may_use(route.alias):
            raise PermissionDenied(
                f"This key may not use the model '{route.alias}'",
                code="model_not_allowed",
                param="model",
            )
        return route

    async def handle(
        self, req: GatewayRequest, principal: Principal
    ) -> GatewayResponse | GatewayStream:
        """The request path: plan the route, execute the attempts, account for usage."""
        route = self.route_for(req, principal)
        if req.stream:
            return await self.executor.stream(req, route)
        resp = await self.executor.complete(req, route)
        if resp.usage is not None:
            self.metrics.observe_tokens(
                route.alias, resp.deployment, resp.usage.prompt_tokens, resp.usage.completion_tokens
            )
        return resp

    def stream_finished(self, req: GatewayRequest, stream: GatewayStream) -> None:
        """Accounting for a stream, called once it ended (completed, failed or aborted)."""
        self.metrics.observe_tokens(
            req.model, stream.deployment, stream.usage.prompt_tokens, stream.usage.completion_tokens
        )

    def visible_models(self, principal: Principal) -> list[Route]:
        return [r for r in self.catalog.routes() if principal.may_use(r.alias)]
