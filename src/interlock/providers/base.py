"""The adapter contract: one adapter per wire format, translating and never sending.

An adapter turns a canonical (OpenAI-shaped) request into an :class:`UpstreamCall`
(method, URL, headers, body) and turns the upstream's answer back into canonical form.
Sending belongs to :mod:`interlock.providers.transport`; credentials that need I/O or
signing (Vertex tokens, SigV4) are applied by an :class:`Authenticator` right before the
call leaves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from interlock.errors import (
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest, Usage


@dataclass(slots=True)
class UpstreamCall:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool = False
    # What the adapter changed to fit the model's rules (providers/capabilities.py): sent
    # to the client as ``x-interlock-warnings`` with the answer this call produced.
    warnings: tuple[str, ...] = ()


def warnings_header(warnings: tuple[str, ...]) -> tuple[bytes, bytes]:
    """``x-interlock-warnings``: what the adapter changed, ``; ``-separated, ASCII only."""
    text = "; ".join(w.replace(";", ",") for w in warnings)
    return b"x-interlock-warnings", text.encode("ascii", "replace")[:2048]


@dataclass(slots=True)
class Completion:
    """A complete upstream answer, translated to the OpenAI shape."""

    body: bytes  # OpenAI-shaped JSON bytes, ready for the client
    usage: Usage | None


class StreamDecoder(Protocol):
    """Incremental: bytes from the upstream in, canonical OpenAI chunks out."""

    def feed(self, data: bytes) -> list[Chunk]: ...

    def close(self) -> list[Chunk]:
        """Called at end of input; raises UpstreamProtocolError if the stream was cut."""
        ...

    @property
    def usage(self) -> Usage | None: ...

    def partial_usage(self, in_flight: bool) -> Usage:
        """What a stream that ended early is charged: the provider's final usage if it
        arrived, else its earlier counts and the tokenizer's count of what was decoded
        (see :class:`interlock.providers.tokens.Generated`; ``in_flight``: the gateway
        hung up on a live upstream, which generated ahead of what it sent)."""
        ...


class Authenticator(Protocol):
    async def apply(self, call: UpstreamCall) -> None: ...


class NoAuth:
    async def apply(self, call: UpstreamCall) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Target:
    """What an adapter needs to know about one deployment (no secrets but via headers)."""

    name: str
    provider: str
    model: str  # upstream model name
    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    api_version: str | None = None
    region: str | None = None
    project: str | None = None
    # Anthropic: mark the stable prefix (tools, system, earlier turns) with cache_control.
    prompt_caching: bool = False
    # The model whose capability rules apply when ``model`` is a free-form name (Azure).
    base_model: str | None = None

    @property
    def rules_model(self) -> str:
        return self.base_model or self.model


class Adapter(Protocol):
    """Translation for one wire format."""

    wire: str  # "openai", "anthropic", "gemini", "bedrock"

    def supports(self, endpoint: Endpoint) -> bool: ...

    def build(self, req: GatewayRequest, target: Target) -> UpstreamCall: ...

    def parse(
        self, req: GatewayRequest, target: Target, status: int, body: bytes
    ) -> Completion: ...

    def stream_decoder(self, req: GatewayRequest, target: Target) -> StreamDecoder: ...

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError: ...


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Retry-After (seconds form) or the OpenAI-style ``x-ratelimit-reset-*`` hint."""
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            return None
    return None


def upstream_message(body: bytes) -> str:
    """The provider's own error text, if its body carries one; never the raw body."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        return ""
    err = data.get("error", data)
    if isinstance(err, dict):
        msg = err.get("message")
        return msg if isinstance(msg, str) else ""
    if isinstance(err, str):
        return err
    msg = data.get("message")
    return msg if isinstance(msg, str) else ""


def map_status(
    status: int, headers: Mapping[str, str], body: bytes, provider: str
) -> UpstreamError:
    """The shared HTTP-status mapping of upstream failures (adapters may refine it)."""
    detail = upstream_message(body)[:500]
    suffix = f": {detail}" if detail else ""
    if status == 429:
        return UpstreamRateLimited(
            f"provider {provider} is rate limiting{suffix}",
            upstream_status=status,
            retry_after=retry_after_seconds(headers),
        )
    if status in (400, 404, 413, 422):
        return UpstreamBadRequest(
            f"provider {provider} rejected the request{suffix}", upstream_status=status
        )
    if status in (401, 403):
        # The gateway's credentials are wrong, not the client's: never a 401 to the client.
        return UpstreamUnavailable(
            f"provider {provider} refused the gateway's credentials", upstream_status=status
        )
    return UpstreamUnavailable(
        f"provider {provider} failed with HTTP {status}{suffix}", upstream_status=status
    )


def json_object(body: bytes) -> JSON:
    """Parse an upstream JSON object or raise UpstreamProtocolError."""
    from interlock.errors import UpstreamProtocolError

    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError("provider returned malformed JSON") from None
    if not isinstance(data, dict):
        raise UpstreamProtocolError("provider returned JSON that is not an object")
    return data
