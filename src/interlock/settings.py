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


class PriceSettings(_Model):
    input_per_mtok: float = Field(default=0.0, ge=0)
    output_per_mtok: float = Field(default=0.0, ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)


class ProviderSettings(_Model):
    kind: ProviderKind
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_version: str | None = None  # azure: api-version query parameter
    region: str | None = None  # bedrock, vertex
    project: str | None = None  # vertex
    credentials_file: str | None = None  # vertex service-account JSON
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    anthropic_version: str = "2023-06-01"

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
    # Until the response headers (non-stream) or the first byte of a stream.
    first_byte_s: float = Field(default=60.0, gt=0)
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
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    price: PriceSettings | None = None
    weight: float = Field(default=1.0, ge=0)


class AliasSettings(_Model):
    deployments: tuple[str, ...] = Field(min_length=1)
    description: str = ""


class SimulatorSettings(_Model):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)  # 0: a free port
    seed: int = 0
    ttft_ms: float = Field(default=0.0, ge=0)
    tokens_per_s: float = Field(default=0.0, ge=0)  # 0: as fast as possible
    output_tokens: int = Field(default=16, ge=1)


class Settings(_Model):
    server: ServerSettings = Field(default_factory=ServerSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    state_dir: str = "./.interlock"
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    deployments: dict[str, DeploymentSettings] = Field(default_factory=dict)
    models: dict[str, AliasSettings] = Field(default_factory=dict)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)

    @model_validator(mode="after")
    def _references_resolve(self) -> Settings:
        for name, dep in self.deployments.items():
            if dep.provider not in self.providers:
                raise ValueError(
                    f"deployments.{name}.provider: unknown provider {dep.provider!r} "
                    f"(known: {sorted(self.providers)})"
                )
        for alias, spec in self.models.items():
            kinds = set()
            for dep_name in spec.deployments:
                if dep_name not in self.deployments:
                    raise ValueError(
                        f"models.{alias}.deployments: unknown deployment {dep_name!r} "
                        f"(known: {sorted(self.deployments)})"
                    )
                kinds.add(self.deployments[dep_name].kind)
            if len(kinds) > 1:
                raise ValueError(
                    f"models.{alias}.deployments: mixes kinds {sorted(kinds)}; "
                    "an alias serves one kind"
                )
        return self


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
            if not (v == "" and k in {"api_key", "master_key", "key_hash_secret"})
        }
    if isinstance(value, list):
        return [_drop_empty_secrets(v) for v in value]
    return value


def _format_validation(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


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
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    return parse_settings(data, str(p), env)


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
