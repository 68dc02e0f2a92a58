"""Model aliases: strategy, fallbacks, hedging, per-route cache, embeddings batching and
model tiers."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from interlock.settings.base import SettingsModel
from interlock.settings.resilience import RetrySettings

ErrorClass = Literal["rate_limit", "server_error", "timeout", "context_window", "content_policy"]


class FallbackSettings(SettingsModel):
    on: tuple[ErrorClass, ...] = ("rate_limit", "server_error", "timeout")
    models: tuple[str, ...] = Field(min_length=1)  # other aliases, tried in order


class HedgeSettings(SettingsModel):
    enabled: bool = False
    quantile: float = Field(default=0.95, gt=0, lt=1)
    min_delay_s: float = Field(default=0.05, ge=0)
    max_delay_s: float = Field(default=10.0, gt=0)


class RouteCacheSettings(SettingsModel):
    enabled: bool = True
    ttl_s: float | None = Field(default=None, gt=0)  # default: cache.ttl_s
    # temperature_zero: only requests with temperature 0 (and embeddings); any: all.
    cacheable: Literal["temperature_zero", "any"] | None = None
    semantic: bool | None = None  # match by meaning on this route (default: cache.semantic)
    semantic_threshold: float | None = Field(default=None, gt=0, le=1)


class EmbeddingBatchSettings(SettingsModel):
    # Combine concurrent embeddings requests into one upstream call of up to this many
    # texts (0 or 1: off), waiting at most max_wait_ms for others to join.
    max_batch: int = Field(default=0, ge=0, le=2048)
    max_wait_ms: float = Field(default=2.0, ge=0, le=100)


Strategy = Literal["priority", "weighted", "least_latency", "least_busy", "lowest_cost"]


class SpecializedTierSettings(SettingsModel):
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


class TierSettings(SettingsModel):
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


class AliasSettings(SettingsModel):
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
