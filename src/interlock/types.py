"""Provider-neutral domain types.

The canonical shape of a request inside Interlock is the OpenAI wire format, held as
parsed JSON (``body``) next to the client's original bytes (``raw``): adapters for
OpenAI-compatible upstreams forward ``raw`` untouched when nothing needs rewriting,
others translate ``body``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson

JSON = dict[str, Any]


class Endpoint(StrEnum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from a virtual key."""

    key_id: str
    user: str | None = None
    team: str | None = None
    tags: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # empty: every model
    is_admin: bool = False
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    priority: int = 9  # 0 (lowest) to 9: under contention, higher priorities are admitted first
    max_wait_s: float = 0.0  # wait this long for rate-limit capacity instead of an immediate 429

    def may_use(self, model: str) -> bool:
        return self.is_admin or not self.models or model in self.models


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False  # True when counted by the gateway, not reported upstream
    # Prompt-cache writes (Anthropic, Bedrock): part of prompt_tokens like cached_tokens,
    # billed at the cache-write rate of their TTL (5 minutes, the default, or 1 hour).
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> JSON:
        out: JSON = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            out["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return out

    @classmethod
    def from_openai(cls, data: Any) -> Usage | None:
        if not isinstance(data, dict):
            return None
        prompt = data.get("prompt_tokens") or 0
        completion = data.get("completion_tokens") or 0
        details = data.get("prompt_tokens_details") or {}
        cdetails = data.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            cached_tokens=int(details.get("cached_tokens") or 0)
            if isinstance(details, dict)
            else 0,
            reasoning_tokens=int(cdetails.get("reasoning_tokens") or 0)
            if isinstance(cdetails, dict)
            else 0,
        )


@dataclass(slots=True)
class GatewayRequest:
    """One validated client request in OpenAI shape."""

    endpoint: Endpoint
    model: str
    body: JSON
    raw: bytes
    stream: bool = False
    include_usage: bool = False  # the client asked for stream_options.include_usage
    request_id: str = ""
    tags: tuple[str, ...] = ()
    timeout_s: float | None = None  # the client's x-interlock-timeout, already bounded
    cache_mode: str | None = None  # x-interlock-cache: bypass | refresh
    cache_control: str | None = None  # the client's Cache-Control header
    cache_namespace: str | None = None  # the tenant's cache namespace, when caching applies
    prompt_digests: list[str] | None = None  # prompt-cache affinity (routing/affinity.py)
    tier_pin: str | None = None  # the client's x-interlock-tier (tiered aliases only)
    tier: str | None = None  # the tier a tiered alias chose (ledger, x-interlock-tier)
    tier_reason: str | None = None  # why (x-interlock-route-reason)
    tier_choice: Any = None  # the routing.tiers.TierChoice, for escalation
    # Awaited with a deployment's name before each upstream attempt: spend reserves every
    # billable attempt after the first (set by gateway/abandoned.py, called by the executor).
    before_attempt: Callable[[str], Awaitable[None]] | None = None
    # Told about every upstream attempt the executor abandons while the provider may still
    # bill it (set by gateway/abandoned.py, which records and charges each one).
    on_abandoned: Callable[[Abandoned], None] | None = None
    # Every upstream attempt made for this request so far, across retries, failovers,
    # fallback aliases and escalation (the executor appends through the plan): what
    # x-interlock-attempts, the access log and the ledger count.
    attempts: list[Attempt] = field(default_factory=list)


class Chunk:
    """One streamed OpenAI ``chat.completion.chunk`` (or completion chunk).

    Passthrough chunks keep the upstream's bytes (``raw``) and are parsed only if
    something asks for ``obj``: on the streaming hot path most never are.
    """

    __slots__ = ("_obj", "raw")

    def __init__(self, obj: JSON | None = None, raw: bytes | None = None) -> None:
        if obj is None and raw is None:
            raise ValueError("a chunk needs obj or raw")
        self._obj = obj
        self.raw = raw  # the upstream's own bytes when they need no rewrite

    @property
    def obj(self) -> JSON:
        if self._obj is None:
            assert self.raw is not None
            parsed = orjson.loads(self.raw)
            self._obj = parsed if isinstance(parsed, dict) else {"value": parsed}
        return self._obj

    def __repr__(self) -> str:
        return f"Chunk({self._obj!r}, raw={self.raw!r})"


@dataclass(slots=True)
class Attempt:
    deployment: str
    provider: str
    status: str  # "ok" or an error code
    latency_s: float = 0.0


@dataclass(slots=True)
class GatewayResponse:
    """A complete (non-streamed) answer in OpenAI shape."""

    status: int
    body: bytes
    usage: Usage | None
    deployment: str
    provider: str
    attempts: list[Attempt] = field(default_factory=list)
    fallback: str | None = None  # the alias that answered, when not the one asked for
    cost_usd: Decimal | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    cache: str = "miss"  # x-interlock-cache: miss, hit-l1/l2/l3, hit-coalesced, bypass


@dataclass(slots=True)
class Abandoned:
    """An upstream attempt the gateway stopped waiting for while the provider may still
    bill it: a hedge that lost the race, an attempt cut by the gateway's timeouts or by the
    client's deadline. It is not cut: it goes on in the background, bounded by its
    deployment's ``timeouts.total_s`` from its start, and ``answer`` resolves when it ends:

    * a :class:`GatewayResponse` whose usage is what the provider bills for it;
    * ``None``: no answer within the bound (a hang); the provider may have billed up to
      the worst case of what was sent;
    * raises an ``InterlockError``: it ended without an answer the provider bills (an
      error status, a reset or refused connection before any response).
    """

    why: str  # "hedge" (lost the race), "timeout" (the gateway's), "deadline" (the client's)
    request: GatewayRequest  # what was sent (a micro-batch's combined request, say)
    alias: str  # the alias whose plan made the attempt
    deployment: str
    provider: str
    started_at: float  # Unix time the attempt started
    answer: Awaitable[GatewayResponse | None]


@dataclass(slots=True)
class GatewayStream:
    """A streamed answer: canonical OpenAI chunks, usage filled in when the stream ends."""

    chunks: AsyncGenerator[list[Chunk], None]  # one list per upstream read
    deployment: str
    provider: str
    usage: Usage = field(default_factory=Usage)
    attempts: list[Attempt] = field(default_factory=list)
    completed: bool = False
    fallback: str | None = None
    cost_usd: Decimal | None = None
    error_code: str | None = None  # set when the stream ended with an error event
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    cache: str = "miss"
    cache_store: Any = None  # (key, assembler, ttl) when the finished stream is to be cached
    # Filled by the gateway for the accounting done when the stream ends.
    admission: Any = None
    limits: Any = None
    principal: Principal | None = None
    alias: str = ""
    started: float = 0.0
