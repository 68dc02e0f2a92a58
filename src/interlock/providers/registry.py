"""Builds the runtime view of each configured deployment: target, adapter, credentials."""

from __future__ import annotations

from dataclasses import dataclass

from interlock.providers.base import Adapter, Authenticator, NoAuth, Target
from interlock.providers.openai_compat import OpenAIAdapter
from interlock.providers.transport import Timeouts
from interlock.settings import ConfigError, DeploymentSettings, ProviderSettings, Settings
from interlock.types import Endpoint

_ENDPOINT = {
    "chat": Endpoint.CHAT,
    "embeddings": Endpoint.EMBEDDINGS,
    "completions": Endpoint.COMPLETIONS,
}

_DEFAULT_BASE = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    kind: str  # chat | embeddings | completions
    provider: str
    provider_kind: str
    target: Target
    adapter: Adapter
    auth: Authenticator
    timeouts: Timeouts
    settings: DeploymentSettings


def _secret(value: object) -> str | None:
    get = getattr(value, "get_secret_value", None)
    return get() if callable(get) else None


def _base_url(p: ProviderSettings, d: DeploymentSettings) -> str:
    if d.base_url:
        return d.base_url
    if p.base_url:
        return p.base_url
    if p.kind == "vertex":
        return f"https://{p.region}-aiplatform.googleapis.com"
    if p.kind == "bedrock":
        return f"https://bedrock-runtime.{p.region}.amazonaws.com"
    return _DEFAULT_BASE[p.kind]


def _headers(p: ProviderSettings, key: str | None) -> dict[str, str]:
    # Lower-case names, so a configured header and a key-derived one cannot both be sent.
    headers = {k.lower(): v for k, v in p.headers.items()}
    if key and p.kind == "bedrock":
        headers["authorization"] = f"Bearer {key}"  # Bedrock API keys (no SigV4 then)
    elif key:
        if p.kind in ("openai", "openai_compatible"):
            headers["authorization"] = f"Bearer {key}"
        elif p.kind == "azure":
            headers["api-key"] = key
        elif p.kind == "anthropic":
            headers["x-api-key"] = key
        elif p.kind == "gemini":
            headers["x-goog-api-key"] = key
    if p.kind == "anthropic":
        headers["anthropic-version"] = p.anthropic_version
    return headers


def _adapter(kind: str) -> Adapter:
    if kind in ("openai", "openai_compatible"):
        return OpenAIAdapter(kind=kind)
    if kind == "azure":
        # Classic deployment routes or the v1 API: chosen per target (api_version "v1").
        return OpenAIAdapter(azure=True)
    if kind == "anthropic":
        from interlock.providers.anthropic import AnthropicAdapter

        return AnthropicAdapter()
    if kind in ("gemini", "vertex"):
        from interlock.providers.gemini import GeminiAdapter

        return GeminiAdapter(vertex=kind == "vertex")
    # Optional extra (botocore): imported only when a Bedrock deployment is configured.
    from interlock.providers.bedrock import BedrockAdapter

    return BedrockAdapter()


def _optional(extra: str, module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"providers of this kind need the optional dependency '{module}': "
            f"pip install 'interlock[{extra}]'"
        )


def _auth(p: ProviderSettings) -> Authenticator:
    if p.kind == "bedrock" and p.api_key is not None:
        return NoAuth()
    if p.kind == "bedrock":
        _optional("aws", "botocore")
        from interlock.providers.aws_auth import SigV4Auth

        return SigV4Auth(
            p.region or "us-east-1",
            access_key_id=_secret(p.aws_access_key_id),
            secret_access_key=_secret(p.aws_secret_access_key),
            session_token=_secret(p.aws_session_token),
        )
    if p.kind == "vertex":
        _optional("google", "google.auth")
        from interlock.providers.google_auth import GoogleServiceAccountAuth

        return GoogleServiceAccountAuth(p.credentials_file)
    return NoAuth()


def build_deployments(settings: Settings) -> dict[str, Deployment]:
    out: dict[str, Deployment] = {}
    auths: dict[str, Authenticator] = {}
    for name, d in settings.deployments.items():
        p = settings.providers[d.provider]
        key = _secret(d.api_key) or _secret(p.api_key)
        adapter = _adapter(p.kind)
        if not adapter.supports(_ENDPOINT[d.kind]):
            raise ConfigError(
                f"deployments.{name}.kind: provider '{d.provider}' ({p.kind}) cannot serve "
                f"{d.kind} requests"
            )
        if d.provider not in auths:
            auths[d.provider] = _auth(p)
        target = Target(
            name=name,
            provider=d.provider,
            model=d.model,
            base_url=_base_url(p, d),
            headers=_headers(p, key),
            api_version=p.api_version,
            region=p.region,
            project=p.project,
            prompt_caching=d.prompt_caching,
            base_model=d.base_model,
        )
        t = d.timeouts
        out[name] = Deployment(
            name=name,
            kind=d.kind,
            provider=d.provider,
            provider_kind=p.kind,
            target=target,
            adapter=adapter,
            auth=auths[d.provider],
            # first_byte_s None: chosen per attempt by the executor (auto_first_byte_s).
            timeouts=Timeouts(t.connect_s, t.first_byte_s or t.total_s, t.idle_s, t.total_s),
            settings=d,
        )
    return out


def secrets_of(settings: Settings) -> list[str]:
    """Every secret in the configuration, for redaction at the sinks."""
    found: list[str] = []
    for p in settings.providers.values():
        for v in (p.api_key, p.aws_secret_access_key, p.aws_session_token, p.aws_access_key_id):
            s = _secret(v)
            if s:
                found.append(s)
    for d in settings.deployments.values():
        s = _secret(d.api_key)
        if s:
            found.append(s)
    return found
