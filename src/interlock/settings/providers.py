"""Upstreams: providers, their deployments (timeouts, prices, usage API), the simulated
provider and the local embedding server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from interlock.settings.base import SettingsModel
from interlock.settings.resilience import BreakerSettings

ProviderKind = Literal[
    "openai", "azure", "openai_compatible", "anthropic", "gemini", "vertex", "bedrock"
]


DeploymentKind = Literal["chat", "embeddings", "completions"]


class PriceSettings(SettingsModel):
    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)  # cache reads
    # Prompt-cache writes, 5-minute (default) and 1-hour TTL. Left out: the input rate,
    # except Claude models: Anthropic's 1.25x / 2x of input_per_mtok (docs/spend.md).
    cache_write_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_1h_per_mtok: float | None = Field(default=None, ge=0)


class UsageApiSettings(SettingsModel):
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


class ProviderSettings(SettingsModel):
    kind: ProviderKind
    base_url: str | None = None
    api_key: SecretStr | None = None
    # azure: the api-version query of the classic routes, or "v1" for the v1 API (also
    # implied by a base_url ending in /openai/v1); gemini/vertex: the API version path.
    api_version: str | None = None
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
        if self.kind == "azure" and self.base_url:
            # Azure's v1 API: api_version "v1", or a base_url ending in /openai/v1.
            v1_url = self.base_url.rstrip("/").endswith("/openai/v1")
            if v1_url and self.api_version not in (None, "v1"):
                raise ValueError(
                    "base_url ends in /openai/v1 (Azure's v1 API, which takes no "
                    f"api-version) but api_version is {self.api_version!r}: set "
                    "api_version: v1 or drop it"
                )
            if not v1_url and (
                self.base_url.rstrip("/").endswith("/openai")
                or "/openai/deployments" in self.base_url
            ):
                raise ValueError(
                    "kind azure: base_url is the resource endpoint "
                    "(https://NAME.openai.azure.com; Interlock adds /openai/deployments/...), "
                    "or it ends in /openai/v1 for the v1 API"
                )
        if self.kind == "vertex" and not (self.project and self.region):
            raise ValueError("project and region are required for kind 'vertex'")
        if self.kind == "bedrock" and not self.region:
            raise ValueError("region is required for kind 'bedrock'")
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return self


class TimeoutSettings(SettingsModel):
    connect_s: float = Field(default=5.0, gt=0)
    # Until the upstream's response headers arrive (streams: then idle_s per chunk).
    # None: by kind — streams 15 s, embeddings 10 s, a non-streamed answer 10 s + 1 s per
    # 35 output tokens the request may generate (routing/executor.py auto_first_byte_s).
    first_byte_s: float | None = Field(default=None, gt=0)
    # Longest silence between two stream chunks.
    idle_s: float = Field(default=60.0, gt=0)
    total_s: float = Field(default=600.0, gt=0)


class DeploymentSettings(SettingsModel):
    provider: str
    model: str  # the upstream's model name (Azure: the deployment name)
    # The model that deployment serves, when ``model`` is a name of the operator's choosing
    # (an Azure deployment, a self-hosted --served-model-name): its capability rules
    # (providers/rules/) and its table price apply. e.g. model: prod-reasoner, base_model: o3-mini
    base_model: str | None = Field(default=None, min_length=1, max_length=256)
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


class SimulatorSettings(SettingsModel):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: a free port
    seed: int = 0
    ttft_ms: float = Field(default=0.0, ge=0)
    tokens_per_s: float = Field(default=0.0, ge=0)  # 0: as fast as possible
    output_tokens: int = Field(default=16, ge=1)


class LocalEmbeddingSettings(SettingsModel):
    # auto: start the local embedding model (a child process) when interlock[local] is
    # installed and something uses it; true: required; false: never.
    enabled: Literal["auto", "true", "false"] = "auto"
    url: str = ""  # an already running local embedding server instead of a child process
    max_batch: int = Field(default=64, ge=1, le=2048)
    max_wait_ms: float = Field(default=3.0, ge=0, le=100)
    threads: int = Field(default=0, ge=0)  # torch threads; 0: its default
