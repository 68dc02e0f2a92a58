"""The composition root: builds and owns every long-lived object; ``Gateway.handle``.

The HTTP API, the CLI and the job workers all go through one :class:`Gateway`, so there
is exactly one request path. The answer cache, the embeddings paths, model-tier
selection, planning, and intents and abandoned attempts live beside this module
(``answers.py``, ``embeddings.py``, ``tiers.py``, ``planning.py``, ``abandoned.py``).
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
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.alerts import AlertService, BudgetReading
from interlock.auth.service import KeyService, load_or_create_pepper
from interlock.cache.memory import MemoryTier
from interlock.cache.quota import quota_for
from interlock.cache.redis_tier import RedisTier
from interlock.cache.replay import StreamAssembler
from interlock.cache.sql_tier import SqlTier
from interlock.cache.tiered import Tier, TieredCache
from interlock.errors import (
    Degraded,
    InterlockError,
    PermissionDenied,
    ServiceUnavailable,
)
from interlock.gateway.abandoned import AbandonedPath
from interlock.gateway.answers import AnswerCachePath
from interlock.gateway.base import record_usage
from interlock.gateway.embeddings import EmbeddingsPath
from interlock.gateway.planning import PlanningPath
from interlock.gateway.tiers import TierPath, tier_headers, tier_routers_for
from interlock.jobs.notify import load_or_create_webhook_secret
from interlock.providers.registry import Deployment, build_deployments, secrets_of
from interlock.providers.tokens import encoding, estimate_request_tokens
from interlock.providers.transport import Transport
from interlock.resilience.degradation import Level
from interlock.resilience.retry import BudgetConfig, RetryBudget, RetryConfig
from interlock.routing.affinity import PromptAffinity
from interlock.routing.attempts import error_class
from interlock.routing.catalog import Catalog, Route
from interlock.routing.embed_batch import EmbeddingBatcher
from interlock.routing.executor import Executor
from interlock.routing.health import DeploymentHealth
from interlock.routing.ladder import DegradationController
from interlock.routing.loop import Periodic
from interlock.settings import Settings
from interlock.spend.accounting import Accountant, Admission, cut_by_gateway
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
from interlock.storage.engine import create_engine, ping, run_migrations, sqlite_path
from interlock.storage.files import private_dir, secure_state
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
)

if TYPE_CHECKING:  # the semantic cache (numpy, usearch) is imported only when enabled
    from interlock.cache.semantic.cache import SemanticCache

log = logging.getLogger("interlock.gateway")


@dataclass(frozen=True, slots=True)
class Readiness:
    ok: bool
    checks: dict[str, bool]


def _shared_state(settings: Settings) -> SharedState:
    if settings.state.backend == "redis":
        s = settings.state
        return RedisState(
            s.redis_url,
            timeout_s=s.redis_timeout_s,
            max_s=s.redis_timeout_max_s,
            prefix=s.key_prefix,
        )
    return LocalState()


class Gateway(AnswerCachePath, EmbeddingsPath, TierPath, PlanningPath, AbandonedPath):
    def __init__(
        self, settings: Settings, *, metrics: Metrics | None = None, tracing: Tracing | None = None
    ) -> None:
        self.settings = settings
        tel = settings.telemetry
        self.metrics = metrics or Metrics(
            enabled=tel.metrics,
            max_label_values=tel.max_label_values,
            max_label_values_per_tenant=tel.max_label_values_per_tenant,
        )
        self.tracing = tracing or Tracing(tel.tracing)
        self.redact = Redactor(secrets_of(settings))
        master = settings.auth.master_key
        if master is not None:
            self.redact.add(master.get_secret_value())
        for secret in (
            settings.jobs.webhooks.secret,
            tel.metrics_token,
            *(s.secret for s in settings.alerts.sinks),
        ):
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
        self.tier_routers = tier_routers_for(settings)
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
        self.app_quota = quota_for(
            settings.cache.app.max_bytes_per_tenant,
            self.cache,
            self.shared.client if isinstance(self.shared, RedisState) else None,
            settings.state.key_prefix,
            settings.state.redis_timeout_s,
            settings.state.redis_timeout_max_s,
        )
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
        self._abandoned: set[asyncio.Task[None]] = set()  # abandoned attempts being recorded

    def _accountant(self, settings: Settings) -> Accountant:
        spend = settings.spend
        reservations: LocalReservations | RedisReservations
        if isinstance(self.shared, RedisState):
            reservations = RedisReservations(
                self.shared.client,
                settings.state.key_prefix,
                settings.state.redis_timeout_s,
                calls=self.shared.calls,
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
            replay_settle=enforcer.apply_replayed,
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
                self.shared.client, settings.state.key_prefix, calls=self.shared.calls
            )
        else:
            limiter = LocalRateLimiter()
        return RateLimits(settings.spend, limiter)

    async def start(self) -> None:
        # The tokenizer that charges aborted and cut streams is loaded now, before any
        # traffic, in a thread next to the rest of startup: loading it costs ~0.2 s of
        # CPU that holds the GIL, and on first need mid-traffic that stalled the event
        # loop while providers kept generating into unread sockets, so the first aborts
        # of a fresh worker were charged low (docs/decisions.md, "Tokenizer at startup").
        tokenizer = asyncio.ensure_future(asyncio.to_thread(encoding))
        # State files are private (0600/0700): what an older version left readable by
        # other users is tightened now, with a warning (storage/files.py).
        secure_state(self.settings.state_dir, sqlite_path(self.settings.storage.url))
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
        await tokenizer
        self._started = True

    async def close(self) -> None:
        self._started = False
        await self._let_abandoned_end()  # recorded before the ledger stops
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
        await self.spend.enforcer.close()  # pending settlements: a last try, then the spool
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
        lock_path = private_dir(self.settings.state_dir) / "rollup.lock"
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
        route = await self._tiered(req, self.route_for(req, principal), principal)
        level = self.ladder.effective
        store = self.cache
        logs = self.settings.telemetry.logs
        if logs.bodies and (info := requestinfo.current()) is not None:
            info.body = body_excerpt(req.raw, self.redact, logs.max_body_chars)
        cache = self._cache_plan(req, principal, route) if store is not None else None
        # x-interlock-cache, the ledger and the access log say the same: "bypass" when the
        # cache is not involved (disabled, bypassed by the client, not cacheable), "miss"
        # when it was (looked up or refreshed) and the answer comes from upstream.
        cache_status = "miss" if cache is not None else "bypass"
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
            candidates = self._cost_candidates(route, principal)
            admission = await self.spend.admit(req, principal, candidates)
            self._track_billing(req, principal, route.alias, started, admission, candidates)
            routed = time.perf_counter()
            try:
                result = await self._run(req, route, level)
            except InterlockError as err:
                result = await self._fallback(req, principal, route, level, err)
            result.cache = cache_status
            if isinstance(result, GatewayResponse) and req.tier_choice is not None:
                result, admission = await self._escalate(
                    req, principal, route, level, started, admission, result
                )
            # The ladder hears upstream outcomes only (routing/ladder.py): the time the
            # upstreams took (a stream's first chunk), not the client's.
            self.ladder.served(time.perf_counter() - routed)
        except InterlockError as err:
            self.ladder.failed(err)  # counted only if it blames the upstream
            if flight:
                assert cache is not None and store is not None
                store.land(cache.key, error=err)
            await self.limits.finish(limited, None)
            await self.spend.finish(
                admission,
                Decimal(0),
                self._record(req, principal, route.alias, started, err, cache=cache_status),
            )
            raise
        except BaseException:
            if flight:
                assert cache is not None and store is not None
                store.land(
                    cache.key, error=ServiceUnavailable("the coalesced request was cancelled")
                )
            raise
        result.attempts = req.attempts  # every upstream attempt, fallback aliases included
        result.cache = cache_status
        if limited is not None:
            result.headers.extend(limited.headers)
        result.headers.extend(tier_headers(req))
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
            ans = (
                None
                if cut_by_gateway(admission, result.body)
                else self._cacheable(result.body, result, result.cost_usd, cache.decision.ttl_s)
            )
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

    @staticmethod
    def _token_estimate(req: GatewayRequest) -> int:
        """Tokens admitted against TPM limits: the prompt plus the requested output."""
        out = req.body.get("max_completion_tokens") or req.body.get("max_tokens") or 0
        n = req.body.get("n")
        choices = n if isinstance(n, int) and n > 1 else 1
        return estimate_request_tokens(req.body) + (out * choices if isinstance(out, int) else 0)

    def _cost_candidates(self, route: Route, principal: Principal) -> list[Deployment]:
        """Every deployment the request might be charged on, fallbacks included (those
        the key may use: ``_fallback`` never tries the others)."""
        deps = list(route.deployments)
        for fb in route.spec.fallbacks:
            for alias in fb.models:
                other = self.catalog.get(alias)
                if other is not None and principal.may_use(alias):
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
        cache: str = "miss",
    ) -> LedgerRecord:
        """The request's ledger record; ``cache`` is its cache status when there is no
        ``result`` (a failure): the same value x-interlock-cache would have said."""
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
            attempts=len(req.attempts),
            cache=result.cache if result is not None else cache,
        )
        # Feature tags on every record (cache hits and refusals included), not only on
        # requests that reached budget admission.
        rec.tags = list(dict.fromkeys((*principal.tags, *req.tags)))
        rec.label_tags = principal.tags
        if result is not None:
            rec.deployment, rec.provider = result.deployment, result.provider
            rec.attempts, rec.fallback = len(result.attempts), result.fallback
            if result.usage is not None:
                record_usage(rec, result.usage)
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

    async def _fallback(
        self,
        req: GatewayRequest,
        principal: Principal,
        route: Route,
        level: Level,
        err: InterlockError,
    ) -> GatewayResponse | GatewayStream:
        cls = error_class(err)
        for fb in route.spec.fallbacks:
            if cls not in fb.on:
                continue
            for alias in fb.models:
                other = self.catalog.get(alias)
                if other is None or other.kind != route.kind:
                    continue
                # The key's model allowlist holds on every path: an alias it may not use
                # is skipped, not tried (the client sees the primary's error instead).
                if not principal.may_use(alias):
                    continue
                try:
                    result = await self._run(req, other, level)
                except InterlockError as again:
                    if again.code in ("budget_exceeded", "budget_state_unavailable"):
                        # The budget cannot cover another billable call (the attempt hook
                        # refused it): stop here, with the last upstream error.
                        raise err from None
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
            answer = assembler.answer(usage) if assembler.complete() else None
            if answer is not None and not cut_by_gateway(stream.admission, answer):
                ans = self._cacheable(answer, stream, stream.cost_usd, plan.decision.ttl_s)
                if ans is not None and self.cache is not None:
                    self._store_answer(plan, ans)
        rec.ttft_ms = ttft_s * 1000 if ttft_s is not None else None
        await self.spend.finish(stream.admission, stream.cost_usd, rec)

    def visible_models(self, principal: Principal) -> list[Route]:
        return [r for r in self.catalog.routes() if principal.may_use(r.alias)]


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
