"""Typed, frozen configuration: one YAML file, ``${ENV}`` interpolation, unknown keys are errors.

``load_settings(path)`` is the only reader of the file; everything downstream receives a
:class:`Settings` value. Validation errors name the file, the field path and what was
expected (:class:`ConfigError`).

One module per area, each importing nothing of Interlock's but this package:

* ``root`` — :class:`Settings` (cross-references checked) and loading: ``read_yaml``,
  ``yaml_error``, ``parse_settings``, ``load_settings``, ``dump_settings``
* ``server`` (server, auth), ``storage`` (storage, state), ``providers`` (providers,
  deployments, simulator, local embeddings), ``resilience``, ``routing`` (aliases, tiers),
  ``spend``, ``cache``, ``jobs``, ``telemetry`` (telemetry, alerts), ``launch``
* ``base`` — :class:`SettingsModel`, the frozen, extra-forbidding base of every section

Import from here (``from interlock.settings import X``); the submodules are the layout.
"""

from interlock.settings.cache import (
    AppCacheSettings,
    CacheSettings,
    CacheTierSettings,
    RedisCacheTierSettings,
    SemanticCacheSettings,
)
from interlock.settings.jobs import (
    JobBatchSettings,
    JobSettings,
    JobWebhookSettings,
)
from interlock.settings.launch import LaunchSettings
from interlock.settings.providers import (
    DeploymentKind,
    DeploymentSettings,
    LocalEmbeddingSettings,
    PriceSettings,
    ProviderKind,
    ProviderSettings,
    SimulatorSettings,
    TimeoutSettings,
    UsageApiSettings,
)
from interlock.settings.resilience import (
    BreakerSettings,
    BudgetSettings,
    DegradationSettings,
    ResilienceSettings,
    RetrySettings,
    ThresholdSettings,
)
from interlock.settings.root import (
    ConfigError,
    Settings,
    dump_settings,
    interpolate,
    load_settings,
    parse_settings,
    read_yaml,
    yaml_error,
)
from interlock.settings.routing import (
    AliasSettings,
    EmbeddingBatchSettings,
    ErrorClass,
    EscalationCheck,
    FallbackSettings,
    HedgeSettings,
    RouteCacheSettings,
    SpecializedTierSettings,
    Strategy,
    TierSettings,
)
from interlock.settings.server import AuthSettings, ServerSettings
from interlock.settings.spend import (
    BudgetRule,
    BudgetScope,
    BudgetWindow,
    RateLimitSettings,
    SpendSettings,
    UnknownPriceSettings,
)
from interlock.settings.storage import StateSettings, StorageSettings
from interlock.settings.telemetry import (
    AlertMetric,
    AlertRuleSettings,
    AlertSettings,
    AlertSinkSettings,
    LogSettings,
    TelemetrySettings,
    TracingSettings,
)

__all__ = [
    "AlertMetric",
    "AlertRuleSettings",
    "AlertSettings",
    "AlertSinkSettings",
    "AliasSettings",
    "AppCacheSettings",
    "AuthSettings",
    "BreakerSettings",
    "BudgetRule",
    "BudgetScope",
    "BudgetSettings",
    "BudgetWindow",
    "CacheSettings",
    "CacheTierSettings",
    "ConfigError",
    "DegradationSettings",
    "DeploymentKind",
    "DeploymentSettings",
    "EmbeddingBatchSettings",
    "ErrorClass",
    "EscalationCheck",
    "FallbackSettings",
    "HedgeSettings",
    "JobBatchSettings",
    "JobSettings",
    "JobWebhookSettings",
    "LaunchSettings",
    "LocalEmbeddingSettings",
    "LogSettings",
    "PriceSettings",
    "ProviderKind",
    "ProviderSettings",
    "RateLimitSettings",
    "RedisCacheTierSettings",
    "ResilienceSettings",
    "RetrySettings",
    "RouteCacheSettings",
    "SemanticCacheSettings",
    "ServerSettings",
    "Settings",
    "SimulatorSettings",
    "SpecializedTierSettings",
    "SpendSettings",
    "StateSettings",
    "StorageSettings",
    "Strategy",
    "TelemetrySettings",
    "ThresholdSettings",
    "TierSettings",
    "TimeoutSettings",
    "TracingSettings",
    "UnknownPriceSettings",
    "UsageApiSettings",
    "dump_settings",
    "interpolate",
    "load_settings",
    "parse_settings",
    "read_yaml",
    "yaml_error",
]
