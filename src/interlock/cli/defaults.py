"""The embedded default: no config file needed.

The simulated provider's models (served by its own local process), plus every real
provider whose key is in the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
