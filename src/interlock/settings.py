"""Typed, frozen configuration: one YAML file, ``${ENV}`` interpolation, unknown keys are errors.

``load_settings(path)`` is the only reader of the file; everything downstream receives a
:class:`Settings` value. Validation errors name the file, the field path and what was
expected (:class:`ConfigError`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

ProviderKind = Literal[
    "openai", "azure", "openai_compatible", "anthropic", "gemini", "vertex", "bedrock"
]
DeploymentKind = Literal["chat", "embeddings", "completions"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=256)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=64, ge=4, le=1000)
    max_n: int = Field(default=8, ge=1, le=128)
    max_tokens_limit: int = Field(default=1_000_000, ge=1)
    # The ceiling for one request end to end; a deployment's own timeouts are tighter.
    request_timeout_s: float = Field(default=600.0, gt=0)
    access_log: bool = False
    # --workers N: a worker that does not answer the supervisor's ping for this long is
    # killed and replaced (uvicorn's default of 5 s kills healthy workers on a busy host).
    worker_healthcheck_s: int = Field(default=30, ge=1, le=600)
    # Slow clients (cli/http_server.py, api/http.py): a request head (request line and
    # headers) must arrive within header_timeout_s of its first byte (of the connection,
    # for the first request), a body within body_timeout_s of the head; each process
    # holds at most max_connections connections (more: 503 and close).
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    body_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    max_connections: int = Field(default=1000, ge=1, le=1_000_000)
    # SIGTERM: new requests get 503 draining (Retry-After, Connection: close) while the
    # ones in flight (streams included) finish, for at most this long.
    drain_timeout_s: float = Field(default=30.0, ge=0, le=3600)


class StorageSettings(_Model):
    # The embedded default; PostgreSQL via "postgresql+asyncpg://user@host/db".
    url: str = "sqlite+aiosqlite:///./.interlock/interlock.db"
    pool_size: int = Field(default=5, ge=1, le=200)
    run_migrations: bool = True
    # PostgreSQL only: the schema (search_path) Interlock's tables live in.
    db_schema: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")


class AuthSettings(_Model):
    master_key: SecretStr | None = None
    # Secret mixed into every key hash ("pepper"); separate from any other secret.
    # Unset: generated once and kept in <state_dir>/key_hash_secret (mode 0600).
    key_hash_secret: SecretStr | None = None
    # How long a process trusts a verified key before re-reading it; bounds how long a
    # revoked key keeps working in any process.
    cache_ttl_s: float = Field(default=2.0, ge=0.0, le=60.0)
    # While the key store is unreachable, a key verified within this is still accepted.
    stale_on_error_s: float = Field(default=300.0, ge=0.0)


class PriceSettings(_Model):
    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)


class UsageApiSettings(_Model):
    """A provider's own usage API, read by ``interlock spend reconcile`` (spend/reconcile.py)
    to replace the worst-case cost of requests lost with a replica by what was billed."""

    # openai: GET {url}/organization/usage/completions (and /embeddings), 1-minute buckets.
    kind: Literal["openai"] = "openai"
    # The API root; "" = the provider's base_url up to /v1 (https://api.openai.com/v1).
    url: str = ""
    admin_key: SecretStr | None = None  # OpenAI: an admin key (sk-admin-...), not a project key
    # Only this usage is the gateway's: set them when the organization has other traffic.
    api_key_ids: tuple[str, ...] = ()
    project_ids: tuple[str, ...] = ()
    # Providers fill recent buckets late: minutes younger than this are left for later.
    settle_delay_s: float = Field(default=600.0, ge=0, le=86400)


class ProviderSettings(_Model):
    kind: ProviderKind
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_version: str | None = None  # azure: api-version query; gemini/vertex: API version path
    region: str | None = None  # bedrock, vertex
    project: str | None = None  # vertex
    credentials_file: str | None = None  # vertex service-account JSON
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    anthropic_version: str = "2023-06-01"
    # Opt-in: reconcile replica_lost ledger rows against the provider's usage API.
    usage_api: UsageApiSettings | None = None

    @model_validator(mode="after")
    def _kind_needs(self) -> ProviderSettings:
        if self.kind in ("azure", "openai_compatible") and not self.base_url:
            raise ValueError(f"base_url is required for kind {self.kind!r}")
        if self.kind == "vertex" and not (self.project and self.region):
            raise ValueError("project and region are required for kind 'vertex'")
        if self.kind == "bedrock" and not self.region:
            raise ValueError("region is required for kind 'bedrock'")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return self


class TimeoutSettings(_Model):
    connect_s: float = Field(default=5.0, gt=0)
    # Until the upstream's response headers arrive (streams: then idle_s per chunk).
    # None: by kind — streams 15 s, embeddings 10 s, a non-streamed answer 10 s + 1 s per
    # 35 output tokens the request may generate (routing/executor.py auto_first_byte_s).
    first_byte_s: float | None = Field(default=None, gt=0)
    # Longest silence between two stream chunks.
    idle_s: float = Field(default=60.0, gt=0)
    total_s: float = Field(default=600.0, gt=0)


class DeploymentSettings(_Model):
    provider: str
    model: str  # the upstream's model name (Azure: the deployment name)
    kind: DeploymentKind = "chat"
    base_url: str | None = None
    api_key: SecretStr | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    max_concurrency: int | None = Field(default=None, ge=1)
    context_window: int | None = Field(default=None, ge=1)
    # The model's largest output per completion: the gateway never injects a larger cap.
    max_output_tokens: int | None = Field(default=None, ge=1)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    price: PriceSettings | None = None
    weight: float = Field(default=1.0, ge=0)
    breaker: BreakerSettings | None = None  # default: resilience.breaker
    # Switched off at the 'limited' degradation level and below.
    expensive: bool = False
    # Anthropic deployments: insert cache_control markers on the stable prompt prefix.
    prompt_caching: bool = False


class BreakerSettings(_Model):
    window_s: float = Field(default=30.0, gt=0)
    min_calls: int = Field(default=10, ge=1)
    failure_rate: float = Field(default=0.5, gt=0, le=1)
    consecutive_failures: int = Field(default=5, ge=1)
    slow_call_s: float = Field(default=30.0, gt=0)
    slow_rate: float = Field(default=1.01, gt=0)  # above 1: slow calls alone never trip
    open_s: float = Field(default=5.0, gt=0)
    open_max_s: float = Field(default=120.0, gt=0)
    backoff: float = Field(default=2.0, ge=1)
    half_open_probes: int = Field(default=1, ge=1)
    probe_timeout_s: float = Field(default=10.0, gt=0)


class RetrySettings(_Model):
    max_attempts: int = Field(default=3, ge=1, le=10)
    base_delay_s: float = Field(default=0.05, ge=0)
    max_delay_s: float = Field(default=2.0, ge=0)
    max_retry_after_s: float = Field(default=10.0, ge=0)


ErrorClass = Literal["rate_limit", "server_error", "timeout", "context_window", "content_policy"]


class FallbackSettings(_Model):
    on: tuple[ErrorClass, ...] = ("rate_limit", "server_error", "timeout")
    models: tuple[str, ...] = Field(min_length=1)  # other aliases, tried in order


class HedgeSettings(_Model):
    enabled: bool = False
    quantile: float = Field(default=0.95, gt=0, lt=1)
    min_delay_s: float = Field(default=0.05, ge=0)
    max_delay_s: float = Field(default=10.0, gt=0)


class RouteCacheSettings(_Model):
    enabled: bool = True
    ttl_s: float | None = Field(default=None, gt=0)  # default: cache.ttl_s
    # temperature_zero: only requests with temperature 0 (and embeddings); any: all.
    cacheable: Literal["temperature_zero", "any"] | None = None
    semantic: bool | None = None  # match by meaning on this route (default: cache.semantic)
    semantic_threshold: float | None = Field(default=None, gt=0, le=1)


class EmbeddingBatchSettings(_Model):
    # Combine concurrent embeddings requests into one upstream call of up to this many
    # texts (0 or 1: off), waiting at most max_wait_ms for others to join.
    max_batch: int = Field(default=0, ge=0, le=2048)
    max_wait_ms: float = Field(default=2.0, ge=0, le=100)


Strategy = Literal["priority", "weighted", "least_latency", "least_busy", "lowest_cost"]


class SpecializedTierSettings(_Model):
    model: str  # the alias (route group) that serves this tier
    # What the tier is for; matched by meaning when the learned router is enabled.
    description: str = Field(min_length=1)
    keywords: tuple[str, ...] = ()  # whole words/phrases, case-insensitive
    patterns: tuple[str, ...] = ()  # regular expressions, matched per message

    @model_validator(mode="after")
    def _patterns_compile(self) -> SpecializedTierSettings:
        for p in self.patterns:
            try:
                re.compile(p)
            except re.error as exc:
                # The pattern itself is not echoed: no configuration value ever is.
                raise ValueError(
                    f"patterns[{self.patterns.index(p)}] is not a valid regular expression: "
                    f"{exc.msg} at position {exc.pos}"
                ) from None
        return self


EscalationCheck = Literal["empty", "refusal", "invalid_json", "tool_arguments"]


class TierSettings(_Model):
    # The aliases serving each size; a tier left out is served by the next larger one.
    small: str | None = None
    medium: str | None = None
    large: str | None = None
    specialized: dict[str, SpecializedTierSettings] = Field(default_factory=dict)
    # The quality/cost knob: above 0 fewer requests go small and more go large.
    quality_bias: float = Field(default=0.0, ge=-1.0, le=1.0)
    # Retry a non-streamed answer once on the next tier up when it fails a cheap check.
    escalate: bool = False
    escalate_on: tuple[EscalationCheck, ...] = (
        "empty",
        "refusal",
        "invalid_json",
        "tool_arguments",
    )
    # A learned router artifact (`interlock router train`); null: the feature path only.
    model_path: str | None = None
    # Learned path: cosine similarity to a specialised tier's description that selects it.
    specialized_similarity: float = Field(default=0.45, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _some_tier(self) -> TierSettings:
        if not (self.small or self.medium or self.large):
            raise ValueError("set at least one of small, medium and large")
        return self


class AliasSettings(_Model):
    deployments: tuple[str, ...] = ()  # at least one, unless the alias has tiers
    description: str = ""
    strategy: Strategy = "priority"
    retry: RetrySettings | None = None  # default: resilience.retry
    fallbacks: tuple[FallbackSettings, ...] = ()
    hedge: HedgeSettings = Field(default_factory=HedgeSettings)
    # Served at the 'minimal' degradation level.
    essential: bool = False
    # At 'limited' and below, only these deployments (default: those not marked expensive).
    limited_deployments: tuple[str, ...] | None = None
    cache: RouteCacheSettings | None = None  # default: the global cache settings
    # Send a conversation that extends an earlier prompt to the deployment that served
    # it (its provider-side prompt cache), when that prefix is at least this long.
    prompt_affinity: bool = False
    prompt_affinity_min_tokens: int = Field(default=1024, ge=0)
    # Embeddings models: micro-batch concurrent requests (one upstream call, shares billed).
    embedding_batch: EmbeddingBatchSettings = Field(default_factory=EmbeddingBatchSettings)
    # Model selection: each request goes to the cheapest adequate tier's alias.
    tiers: TierSettings | None = None

    @model_validator(mode="after")
    def _deployments_or_tiers(self) -> AliasSettings:
        if not self.deployments and self.tiers is None:
            raise ValueError("deployments: at least one is required (or tiers)")
        if self.deployments and self.tiers is not None:
            raise ValueError("an alias has either deployments or tiers, not both")
        return self


class BudgetSettings(_Model):
    ratio: float = Field(default=0.2, ge=0)
    min_per_s: float = Field(default=5.0, ge=0)


class ThresholdSettings(_Model):
    limited: float | None = None
    cached: float | None = None
    minimal: float | None = None


def _default_signals() -> dict[str, ThresholdSettings]:
    return {
        "error_rate": ThresholdSettings(limited=0.10, cached=0.30, minimal=0.60),
        "open_circuit_ratio": ThresholdSettings(limited=0.34, cached=0.67, minimal=1.0),
        "queue_depth": ThresholdSettings(limited=1000, cached=10000),
        "latency_ratio": ThresholdSettings(limited=2.0, cached=5.0),
        "budget_burn": ThresholdSettings(limited=1.2, cached=1.5),
    }


class DegradationSettings(_Model):
    mode: Literal["auto", "full", "limited", "cached", "minimal"] = "auto"
    evaluate_every_s: float = Field(default=1.0, gt=0)
    # Error rate and latency are measured over it; short, so that errors of a cause that has
    # gone away stop counting within seconds (docs/decisions.md: ladder recovery).
    window_s: float = Field(default=5.0, gt=0)
    min_requests: int = Field(default=20, ge=1)  # fewer in the window: error rate not judged
    latency_slo_s: float | None = Field(default=None, gt=0)
    down_after_s: float = Field(default=5.0, ge=0)
    up_after_s: float = Field(default=2.0, ge=0)  # calm needed per level stepped up
    recover_ratio: float = Field(default=0.5, gt=0, le=1)
    max_stale_s: float = Field(default=3600.0, ge=0)
    signals: dict[str, ThresholdSettings] = Field(default_factory=_default_signals)


class ResilienceSettings(_Model):
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    retry_budget: BudgetSettings = Field(default_factory=BudgetSettings)
    degradation: DegradationSettings = Field(default_factory=DegradationSettings)
    # Bounds for a client's x-interlock-timeout header (seconds).
    client_timeout_min_s: float = Field(default=1.0, gt=0)
    client_timeout_max_s: float = Field(default=600.0, gt=0)


def _check_tz(name: str | None) -> None:
    if name is None:
        return
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown time zone (use an IANA name such as 'Europe/Berlin')") from None


BudgetScope = Literal["key", "user", "team", "tag", "global"]
BudgetWindow = Literal["daily", "weekly", "monthly", "lifetime"]


class BudgetRule(_Model):
    scope: BudgetScope
    subject: str | None = None  # the key id, user, team or tag; None for global
    window: BudgetWindow = "monthly"
    # At most a billion dollars (storage.budgets.MAX_USD: the columns and Redis counters).
    limit_usd: float | None = Field(default=None, ge=0, le=1e9)  # hard: refused once reached
    budget_usd: float | None = Field(default=None, ge=0, le=1e9)  # planned: alerts only
    timezone: str | None = None  # default: spend.timezone

    @model_validator(mode="after")
    def _subject(self) -> BudgetRule:
        _check_tz(self.timezone)
        if (self.scope == "global") != (self.subject is None):
            raise ValueError("subject is required, except for scope 'global' which has none")
        if self.limit_usd is None and self.budget_usd is None:
            raise ValueError("set limit_usd (hard limit), budget_usd (planned), or both")
        return self


class UnknownPriceSettings(_Model):
    action: Literal["block", "allow"] = "block"
    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)


class RateLimitSettings(_Model):
    scope: Literal["key", "user", "team", "model", "global"]
    subject: str | None = None
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    max_concurrency: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _subject(self) -> RateLimitSettings:
        if (self.scope == "global") != (self.subject is None):
            raise ValueError("subject is required, except for scope 'global' which has none")
        return self


class SpendSettings(_Model):
    timezone: str = "UTC"  # calendar windows (daily/weekly/monthly) are aligned in it

    @model_validator(mode="after")
    def _tz(self) -> SpendSettings:
        _check_tz(self.timezone)
        return self

    budgets: tuple[BudgetRule, ...] = ()
    rate_limits: tuple[RateLimitSettings, ...] = ()
    unknown_price: UnknownPriceSettings = Field(default_factory=UnknownPriceSettings)
    # The output cap the gateway sets on a request without max_tokens that a hard limit
    # applies to (smaller when the budget's remainder or the model allow less).
    default_max_output_tokens: int = Field(default=4096, ge=1)
    # When the shared state (Redis) cannot be reached: refuse (closed) or admit (open).
    hard_limits_on_state_error: Literal["fail_closed", "fail_open"] = "fail_closed"
    rate_limits_on_state_error: Literal["fail_closed", "fail_open"] = "fail_open"
    retention_days: int = Field(default=90, ge=1)
    ledger_flush_interval_s: float = Field(default=0.2, gt=0)
    # A reservation not settled within this is charged at its reserved amount (a crashed
    # replica's holds); a late settle corrects it to the actual cost.
    reservation_hold_s: float = Field(default=900.0, gt=0)
    # While Redis is unreachable, each process may admit up to this much worst-case spend
    # per hard-limited budget on its own (within the counter it last saw), charged into the
    # counters when Redis is back. 0: strict, refuse (503 budget_state_unavailable).
    state_unavailable_allowance_usd: float = Field(default=0.0, ge=0, le=1_000_000)
    # Settlements waiting for Redis, per process; past it one is dropped (its hold is then
    # charged at the reserved amount when it expires).
    settle_queue_max: int = Field(default=100_000, ge=1)
    # Budgets created through the admin API reach every process within this.
    budget_reload_s: float = Field(default=2.0, gt=0, le=300)
    # fail_open is bounded: while Redis is down each process enforces this share of
    # every rate limit on its own (spend/limits.py).
    rate_limits_local_share: float = Field(default=1.0, gt=0, le=1)


class CacheTierSettings(_Model):
    enabled: bool = False
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)  # memory tier only


class RedisCacheTierSettings(CacheTierSettings):
    # "" = state.redis_url. redis://, redis+sentinel://h:p,h:p/service/db or
    # redis+cluster://h:p,h:p (state/redis_connect.py).
    url: str = ""


class SemanticCacheSettings(_Model):
    # Off by default: a near-duplicate answer is a product decision, made per route.
    enabled: bool = False
    # Cosine similarity a candidate must reach before the guards check it
    # (numbers, negations, entities, formats, ...: docs/semantic-cache.md).
    threshold: float = Field(default=0.75, gt=0, le=1)
    # The embeddings deployment that embeds lookups; "" = the local model
    # (deployment "local-minilm") when interlock[local] is installed.
    embedder: str = ""
    # last_turn: earlier turns (system prompt included) must match exactly, only the last
    # user turn is compared by meaning. conversation: the whole conversation is embedded.
    context: Literal["last_turn", "conversation"] = "last_turn"
    # Where vectors live: memory (this process, usearch) or sql (shared by every replica
    # through the storage database; each replica searches its own in-process index).
    backend: Literal["memory", "sql"] = "memory"
    max_entries: int = Field(default=1_000_000, ge=1)
    # Embedding a lookup is bounded by this; past it the request is a plain miss.
    embed_timeout_s: float = Field(default=0.5, gt=0, le=10)
    sync_interval_s: float = Field(default=1.0, gt=0, le=60)  # backend sql: tail of others' writes


class LocalEmbeddingSettings(_Model):
    # auto: start the local embedding model (a child process) when interlock[local] is
    # installed and something uses it; true: required; false: never.
    enabled: Literal["auto", "true", "false"] = "auto"
    url: str = ""  # an already running local embedding server instead of a child process
    max_batch: int = Field(default=64, ge=1, le=2048)
    max_wait_ms: float = Field(default=3.0, ge=0, le=100)
    threads: int = Field(default=0, ge=0)  # torch threads; 0: its default


class AppCacheSettings(_Model):
    """The application cache (``/v1/cache/...``): what one tenant may keep there."""

    # Bytes a tenant (its team, or its key) may hold at once: each value counts its size,
    # its name and 256 bytes of overhead until it expires or is deleted. Shared by every
    # replica through Redis when Redis is configured.
    max_bytes_per_tenant: int = Field(default=8 * 1024 * 1024, ge=1024)
    default_ttl_s: float = Field(default=3600.0, gt=0)  # a write without ttl (capped by max)
    max_ttl_s: float = Field(default=86400.0, gt=0, le=30 * 86400)


class CacheSettings(_Model):
    enabled: bool = True
    # Whose entries a request may see: its team's (keys without a team: their own), or
    # only its own key's. Never another tenant's.
    namespace: Literal["team", "key"] = "team"
    ttl_s: float = Field(default=3600.0, gt=0)
    cacheable: Literal["temperature_zero", "any"] = "temperature_zero"
    max_entry_bytes: int = Field(default=1024 * 1024, ge=1024)
    memory: CacheTierSettings = Field(default_factory=lambda: CacheTierSettings(enabled=True))
    redis: RedisCacheTierSettings = Field(default_factory=RedisCacheTierSettings)
    sql: CacheTierSettings = Field(default_factory=CacheTierSettings)  # uses storage.url
    # Bound on every tier call: a tier that is down or slow is a miss, never an error.
    tier_timeout_s: float = Field(default=0.05, gt=0, le=5)
    semantic: SemanticCacheSettings = Field(default_factory=SemanticCacheSettings)
    app: AppCacheSettings = Field(default_factory=AppCacheSettings)


class StateSettings(_Model):
    # local: state in this process (one replica); redis: shared by every replica.
    backend: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Every Redis call may take this much of Redis's own time (event-loop lag is added
    # back, state/redis_call.py), and never more than redis_timeout_max_s in wall-clock
    # time; past it Redis counts as down and calls fail fast until a probe succeeds.
    redis_timeout_s: float = Field(default=0.25, gt=0, le=5)
    redis_timeout_max_s: float = Field(default=1.0, gt=0, le=30)
    sync_interval_s: float = Field(default=0.25, gt=0, le=5)
    key_prefix: str = "interlock:"


class SimulatorSettings(_Model):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: a free port
    seed: int = 0
    ttft_ms: float = Field(default=0.0, ge=0)
    tokens_per_s: float = Field(default=0.0, ge=0)  # 0: as fast as possible
    output_tokens: int = Field(default=16, ge=1)


class JobWebhookSettings(_Model):
    # Signs job webhooks (Standard Webhooks, "whsec_<base64>"). Unset: generated once and
    # kept in <state_dir>/webhook_secret (mode 0600); GET /admin/jobs/webhook-secret shows it.
    secret: SecretStr | None = None
    # Hosts/CIDRs webhooks may reach although private (e.g. ["127.0.0.1", "10.0.0.0/8"]).
    allow_hosts: tuple[str, ...] = ()
    timeout_s: float = Field(default=15.0, gt=0)
    max_attempts: int = Field(default=8, ge=1, le=50)
    base_delay_s: float = Field(default=1.0, ge=0)
    max_delay_s: float = Field(default=300.0, ge=0)
    max_total_s: float = Field(default=900.0, ge=0)


class JobBatchSettings(_Model):
    # The OpenAI Batch API (/v1/files, /v1/batches; docs/batch.md). Files live in the
    # storage database, so these bound what one key can make it hold.
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    max_lines: int = Field(default=50_000, ge=1)
    max_stored_bytes_per_key: int = Field(default=1024 * 1024 * 1024, ge=1024)
    # Each line runs as a job at this priority: below "low" (-10), so interactive jobs go first.
    priority: int = Field(default=-20, ge=-100, le=100)
    max_in_flight: int = Field(default=256, ge=1, le=100_000)  # queued jobs per batch at once
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)


class JobSettings(_Model):
    # auto: the storage database (SQLite or PostgreSQL); redis: state.redis_url.
    backend: Literal["auto", "sql", "redis"] = "auto"
    # `interlock serve` runs a worker pool in each of its processes too.
    run_in_serve: bool = True
    concurrency: int = Field(default=8, ge=1, le=1024)  # jobs one pool runs at once
    lease_s: float = Field(default=30.0, ge=0.5)  # heartbeats extend it every lease_s/3
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    max_attempts: int = Field(default=3, ge=1, le=100)
    retry_base_delay_s: float = Field(default=2.0, ge=0)
    retry_max_delay_s: float = Field(default=300.0, ge=0)
    drain_timeout_s: float = Field(default=25.0, ge=0)  # SIGTERM: finish running jobs this long
    max_depth_per_priority: int | None = Field(default=None, ge=1)
    max_depth_per_tenant: int | None = Field(default=None, ge=1)
    queue_full_retry_after_s: float = Field(default=5.0, gt=0)
    metrics_interval_s: float = Field(default=5.0, gt=0)
    max_metadata_bytes: int = Field(default=4096, ge=2)
    webhooks: JobWebhookSettings = Field(default_factory=JobWebhookSettings)
    batch: JobBatchSettings = Field(default_factory=JobBatchSettings)


class LogSettings(_Model):
    # One JSON line per request on stderr (logger "interlock.access"); false: none at all.
    enabled: bool = True
    format: Literal["json", "text"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"
    # Opt-in: the request body (secrets redacted, truncated) in each request line.
    bodies: bool = False
    max_body_chars: int = Field(default=2000, ge=0, le=1_000_000)


class TracingSettings(_Model):
    # Off by default: no span objects at all on the request path.
    enabled: bool = False
    # OTLP/HTTP endpoint, e.g. http://otel-collector:4318 (/v1/traces is appended).
    otlp_endpoint: str | None = None
    otlp_headers: dict[str, str] = Field(default_factory=dict)
    service_name: str = "interlock"
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)


class TelemetrySettings(_Model):
    # false: the request path records no Prometheus metrics (/metrics still answers).
    metrics: bool = True
    # Label values per scope (key, user, team, feature) before the rest become "other".
    max_label_values: int = Field(default=50, ge=1, le=10_000)
    # Of those, the values one tenant (a team, or a key without one) may introduce per
    # scope: past it that tenant's new values are "other", and no one else's.
    max_label_values_per_tenant: int = Field(default=10, ge=1, le=10_000)
    # Set: GET /metrics needs "Authorization: Bearer <token>" (401 without it).
    metrics_token: SecretStr | None = None
    logs: LogSettings = Field(default_factory=LogSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)


AlertMetric = Literal["latency_p95", "error_rate", "queue_depth", "daily_spend"]


class AlertRuleSettings(_Model):
    metric: AlertMetric
    # latency_p95: multiples of the baseline; error_rate: fractions; queue_depth: jobs;
    # daily_spend: fractions of the planned daily budget (budget_usd).
    warning: float = Field(gt=0)
    critical: float = Field(gt=0)
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    route: str | None = None  # latency/error: one route template, e.g. /v1/chat/completions
    team: str | None = None  # daily_spend: only budgets of this team
    window_s: float | None = Field(default=None, gt=0)  # default: alerts.window_s
    baseline_s: float | None = Field(default=None, gt=0)  # latency: set by hand
    for_s: float = Field(default=0.0, ge=0)  # the condition must hold this long

    @model_validator(mode="after")
    def _ordered(self) -> AlertRuleSettings:
        if self.critical < self.warning:
            raise ValueError("critical must not be below warning")
        return self


def _default_alert_rules() -> tuple[AlertRuleSettings, ...]:
    return (
        AlertRuleSettings(metric="latency_p95", warning=2.0, critical=5.0),
        AlertRuleSettings(metric="error_rate", warning=0.01, critical=0.05),
        AlertRuleSettings(metric="queue_depth", warning=1000, critical=10000),
        AlertRuleSettings(metric="daily_spend", warning=1.2, critical=1.5),
    )


class AlertSinkSettings(_Model):
    kind: Literal["webhook", "slack", "log"]
    url: str | None = None  # webhook, slack
    # webhook: Standard Webhooks secret (whsec_...); default: the job webhook secret.
    secret: SecretStr | None = None

    @model_validator(mode="after")
    def _url_when_needed(self) -> AlertSinkSettings:
        if self.kind != "log" and not self.url:
            raise ValueError(f"a {self.kind} sink needs a url")
        return self


class AlertSettings(_Model):
    enabled: bool = True
    interval_s: float = Field(default=15.0, gt=0)
    window_s: float = Field(default=300.0, gt=0)  # the sliding window rules look at
    # Latency baseline: p95 over this much history before the window (unless set by hand).
    baseline_window_s: float = Field(default=3600.0, gt=0)
    cooldown_s: float = Field(default=600.0, ge=0)  # no re-fire of one alert sooner
    min_requests: int = Field(default=20, ge=1)  # fewer in the window: no verdict
    recent: int = Field(default=200, ge=1, le=10_000)  # resolved alerts kept
    rules: tuple[AlertRuleSettings, ...] = Field(default_factory=_default_alert_rules)
    sinks: tuple[AlertSinkSettings, ...] = (AlertSinkSettings(kind="log"),)
    # Hosts/CIDRs alert webhooks may reach although private (e.g. ["127.0.0.1"]).
    allow_hosts: tuple[str, ...] = ()
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)


class LaunchSettings(_Model):
    """What ``interlock check`` (launch readiness) compares the deployment against."""

    peak_rps: float | None = Field(default=None, gt=0)  # the declared expected peak, requests/s
    peak_tpm: int | None = Field(default=None, ge=1)  # expected peak tokens per minute
    # alias -> its share of the peak (0..1); aliases left out are not quota-checked
    traffic_share: dict[str, float] = Field(default_factory=dict)
    loadtest_multiple: float = Field(default=2.0, ge=1)  # the load test must reach this × peak
    loadtest_report: str | None = None  # an `interlock loadtest --json` result
    loadtest_max_age_days: float = Field(default=7.0, gt=0)
    runbooks_dir: str = "docs/runbooks"
    # Capacity planning (`interlock report capacity`, `interlock simulate`): non-streaming
    # req/s one gateway replica sustains at 100 % of one core (docs/benchmarks.md: ~470 µs
    # of CPU per request), a stream's CPU in requests (917 / 470 µs), and the utilisation
    # replicas are sized for at the peak.
    replica_rps: float = Field(default=2100.0, gt=0)
    stream_cost: float = Field(default=1.95, ge=1)
    target_utilisation: float = Field(default=0.7, gt=0, le=1)


class Settings(_Model):
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    state_dir: str = "./.interlock"
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    deployments: dict[str, DeploymentSettings] = Field(default_factory=dict)
    models: dict[str, AliasSettings] = Field(default_factory=dict)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    resilience: ResilienceSettings = Field(default_factory=ResilienceSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    spend: SpendSettings = Field(default_factory=SpendSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    local_embeddings: LocalEmbeddingSettings = Field(default_factory=LocalEmbeddingSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    launch: LaunchSettings = Field(default_factory=LaunchSettings)

    @model_validator(mode="after")
    def _references_resolve(self) -> Settings:
        for name, dep in self.deployments.items():
            if dep.provider not in self.providers:
                raise ValueError(
                    # Names of configured things are shown, values never (ConfigError).
                    f"deployments.{name}.provider: unknown provider "
                    f"(known: {sorted(self.providers)})"
                )
        for alias, spec in self.models.items():
            kinds = set()
            for i, dep_name in enumerate(spec.deployments):
                if dep_name not in self.deployments:
                    raise ValueError(
                        f"models.{alias}.deployments: unknown deployment at [{i}] "
                        f"(known: {sorted(self.deployments)})"
                    )
                kinds.add(self.deployments[dep_name].kind)
            if len(kinds) > 1:
                raise ValueError(
                    f"models.{alias}.deployments: mixes kinds {sorted(kinds)}; "
                    "an alias serves one kind"
                )
            for i, dep_name in enumerate(spec.limited_deployments or ()):
                if dep_name not in spec.deployments:
                    raise ValueError(
                        f"models.{alias}.limited_deployments[{i}]: not one of the alias's "
                        "deployments"
                    )
            if spec.tiers is not None:
                self._check_tiers(alias, spec.tiers)
            for i, fb in enumerate(spec.fallbacks):
                for j, other in enumerate(fb.models):
                    if other not in self.models or other == alias:
                        raise ValueError(
                            f"models.{alias}.fallbacks[{i}].models[{j}]: not another "
                            f"configured alias (known: {sorted(self.models)})"
                        )
        return self

    def _check_tiers(self, alias: str, tiers: TierSettings) -> None:
        targets = {name: getattr(tiers, name) for name in ("small", "medium", "large")}
        targets.update({f"specialized.{n}.model": t.model for n, t in tiers.specialized.items()})
        for where, other in targets.items():
            if other is None:
                continue
            spec = self.models.get(other)
            if spec is None or other == alias or spec.tiers is not None:
                raise ValueError(
                    f"models.{alias}.tiers.{where}: not another configured alias "
                    f"with deployments (known: {sorted(self.models)})"
                )
            if any(self.deployments[d].kind != "chat" for d in spec.deployments):
                raise ValueError(f"models.{alias}.tiers.{where}: not a chat model's alias")


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why."""


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{path or '<root>'}: environment variable {name} is not set")

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _drop_empty_secrets(value: Any) -> Any:
    # "${OPENAI_API_KEY:-}" with the variable unset should read as "no key", not "".
    if isinstance(value, dict):
        return {
            k: _drop_empty_secrets(v)
            for k, v in value.items()
            if not (
                v == ""
                and k in {"api_key", "master_key", "key_hash_secret", "secret", "metrics_token"}
            )
        }
    if isinstance(value, list):
        return [_drop_empty_secrets(v) for v in value]
    return value


