"""The embedded default: no config file needed.

The simulated provider's models (served by its own local process), plus every real
provider whose key is in the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interlock.settings import ConfigError

if TYPE_CHECKING:
    from interlock.settings import Settings

SIM_CHAT_MODELS = ("sim-small", "sim-medium", "sim-large")


def env_providers(env: Mapping[str, str]) -> dict[str, Any]:
    """Providers and deployments for the real-provider keys found in ``env``."""
    providers: dict[str, Any] = {}
    deployments: dict[str, Any] = {}

    def add(provider: str, model: str, kind: str = "chat") -> None:
        deployments[f"{provider}/{model}"] = {"provider": provider, "model": model, "kind": kind}

    if env.get("OPENAI_API_KEY"):
        providers["openai"] = {"kind": "openai", "api_key": "${OPENAI_API_KEY}"}
        if env.get("OPENAI_BASE_URL"):
            providers["openai"]["base_url"] = "${OPENAI_BASE_URL}"
        for m in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "o4-mini"):
            add("openai", m)
        for m in ("text-embedding-3-small", "text-embedding-3-large"):
            add("openai", m, "embeddings")
    if env.get("ANTHROPIC_API_KEY"):
        providers["anthropic"] = {"kind": "anthropic", "api_key": "${ANTHROPIC_API_KEY}"}
        for m in ("claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"):
            add("anthropic", m)
    if env.get("GEMINI_API_KEY") or env.get("GOOGLE_API_KEY"):
        var = "GEMINI_API_KEY" if env.get("GEMINI_API_KEY") else "GOOGLE_API_KEY"
        providers["gemini"] = {"kind": "gemini", "api_key": "${" + var + "}"}
        for m in ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite"):
            add("gemini", m)
        add("gemini", "text-embedding-004", "embeddings")
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE"):
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        providers["bedrock"] = {"kind": "bedrock", "region": region}
        for m in (
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "anthropic.claude-3-7-sonnet-20250219-v1:0",
            "amazon.nova-lite-v1:0",
            "amazon.nova-pro-v1:0",
        ):
            add("bedrock", m)
    return {"providers": providers, "deployments": deployments}


def simulator_entries(sim_url: str) -> dict[str, Any]:
    """Providers and deployments served by the simulated provider at ``sim_url``.

    The same simulator is reached through three wire formats, so the default install
    exercises the OpenAI passthrough and the Anthropic and Gemini translations.
    """
    providers = {
        "sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1", "api_key": "sim-key"},
        "sim-anthropic": {"kind": "anthropic", "base_url": sim_url, "api_key": "sim-key"},
        "sim-gemini": {"kind": "gemini", "base_url": sim_url, "api_key": "sim-key"},
    }
    deployments: dict[str, Any] = {m: {"provider": "sim", "model": m} for m in SIM_CHAT_MODELS}
    deployments["sim-embed"] = {"provider": "sim", "model": "sim-embed", "kind": "embeddings"}
    deployments["sim-claude"] = {"provider": "sim-anthropic", "model": "sim-claude"}
    deployments["sim-gemini"] = {"provider": "sim-gemini", "model": "sim-gemini"}
    return {"providers": providers, "deployments": deployments}


def local_embedding_entries(url: str) -> dict[str, Any]:
    """The local embedding model (interlock[local]) as a priced-at-zero deployment; it is
    served under its model name, ``all-MiniLM-L6-v2``."""
    from interlock.localembed import MODEL_NAME

    return {
        "providers": {"local": {"kind": "openai_compatible", "base_url": f"{url}/v1"}},
        "deployments": {
            "local-minilm": {
                "provider": "local",
                "model": MODEL_NAME,
                "kind": "embeddings",
                "price": {"input_per_mtok": 0, "output_per_mtok": 0},
            }
        },
    }


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for section in ("providers", "deployments"):
        merged = dict(extra.get(section, {}))
        merged.update(base.get(section) or {})  # the operator's own entries win
        out[section] = merged
    return out


# ── how every CLI command finds the configuration (light: no gateway imports) ──────────


class CliConfig:
    """The configuration a CLI command reads, and a sentence saying how it was found."""

    def __init__(self, settings: Settings, path: str | None, found_by: str) -> None:
        self.settings = settings
        self.path = path
        self.found_by = found_by

    @property
    def origin(self) -> str:
        """``cfg.yaml (--config)``, ``the embedded default (no --config, ...)``."""
        if self.path is None:
            return f"the embedded default ({self.found_by})"
        return f"{self.path} ({self.found_by})"


def find_config(explicit: str | None, env: Mapping[str, str]) -> tuple[str | None, str]:
    """The configuration file a command uses, as ``serve`` picks it, and how it was found."""
    if explicit:
        return explicit, "--config"
    if env.get("INTERLOCK_CONFIG"):
        return env["INTERLOCK_CONFIG"], "$INTERLOCK_CONFIG"
    if Path("interlock.yaml").exists():
        return "interlock.yaml", "./interlock.yaml in the current directory"
    return None, "no --config, no $INTERLOCK_CONFIG, no ./interlock.yaml"


def raw_config(path: str | None, env: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """The configuration as a dict before validation, and where it came from (``serve``
    and every CLI command read it here)."""
    from interlock.settings import read_yaml

    if path is None:
        data: dict[str, Any] = {"simulator": {"enabled": True}}
        data = merge(data, env_providers(env))
        source = "<embedded default>"
    else:
        loaded = read_yaml(path)  # errors say where, never echo the file's content
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        data, source = loaded, path
    if env.get("INTERLOCK_MASTER_KEY"):
        auth = dict(data.get("auth") or {})
        auth.setdefault("master_key", "${INTERLOCK_MASTER_KEY}")
        data["auth"] = auth
    return data, source


def load_cli_config(explicit: str | None, env: Mapping[str, str] | None = None) -> CliConfig:
    """Parse the configuration as ``serve`` would (the same file, defaults and environment),
    without starting anything: an enabled simulator's deployments get a placeholder address,
    which commands that only read the database or talk to a running gateway never use.
    Deliberately imports neither the gateway nor the provider adapters (``keys list`` must
    start fast). Raises :class:`ConfigError`."""
    from interlock.settings import parse_settings

    env = dict(os.environ) if env is None else env
    path, found_by = find_config(explicit, env)
    data, source = raw_config(path, env)
    sim = data.get("simulator")
    if isinstance(sim, dict) and sim.get("enabled") is True:
        data = merge(data, simulator_entries("http://127.0.0.1:9"))
    return CliConfig(parse_settings(data, source, env), path, found_by)
