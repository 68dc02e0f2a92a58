"""The composition root: builds and owns every long-lived object; ``Gateway.handle``.

The HTTP API, the CLI and (later) the job worker all go through one :class:`Gateway`,
so there is exactly one request path.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import random
import secrets
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.alerts import AlertService, BudgetReading
from interlock.auth.service import KeyService, load_or_create_pepper
from interlock.cache.keys import cache_key
from interlock.cache.memory import MemoryTier
from interlock.cache.policy import CacheDecision, decide
from interlock.cache.redis_tier import RedisTier
from interlock.cache.replay import StreamAssembler, replay_chunks
from interlock.cache.sql_tier import SqlTier
from interlock.cache.tiered import CachedAnswer, Tier, TieredCache
from interlock.errors import (
    Degraded,
    InterlockError,
    PermissionDenied,
    ServiceUnavailable,
    UpstreamProtocolError,
)
from interlock.jobs.notify import load_or_create_webhook_secret
from interlock.localembed import MODEL_NAME as LOCAL_EMBED_MODEL
from interlock.providers.registry import Deployment, build_deployments, secrets_of
from interlock.providers.tokens import estimate_request_tokens
from interlock.providers.transport import Transport
from interlock.resilience.degradation import Level
from interlock.resilience.retry import BudgetConfig, RetryBudget, RetryConfig
from interlock.routing.affinity import PromptAffinity
from interlock.routing.catalog import Catalog, Route
from interlock.routing.embed_batch import Embedded, EmbeddingBatcher
from interlock.routing.executor import Executor, Plan, error_class
from interlock.routing.health import DeploymentHealth
from interlock.routing.ladder import DegradationController
from interlock.routing.loop import Periodic
from interlock.routing.strategies import Candidate, rank
from interlock.routing.tiers.escalation import failed_check
from interlock.routing.tiers.learned import LearnedModel
from interlock.routing.tiers.router import TierChoice, TierRouter, embedding_text
from interlock.settings import Settings
from interlock.spend.accounting import Accountant, Admission
from interlock.spend.enforcer import BudgetEnforcer
from interlock.spend.ledger import LedgerRecord, LedgerWriter
from interlock.spend.limits import Admitted, RateLimits
from interlock.spend.observe import RecordObserver
from interlock.spend.ratelimit import RateLimiter
from interlock.state.base import SharedState
from interlock.state.local import LocalState
from interlock.state.ratelimit_local import LocalRateLimiter
from interlock.state.ratelimit_redis import RedisRateLimiter
from interlock.state.redis import RedisState
from interlock.state.redis_connect import connect as connect_redis
from interlock.state.reservations import LocalReservations, RedisReservations
from interlock.storage.budgets import BudgetStore
from interlock.storage.engine import create_engine, ping, run_migrations
from interlock.storage.keys import KeyStore
from interlock.storage.ledger import LedgerStore
from interlock.telemetry import requestinfo
from interlock.telemetry.logs import body_excerpt
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.redact import Redactor
from interlock.telemetry.tracing import Tracing
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
    from interlock.cache.semantic.cache import Probe, SemanticCache
    from interlock.cache.semantic.index import Vector

log = logging.getLogger("interlock.gateway")


@dataclass(slots=True)
class _CachePlan:
    key: str  # the exact-match key
    decision: CacheDecision
    namespace: str  # the tenant's
    probe: Probe | None = None  # the semantic lookup, remembered with the answer


@dataclass(frozen=True, slots=True)
class Readiness:
    ok: bool
    checks: dict[str, bool]


def _shared_state(settings: Settings) -> SharedState:
    if settings.state.backend == "redis":
        s = settings.state
        return RedisState(s.redis_url, timeout_s=s.redis_timeout_s, prefix=s.key_prefix)
    return LocalState()


class Gateway:
    def __init__(
        self, settings: Settings, *, metrics: Metrics | None = None, tracing: Tracing | None = None
    ) -> None:
        self.settings = settings
        tel = settings.telemetry
        self.metrics = metrics or Metrics(
            enabled=tel.metrics, max_label_values=tel.max_label_values
        )
        self.tracing = tracing or Tracing(tel.tracing)
        self.redact = Redactor(secrets_of(settings))
        master = settings.auth.master_key
        if master is not None:
            self.redact.add(master.get_secret_value())
        for secret in (settings.jobs.webhooks.secret, *(s.secret for s in settings.alerts.sinks)):
            if secret is not None:
                self.redact.add(secret.get_secret_value())
        self.deployments = build_deployments(settings)
        self.metrics.declare_deployments(
            {name: d.settings.max_concurrency for name, d in self.deployments.items()}
        )
        self.catalog = Catalog(settings, self.deployments)
        self.transport = Transport()
        self.shared = _shared_state(settings)
        self.health = DeploymentHealth(settings, self.deployments, self.shared, self.metrics)
        res = settings.resilience
        self.retry_budget = RetryBudget(
            BudgetConfig(res.retry_budget.ratio, res.retry_budget.min_per_s), time.monotonic
        )
        self.rng = random.Random()
        self.executor = Executor(
            self.transport,
            self.health,
            self.metrics,
            self.redact,
            self.retry_budget,
            rng=self.rng,
            tracing=self.tracing,
        )
        self.affinity = PromptAffinity()
        self.tier_routers = _tier_routers(settings)
        self._embed_batchers = {
            r.alias: EmbeddingBatcher(
                self.executor,
                r.spec.embedding_batch.max_batch,
                r.spec.embedding_batch.max_wait_ms / 1000,
            )
            for r in self.catalog.routes()
            if r.kind == "embeddings" and r.spec.embedding_batch.max_batch > 1
        }
        self.ladder = DegradationController(res.degradation, self.health, self.shared, self.metrics)
        self._retry = {
            r.alias: RetryConfig(**(r.spec.retry or res.retry).model_dump())
            for r in self.catalog.routes()
        }
        self.engine: AsyncEngine = create_engine(settings.storage)
        self.spend = self._accountant(settings)
        self.cache = self._cache(settings)
        self.semantic = self._semantic(settings)
        self.limits = self._rate_limits(settings)
        pepper_cfg = settings.auth.key_hash_secret
        self.keys = KeyService(
            KeyStore(self.engine),
            load_or_create_pepper(
                pepper_cfg.get_secret_value() if pepper_cfg else None, settings.state_dir
            ),
            master_key=master.get_secret_value() if master else None,
            cache_ttl_s=settings.auth.cache_ttl_s,
            stale_on_error_s=settings.auth.stale_on_error_s,
        )
        self.alerts = AlertService(
            settings.alerts,
            self.metrics,
            self._budget_readings,
            settings.state_dir,
            default_secret=self._webhook_secret,
        )
        self.started_at = time.time()
        self._started = False
        self._budget_reload: Periodic | None = None
        self._rollup: Periodic | None = None
        self._semantic_sync: Periodic | None = None

    def _accountant(self, settings: Settings) -> Accountant:
        spend = settings.spend
        reservations: LocalReservations | RedisReservations
        if isinstance(self.shared, RedisState):
            reservations = RedisReservations(
                self.shared.client, settings.state.key_prefix, settings.state.redis_timeout_s * 4
            )
        else:
            reservations = LocalReservations()
        ledger_store = LedgerStore(self.engine)
        enforcer = BudgetEnforcer(
            spend,
            reservations,
            ledger_store,
            BudgetStore(self.engine),
            hold_s=spend.reservation_hold_s,
        )
        writer = LedgerWriter(
            ledger_store,
            str(Path(settings.state_dir) / "spool"),
            flush_interval_s=spend.ledger_flush_interval_s,
        )
        return Accountant(
            spend,
            self.deployments,
            enforcer,
            writer,
            on_finish=RecordObserver(self.metrics, spend.reservation_hold_s),
            tracing=self.tracing,
        )

    def _cache(self, settings: Settings) -> TieredCache | None:
        c = settings.cache
        if not c.enabled:
            return None
        tiers: list[Tier] = []
        if c.memory.enabled:
            tiers.append(MemoryTier(c.memory.max_bytes))
        if c.redis.enabled:
            if c.redis.url or not isinstance(self.shared, RedisState):
                client = connect_redis(
                    c.redis.url or settings.state.redis_url, timeout_s=max(0.5, c.tier_timeout_s)
                )
            else:
                client = self.shared.client
            tiers.append(RedisTier(client, settings.state.key_prefix, c.tier_timeout_s))
        if c.sql.enabled:
            tiers.append(SqlTier(self.engine, c.tier_timeout_s))
        if not tiers:
            return None
        return TieredCache(tiers, max_stale_s=settings.resilience.degradation.max_stale_s)

    def _semantic(self, settings: Settings) -> SemanticCache | None:
        cfg = settings.cache.semantic
        wanted = cfg.enabled or any(
            r.spec.cache is not None and r.spec.cache.semantic for r in self.catalog.routes()
        )
        if self.cache is None or not wanted:
            return None
        from interlock.cache.semantic.cache import SemanticCache
        from interlock.cache.semantic.store import SemanticStore

        store = SemanticStore(self.engine) if cfg.backend == "sql" else None
        return SemanticCache(cfg, self._semantic_embed, store=store)

    def _rate_limits(self, settings: Settings) -> RateLimits:
        limiter: RateLimiter
        if isinstance(self.shared, RedisState):
            limiter = RedisRateLimiter(
                self.shared.client, settings.state.key_prefix, settings.state.redis_timeout_s * 4
            )
        else:
            limiter = LocalRateLimiter()
        return RateLimits(settings.spend, limiter)

    async def start(self) -> None:
        if self.settings.storage.run_migrations:
            await run_migrations(self.engine, self.settings.storage.db_schema)
        await self.transport.start()
        await self.shared.start()
        await self.spend.ledger.start()
        try:
            await self.spend.enforcer.reload()
        except Exception as exc:
            # A worker (re)started while the database is down must come up anyway: it
            # serves what it can, refuses budgeted spend until the reload below succeeds.
            log.warning("budgets not loaded at startup (%s); retrying", type(exc).__name__)
        self._budget_reload = Periodic(
            "budget reload", self.spend.enforcer.reload, self.settings.spend.budget_reload_s
        )
        self._budget_reload.start()
        self._rollup = Periodic("ledger roll-up", self._roll_up, 3600.0)
        self._rollup.start()
        if self.semantic is not None and self.settings.cache.semantic.backend == "sql":
            self._semantic_sync = Periodic(
                "semantic cache sync",
                self._sync_semantic,
                self.settings.cache.semantic.sync_interval_s,
            )
            self._semantic_sync.start()
        self.health.start()
        await self.ladder.start()
        self.alerts.start()
        self._started = True

    async def close(self) -> None:
        self._started = False
        await self.alerts.stop()
        self.tracing.shutdown()
        await self.ladder.stop()
        await self.health.stop()
        if self._budget_reload is not None:
            await self._budget_reload.stop()
        if self._rollup is not None:
            await self._rollup.stop()
        if self._semantic_sync is not None:
            await self._semantic_sync.stop()
        if self.semantic is not None:
            await self.semantic.drain()
        await self.spend.ledger.stop()
        await self.shared.close()
        await self.transport.close()
        await self.engine.dispose()

    async def _sync_semantic(self) -> None:
        assert self.semantic is not None
        await self.semantic.sync()

    async def _roll_up(self) -> None:
        """Retention: ledger rows past spend.retention_days become daily aggregates."""
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.spend.retention_days)
        lock_path = Path(self.settings.state_dir) / "rollup.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        # Processes sharing this state dir (SQLite) take turns; PostgreSQL also locks.
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            rolled = await LedgerStore(self.engine).roll_up(cutoff)
        finally:
            os.close(fd)
        if rolled:
            log.info("rolled up %d ledger rows older than %s", rolled, cutoff.date())

    async def ready(self) -> Readiness:
        checks = {
            "started": self._started,
            "storage": await ping(self.engine),
            "budgets": self.spend.enforcer.loaded,
        }
        return Readiness(all(checks.values()), checks)

    async def authenticate(self, token: str | None) -> Principal:
        with self.tracing.span("auth"):
            return await self.keys.authenticate(token)

    async def _budget_readings(self) -> list[BudgetReading]:
        """Every budget's current window, for the budget gauges and the spend alerts
        (computed by the enforcer, which owns the counters)."""
        out = []
        for b in list(self.spend.enforcer.budgets):
            st = await self.spend.enforcer.status(b)
            rem, planned = st["remaining_usd"], st["budget_usd"]
            reading = BudgetReading(
                b.id, b.scope, b.subject, b.window, float(st["spent_usd"]),
                float(planned) if planned is not None else None,
                float(rem) if rem is not None else None,
            )  # fmt: skip
            out.append(reading)
        return out

    def _webhook_secret(self) -> str:
        """Alert webhooks without their own secret are signed like job webhooks."""
        hooks = self.settings.jobs.webhooks
        configured = hooks.secret.get_secret_value() if hooks.secret is not None else None
        return load_or_create_webhook_secret(configured, self.settings.state_dir)[0]

    def route_for(self, req: GatewayRequest, principal: Principal) -> Route:
        route = self.catalog.resolve(req.model, req.endpoint)
        if not principal.may_use(route.alias):
            raise PermissionDenied(
                f"This key may not use the model '{route.alias}'",
                code="model_not_allowed",
                param="model",
            )
        return route

    # -- planning -----------------------------------------------------------------------

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
        if route.spec.prompt_affinity and req.endpoint is Endpoint.CHAT and len(deps) > 1:
            deps = self._prefer_cached_prefix(req, route, deps)
        res = self.settings.resilience
        timeout = self.settings.server.request_timeout_s
        if req.timeout_s is not None:
            timeout = min(
                timeout, max(res.client_timeout_min_s, min(res.client_timeout_max_s, req.timeout_s))
            )
        hedge = (
            route.spec.hedge
            if route.spec.hedge.enabled and not req.stream and level is Level.FULL
            else None
        )
        return Plan(
            route, deps, self._retry[route.alias], time.monotonic() + timeout, hedge, prompt
        )

    # -- the request path -------------------------------------------------------------

    def _admit(self, route: Route, level: Level) -> None:
        if level is Level.FULL or level is Level.LIMITED:
            return
        retry_after = self.settings.resilience.degradation.up_after_s
        if level is Level.MINIMAL and not route.spec.essential:
            raise Degraded(
                f"the gateway is degraded to 'minimal': only essential models are served, "
                f"and '{route.alias}' is not one",
                retry_after=retry_after,
            )
        if level is Level.CACHED and not route.spec.essential:
            # No cache tier is configured in this build, so every request is a miss.
            raise Degraded(
                "the gateway is degraded to 'cached': only cached answers are served, "
                "and this request has none",
                retry_after=retry_after,
            )

    async def handle(
        self, req: GatewayRequest, principal: Principal
    ) -> GatewayResponse | GatewayStream:
        """The request path: admit (degradation, budgets), route, execute, fall back, account."""
        started = time.perf_counter()
        route = await self._tiered(req, self.route_for(req, principal))
        level = self.ladder.effective
        store = self.cache
        logs = self.settings.telemetry.logs
        if logs.bodies and (info := requestinfo.current()) is not None:
            info.body = body_excerpt(req.raw, self.redact, logs.max_body_chars)
        cache = self._cache_plan(req, principal, route) if store is not None else None
        if cache is not None and cache.decision.read:
            assert store is not None
            with self.tracing.span("cache.lookup", **{"interlock.model": route.alias}):
                ans = await store.get(
                    cache.key,
                    max_age_s=cache.decision.max_age_s,
                    allow_stale=level >= Level.CACHED,
                )
            if ans is not None:
                return await self._from_cache(req, principal, route.alias, started, ans)
            threshold = self._semantic_threshold(route)
            if threshold is not None:
                assert self.semantic is not None
                cache.probe = await self.semantic.probe(
                    cache.namespace, route.alias, req.endpoint.value, req.body
                )
                ans = await self._semantic_hit(cache, threshold, level)
                if ans is not None:
                    return await self._from_cache(
                        req, principal, route.alias, started, ans, "hit-semantic"
                    )
            self.metrics.cache_miss(route.alias)
        admission: Admission | None = None
        limited: Admitted | None = None
        flight = (
            cache is not None and cache.decision.read and cache.decision.write and not req.stream
        )
        if flight:
            assert cache is not None
            assert store is not None
            waiting = store.leader(cache.key)
            if waiting is not None:
                # An identical request is already upstream: share its answer (single flight).
                try:
                    led = await asyncio.shield(waiting)
                except InterlockError:
                    led = None  # the leader failed: try for ourselves
                if led is not None:
                    return await self._from_cache(
                        req, principal, route.alias, started, led, "hit-coalesced"
                    )
                flight = False
        try:
            self._admit(route, level)
            limited = await self.limits.admit(
                principal, route.alias, lambda: self._token_estimate(req)
            )
            admission = await self.spend.admit(req, principal, self._cost_candidates(route))
            try:
                result = await self._run(req, route, level)
            except InterlockError as err:
                result = await self._fallback(req, route, level, err)
            if isinstance(result, GatewayResponse) and req.tier_choice is not None:
                result, admission = await self._escalate(
                    req, principal, route, level, started, admission, result
                )
        except InterlockError as err:
            if flight:
                assert cache is not None and store is not None
                store.land(cache.key, error=err)
            await self.limits.finish(limited, None)
            await self.spend.finish(
                admission, Decimal(0), self._record(req, principal, route.alias, started, err)
            )
            raise
        except BaseException:
            if flight:
                assert cache is not None and store is not None
                store.land(
                    cache.key, error=ServiceUnavailable("the coalesced request was cancelled")
                )
            raise
        result.cache = "miss" if cache is not None else "bypass"
        if limited is not None:
            result.headers.extend(limited.headers)
        result.headers.extend(_tier_headers(req))
        if isinstance(result, GatewayStream):
            result.admission, result.principal, result.alias, result.started = (
                admission,
                principal,
                route.alias,
                started,
            )
            result.limits = limited
            if cache is not None and cache.decision.write:
                result.cache_store = (cache, StreamAssembler())
                result.chunks = _teed(result.chunks, result.cache_store[1])
            return result
        await self.limits.finish(limited, result.usage.total_tokens if result.usage else None)
        if req.prompt_digests:
            self.affinity.served(req.prompt_digests, result.deployment)
        result.cost_usd = self.spend.cost(result.deployment, result.usage)
        if cache is not None and store is not None:
            ans = self._cacheable(result.body, result, result.cost_usd, cache.decision.ttl_s)
            if flight:
                store.land(cache.key, ans)
            if ans is not None and cache.decision.write:
                self._store_answer(cache, ans)
        rec = self._record(req, principal, route.alias, started, None, result)
        await self.spend.finish(admission, result.cost_usd, rec)
        if result.usage is not None:
            self.metrics.observe_tokens(
                route.alias,
                result.deployment,
                result.usage.prompt_tokens,
                result.usage.completion_tokens,
            )
        return result

    # -- the answer cache ---------------------------------------------------------------

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
        result.headers.extend(_tier_headers(req))
        rec = self._record(req, principal, alias, started, None, result)
        rec.cache, rec.saved_usd, rec.provider = status, ans.cost_usd, "cache"
        await self.spend.finish(None, Decimal(0), rec)
        self.metrics.cache_hit(alias, status)
        return result

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

    @staticmethod
    def _token_estimate(req: GatewayRequest) -> int:
        """Tokens admitted against TPM limits: the prompt plus the requested output."""
        out = req.body.get("max_completion_tokens") or req.body.get("max_tokens") or 0
        n = req.body.get("n")
        choices = n if isinstance(n, int) and n > 1 else 1
        return estimate_request_tokens(req.body) + (out * choices if isinstance(out, int) else 0)

    def _cost_candidates(self, route: Route) -> list[Deployment]:
        """Every deployment the request might be charged on, fallbacks included."""
        deps = list(route.deployments)
        for fb in route.spec.fallbacks:
            for alias in fb.models:
                other = self.catalog.get(alias)
                if other is not None:
                    deps.extend(other.deployments)
        return deps

    def _record(
        self,
        req: GatewayRequest,
        principal: Principal,
        alias: str,
        started: float,
        err: InterlockError | None,
        result: GatewayResponse | GatewayStream | None = None,
    ) -> LedgerRecord:
        rec = LedgerRecord(
            request_id=req.request_id or "req_" + secrets.token_hex(12),
            endpoint=req.endpoint.value,
            status=err.status if err is not None else 200,
            outcome=err.code if err is not None else "ok",
            key_id=principal.key_id,
            user_id=principal.user,
            team_id=principal.team,
            model=alias,
            stream=req.stream,
            latency_ms=(time.perf_counter() - started) * 1000,
            tier=req.tier,
        )
        # Feature tags on every record (cache hits and refusals included), not only on
        # requests that reached budget admission.
        rec.tags = list(dict.fromkeys((*principal.tags, *req.tags)))
        if result is not None:
            rec.deployment, rec.provider = result.deployment, result.provider
            rec.attempts, rec.fallback = len(result.attempts), result.fallback
            usage = result.usage
            if usage is not None:
                rec.prompt_tokens, rec.completion_tokens = (
                    usage.prompt_tokens,
                    usage.completion_tokens,
                )
                rec.cached_tokens, rec.reasoning_tokens = (
                    usage.cached_tokens,
                    usage.reasoning_tokens,
                )
                rec.usage_estimated = usage.estimated
        return rec

    async def _run(
        self, req: GatewayRequest, route: Route, level: Level
    ) -> GatewayResponse | GatewayStream:
        with self.tracing.span("route", **{"interlock.model": route.alias}):
            plan = self.plan(req, route, level)
        if req.stream:
            return await self.executor.stream(req, plan)
        texts = req.body.get("input")
        if req.endpoint is Endpoint.EMBEDDINGS and route.alias in self._embed_batchers:
            if isinstance(texts, str):
                texts = [texts]
            if isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts):
                if self.cache is not None and req.cache_namespace is not None:
                    return await self._embed_per_text(req, plan, texts)
                return await self._embed_batched(req, plan, texts)
        if (
            req.endpoint is Endpoint.EMBEDDINGS
            and self.cache is not None
            and req.cache_namespace is not None
            and isinstance(texts, list)
            and len(texts) > 1
            and all(isinstance(t, str) for t in texts)
        ):
            return await self._embed_per_text(req, plan, texts)
        return await self.executor.complete(req, plan)

    async def _embed_upstream(self, req: GatewayRequest, plan: Plan, texts: list[str]) -> Embedded:
        """Embed ``texts`` upstream: through the alias's micro-batcher when it has one."""
        batcher = self._embed_batchers.get(plan.route.alias)
        if batcher is not None:
            return await batcher.embed(req, plan, texts)
        sub_body = {**req.body, "input": texts}
        sub = GatewayRequest(
            Endpoint.EMBEDDINGS, req.model, sub_body, b"", request_id=req.request_id
        )
        resp = await self.executor.complete(sub, plan)
        data = orjson.loads(resp.body)
        items = sorted(data.get("data") or (), key=lambda d: d.get("index", 0))
        if len(items) != len(texts):
            raise UpstreamProtocolError("the provider returned a different number of embeddings")
        return Embedded(
            [item.get("embedding") for item in items],
            resp.usage or Usage(0, 0),
            resp.deployment,
            resp.provider,
            resp.attempts,
            str(data.get("model") or req.model),
            len(texts),
        )

    async def _embed_batched(
        self, req: GatewayRequest, plan: Plan, texts: list[str]
    ) -> GatewayResponse:
        got = await self._embed_upstream(req, plan, texts)
        body = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": item}
                for i, item in enumerate(got.items)
            ],
            "model": got.model or req.model,
            "usage": {
                "prompt_tokens": got.usage.prompt_tokens,
                "total_tokens": got.usage.prompt_tokens,
            },
        }
        result = GatewayResponse(
            200, orjson.dumps(body), got.usage, got.deployment, got.provider, got.attempts
        )
        result.headers.append((b"x-interlock-batch-size", str(got.batch_size).encode()))
        return result

    async def _embed_per_text(
        self, req: GatewayRequest, plan: Plan, texts: list[str]
    ) -> GatewayResponse:
        """Embeddings cached per input text: a list with 3 new texts out of 100 costs 3."""
        assert self.cache is not None and req.cache_namespace is not None
        params = {k: v for k, v in req.body.items() if k not in ("input", "model", "user")}
        alias = plan.route.alias
        keys = {
            t: cache_key(req.cache_namespace, alias, "embedding-text", {"input": t, **params})
            for t in texts
        }
        found: dict[str, Any] = {}
        for text, key in keys.items():
            raw = await self.cache.get_value(key)
            if raw is not None:
                found[text] = orjson.loads(raw)
        missing = [t for t in keys if t not in found]
        usage = Usage(0, 0)
        deployment, provider, attempts, model = "cache", "cache", [], req.model
        if missing:
            got = await self._embed_upstream(req, plan, missing)
            ttl = self.settings.cache.ttl_s
            for text, item in zip(missing, got.items, strict=True):
                found[text] = item
                self.cache.put_value(keys[text], orjson.dumps(item), ttl)
            usage = got.usage
            deployment, provider, attempts, model = (
                got.deployment,
                got.provider,
                got.attempts,
                got.model or req.model,
            )
        body = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": found[t]}
                for i, t in enumerate(texts)
            ],
            "model": model,
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
        }
        result = GatewayResponse(200, orjson.dumps(body), usage, deployment, provider, attempts)
        if not missing:
            result.headers.append((b"x-interlock-embedding-cache", b"all"))
        elif len(missing) < len(keys):
            result.headers.append(
                (b"x-interlock-embedding-cache", f"{len(keys) - len(missing)}/{len(keys)}".encode())
            )
        return result

    async def _fallback(
        self, req: GatewayRequest, route: Route, level: Level, err: InterlockError
    ) -> GatewayResponse | GatewayStream:
        cls = error_class(err)
        for fb in route.spec.fallbacks:
            if cls not in fb.on:
                continue
            for alias in fb.models:
                other = self.catalog.get(alias)
                if other is None or other.kind != route.kind:
                    continue
                try:
                    result = await self._run(req, other, level)
                except InterlockError as again:
                    err = again
                    continue
                self.metrics.fallback(route.alias, alias, cls)
                result.fallback = alias
                return result
        raise err

    async def stream_finished(
        self, req: GatewayRequest, stream: GatewayStream, ttft_s: float | None
    ) -> None:
        """Accounting for a stream once it ended: completed, failed mid-way, or aborted by the
        client. Partial streams are charged for what was generated."""
        usage = stream.usage
        await self.limits.finish(stream.limits, usage.total_tokens)
        self.metrics.observe_tokens(
            stream.alias or req.model,
            stream.deployment,
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        if stream.cost_usd is None or not stream.completed:
            stream.cost_usd = self.spend.cost(stream.deployment, usage)
        if stream.principal is None or stream.provider == "cache":
            return
        rec = self._record(req, stream.principal, stream.alias, stream.started, None, stream)
        if stream.completed and req.prompt_digests:
            self.affinity.served(req.prompt_digests, stream.deployment)
        if not stream.completed:
            rec.outcome = stream.error_code or "client_closed"
        elif stream.cache_store is not None:
            plan, assembler = stream.cache_store
            if assembler.complete() and self.cache is not None:
                ans = self._cacheable(
                    assembler.answer(usage), stream, stream.cost_usd, plan.decision.ttl_s
                )
                if ans is not None:
                    self._store_answer(plan, ans)
        rec.ttft_ms = ttft_s * 1000 if ttft_s is not None else None
        await self.spend.finish(stream.admission, stream.cost_usd, rec)

    # -- model selection (tiered aliases: routing/tiers, docs/routing.md) ---------------

    async def _tiered(self, req: GatewayRequest, route: Route) -> Route:
        """A tiered alias: pick the tier and return the route of the alias serving it."""
        router = self.tier_routers.get(route.alias)
        if router is None:
            return route  # a concrete model: no routing, x-interlock-tier is ignored
        embedding = None
        if router.uses_embedding and not req.tier_pin:
            embedding = await self._router_embedding(router, req)
        choice = router.choose(req.body, req.tier_pin, embedding)
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
        up = router.next_up(choice) if failed is not None else None
        upper = self.catalog.get(up.alias) if up is not None else None
        if up is None or upper is None:
            return result, admission
        try:
            again = await self.spend.admit(req, principal, self._cost_candidates(upper))
        except InterlockError:
            return result, admission  # e.g. the budget cannot cover a second call
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
        first.outcome = "escalated"
        await self.spend.finish(admission, self.spend.cost(result.deployment, result.usage), first)
        self.metrics.tier_escalated(req.model, choice.tier, up.tier, str(failed))
        req.tier, req.tier_choice = up.tier, up
        req.tier_reason = f"escalated from {choice.tier} ({failed}); {choice.reason}"[:200]
        better.fallback = up.alias
        better.headers.append((b"x-interlock-escalated", f"{choice.tier}:{failed}".encode()))
        return better, again

    def visible_models(self, principal: Principal) -> list[Route]:
        return [r for r in self.catalog.routes() if principal.may_use(r.alias)]


def _tier_routers(settings: Settings) -> dict[str, TierRouter]:
    """One router per tiered alias (its learned artifact loaded once, at start)."""
    routers = {}
    for alias, spec in settings.models.items():
        if spec.tiers is None:
            continue
        path = spec.tiers.model_path
        routers[alias] = TierRouter(alias, spec.tiers, LearnedModel.load(path) if path else None)
    return routers


def _tier_headers(req: GatewayRequest) -> list[tuple[bytes, bytes]]:
    if req.tier is None:
        return []
    return [
        (b"x-interlock-tier", req.tier.encode()),
        (b"x-interlock-route-reason", (req.tier_reason or "").encode()),
    ]


async def _one_batch(chunks: list[Chunk]) -> AsyncGenerator[list[Chunk], None]:
    yield chunks


async def _teed(
    source: AsyncGenerator[list[Chunk], None], assembler: StreamAssembler
) -> AsyncGenerator[list[Chunk], None]:
    """Pass a stream through while collecting it into the answer to cache."""
    try:
        async for batch in source:
            for chunk in batch:
                assembler.feed(chunk.obj)
            yield batch
    finally:
        await source.aclose()