def _format_validation(source: str, err: ValidationError) -> str:
    """Where and why, never what: field paths and expectations, no input value (any
    field may hold a secret, and a misplaced one is still a secret)."""
    lines = [f"{source}: invalid configuration"]
    for e in err.errors(include_url=False, include_input=True):
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        # Pydantic's own messages do not quote the input, and ours (validators above)
        # name fields, not values; this is the backstop for a leaf value all the same.
        value = e.get("input")
        if isinstance(value, str) and len(value) >= 4 and value in msg:
            msg = msg.replace(value, "<value>")
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


_QUOTED = re.compile(r"'([^']*)'")
_YAML_TOKEN = re.compile(r"<[a-z ]+>")


def _yaml_text(text: str | None) -> str:
    """PyYAML's explanation with any quoted excerpt longer than one character masked
    (an alias, anchor or tag name is text from the file)."""

    def keep(m: re.Match[str]) -> str:
        inner = m.group(1)
        return m.group(0) if len(inner) <= 1 or _YAML_TOKEN.fullmatch(inner) else "'…'"

    return _QUOTED.sub(keep, text or "")


def yaml_error(source: str, exc: yaml.YAMLError) -> ConfigError:
    """Where a file stops being YAML (line, column) and why, without the offending line:
    PyYAML's own message quotes it, and that line may hold a secret."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = _yaml_text(getattr(exc, "problem", None)) or "syntax error"
    context = _yaml_text(getattr(exc, "context", None))
    cmark = getattr(exc, "context_mark", None)
    if context and cmark is not None:
        context = f" ({context} that started at line {cmark.line + 1})"
    elif context:
        context = f" ({context})"
    return ConfigError(f"{source}: not valid YAML{where}: {problem}{context}")


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """A configuration file parsed; every failure a :class:`ConfigError` that echoes no
    content of the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise yaml_error(str(p), exc) from None
    except RecursionError:
        raise ConfigError(f"{p}: not valid YAML: nested too deeply") from None


def parse_settings(
    data: Any,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    *,
    expand_env: bool = True,
) -> Settings:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        if expand_env:
            data = interpolate(data, os.environ if env is None else env)
        data = _drop_empty_secrets(data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(source, exc)) from None


def load_settings(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    return parse_settings(read_yaml(path), str(path), env)


def dump_settings(settings: Settings) -> dict[str, Any]:
    """A plain dict that :func:`parse_settings` reads back, secrets included.

    Used to hand the resolved configuration to worker processes (written 0600).
    """

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(settings.model_dump(mode="python"))  # type: ignore[no-any-return]
