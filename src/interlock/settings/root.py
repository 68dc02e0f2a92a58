"""The whole configuration (:class:`Settings`, whose cross-references are checked here) and
its one reader: YAML, ``${ENV}`` interpolation, errors that name the field, never a value."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator

from interlock.settings.base import SettingsModel
from interlock.settings.cache import CacheSettings
from interlock.settings.jobs import JobSettings
from interlock.settings.launch import LaunchSettings
from interlock.settings.providers import (
    DeploymentSettings,
    LocalEmbeddingSettings,
    ProviderSettings,
    SimulatorSettings,
)
from interlock.settings.resilience import ResilienceSettings
from interlock.settings.routing import AliasSettings, TierSettings
from interlock.settings.server import AuthSettings, ServerSettings
from interlock.settings.spend import SpendSettings
from interlock.settings.storage import StateSettings, StorageSettings
from interlock.settings.telemetry import AlertSettings, TelemetrySettings


class Settings(SettingsModel):
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
