"""The answer cache (tiers, semantic matching) and the application cache."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interlock.settings.base import SettingsModel


class CacheTierSettings(SettingsModel):
    enabled: bool = False
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)  # memory tier only


class RedisCacheTierSettings(CacheTierSettings):
    # "" = state.redis_url. redis://, redis+sentinel://h:p,h:p/service/db or
    # redis+cluster://h:p,h:p (state/redis_connect.py).
    url: str = ""


class SemanticCacheSettings(SettingsModel):
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


class AppCacheSettings(SettingsModel):
    """The application cache (``/v1/cache/...``): what one tenant may keep there."""

    # Bytes a tenant (its team, or its key) may hold at once: each value counts its size,
    # its name and 256 bytes of overhead until it expires or is deleted. Shared by every
    # replica through Redis when Redis is configured.
    max_bytes_per_tenant: int = Field(default=8 * 1024 * 1024, ge=1024)
    default_ttl_s: float = Field(default=3600.0, gt=0)  # a write without ttl (capped by max)
    max_ttl_s: float = Field(default=86400.0, gt=0, le=30 * 86400)


class CacheSettings(SettingsModel):
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
