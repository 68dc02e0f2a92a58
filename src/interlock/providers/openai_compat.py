"""OpenAI-compatible wire format: OpenAI, Azure OpenAI, vLLM, Ollama, TGI, llama.cpp, ...

The client already speaks this format, so the fast path forwards the client's bytes
untouched; the body is re-serialised only when the upstream model name differs, a stream
needs ``stream_options.include_usage`` added so usage is always captured, or the model's
rules (providers/rules/openai.py) change a parameter: ``max_tokens`` ->
``max_completion_tokens``, the canonical ``thinking`` extension -> ``reasoning_effort``,
sampling knobs a reasoning model fixes itself dropped with a warning, foreign tool-call
ids normalised.

Azure has two URL shapes (``kind: azure``): the classic deployment routes
(``{base}/openai/deployments/{deployment}/chat/completions?api-version=...``) and the v1
API (``api_version: v1``, or a ``base_url`` ending in ``/openai/v1``:
``{base}/openai/v1/chat/completions``, the deployment in the body's ``model``, no
api-version).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson

from interlock.errors import UpstreamError, UpstreamProtocolError, UpstreamUnavailable
from interlock.providers import capabilities
from interlock.providers.base import (
    Completion,
    Target,
    UpstreamCall,
    json_object,
    map_status,
    upstream_message,
)
from interlock.providers.capabilities import Adjust, ModelRules, normalise_tool_id
from interlock.providers.rules.openai import (
    DEFAULT_EFFORT,
    EFFORT_ORDER,
    EFFORTS,
    SAMPLING_WITHOUT_REASONING,
)
from interlock.providers.sse import SSEParser
from interlock.providers.tokens import (
    Generated,
    answer_usage,
    count_request_tokens,
    stream_usage,
)
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest, Usage

_PATHS = {
    Endpoint.CHAT: "chat/completions",
    Endpoint.COMPLETIONS: "completions",
    Endpoint.EMBEDDINGS: "embeddings",
}


AZURE_CLASSIC_VERSION = "2024-10-21"  # the default api-version of the classic routes
AZURE_V1 = "v1"  # api_version of the v1 API


def azure_v1_base(base_url: str) -> str:
    """The resource endpoint of an Azure v1 ``base_url`` (which may already end in
    ``/openai/v1``)."""
    base = base_url.rstrip("/")
    return base[: -len("/openai/v1")] if base.endswith("/openai/v1") else base


class OpenAIAdapter:
    wire = "openai"

    def __init__(self, *, azure: bool = False, kind: str | None = None) -> None:
        self.azure = azure
        # The capability table consulted: openai | azure | openai_compatible.
        self.kind = kind or ("azure" if azure else "openai")

    def supports(self, endpoint: Endpoint) -> bool:
        return True

    def url(self, endpoint: Endpoint, target: Target) -> str:
        base = target.base_url.rstrip("/")
        path = _PATHS[endpoint]
        if self.azure:
            if target.api_version == AZURE_V1 or base.endswith("/openai/v1"):
                return f"{azure_v1_base(base)}/openai/v1/{path}"
            version = target.api_version or AZURE_CLASSIC_VERSION
            return f"{base}/openai/deployments/{target.model}/{path}?api-version={version}"
        return f"{base}/{path}"

    def build(self, req: GatewayRequest, target: Target) -> UpstreamCall:
        body = req.raw
        needs_usage = req.stream and not req.include_usage
        conformed: dict[str, Any] | None = None
        warnings: tuple[str, ...] = ()
        if req.endpoint is Endpoint.CHAT:
            conformed, warnings = conform_chat(self.kind, target.rules_model, req.body)
        elif "thinking" in req.body:
            conformed = {k: v for k, v in req.body.items() if k != "thinking"}
            warnings = ("thinking dropped: not a parameter of this endpoint",)
        if conformed is not None or req.model != target.model or needs_usage or not body:
            data = conformed if conformed is not None else dict(req.body)
            data["model"] = target.model
            if needs_usage:
                opts = data.get("stream_options")
                data["stream_options"] = {
                    **(opts if isinstance(opts, dict) else {}),
                    "include_usage": True,
                }
            body = orjson.dumps(data)
        headers = {"content-type": "application/json", **target.headers}
        if req.stream:
            headers["accept"] = "text/event-stream"
        return UpstreamCall(
            "POST", self.url(req.endpoint, target), headers, body, req.stream, warnings
        )

    def parse(self, req: GatewayRequest, target: Target, status: int, body: bytes) -> Completion:
        data = json_object(body)
        if "error" in data and "choices" not in data and "data" not in data:
            raise UpstreamUnavailable(
                f"provider {target.provider} returned an error: {upstream_message(body)[:300]}"
            )
        usage = Usage.from_openai(data.get("usage"))
        if usage is None:
            usage = _estimate(req, data)
        return Completion(body, usage)

    def stream_decoder(self, req: GatewayRequest, target: Target) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(req, target.provider)

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        err = map_status(status, headers, body, "upstream")
        if status == 400 and b"context_length_exceeded" in body:
            err.code = "context_length_exceeded"
        return err


# --------------------------------------------------------------------------- model rules

# Translated wherever they appear (deprecated by the spec, with an equivalent).
_ALWAYS = frozenset({"thinking", "functions", "function_call", "reasoning_effort"})


@lru_cache(maxsize=1024)
def _rules(kind: str, model: str) -> tuple[ModelRules, frozenset[str]]:
    """The family of ``model`` and the top-level keys that make a body need conforming."""
    rules = capabilities.rules_for(kind, model)
    keys = set(_ALWAYS | rules.unsupported | rules.refused | rules.ranges.keys())
    keys.update(p for pair in rules.exclusive for p in pair)
    keys.add("max_tokens" if kind != "openai_compatible" else "max_completion_tokens")
    return rules, frozenset(keys)


def _effort_for_budget(budget: int) -> str:
    return "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"


def _nearest_effort(family: str, value: str) -> str | None:
    """``value`` if the family takes it, else the nearest value it takes (ties: higher)."""
    allowed = EFFORTS.get(family)
    if allowed is None or value in allowed:
        return value
    if value not in EFFORT_ORDER:
        return None
    at = EFFORT_ORDER.index(value)
    return min(allowed, key=lambda v: (abs(EFFORT_ORDER.index(v) - at), -EFFORT_ORDER.index(v)))


def _thinking(rules: ModelRules, data: dict[str, Any], adj: Adjust) -> None:
    """Interlock's canonical ``thinking`` extension (Anthropic's object, from the inbound
    /v1/messages surface) as ``reasoning_effort``; never sent upstream as is."""
    thinking = data.pop("thinking")
    if not rules.thinking:
        adj.drop("thinking", f"{rules.family} models take no reasoning effort")
        return
    if data.get("reasoning_effort") is not None:
        adj.drop("thinking", "reasoning_effort is set")
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if kind == "enabled" and isinstance(budget, int) and not isinstance(budget, bool):
        data["reasoning_effort"] = _effort_for_budget(budget)
    elif kind == "disabled":
        data["reasoning_effort"] = "none"
    elif kind == "adaptive":
        adj.note("thinking adaptive: the model's default reasoning effort")
    else:
        adj.drop("thinking", "not an enabled, disabled or adaptive thinking object")


def _legacy_functions(data: dict[str, Any]) -> None:
    """``functions`` / ``function_call`` (deprecated) as ``tools`` / ``tool_choice``; left
    as sent when the history carries legacy function turns (their answers have no ids)."""
    messages = data.get("messages")
    if isinstance(messages, list) and any(
        isinstance(m, dict) and (m.get("role") == "function" or "function_call" in m)
        for m in messages
    ):
        return
    functions = data.pop("functions", None)
    if isinstance(functions, list) and "tools" not in data:
        data["tools"] = [{"type": "function", "function": f} for f in functions]
    choice = data.pop("function_call", None)
    if choice is not None and "tool_choice" not in data:
        if isinstance(choice, dict) and isinstance(choice.get("name"), str):
            data["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        elif choice in ("none", "auto"):
            data["tool_choice"] = choice


def _needs_ids(rules: ModelRules, messages: Any) -> bool:
    rule = rules.tool_id
    if rule is None or not isinstance(messages, list):
        return False
    for m in messages:
        if not isinstance(m, dict):
            continue
        tid = m.get("tool_call_id")
        if isinstance(tid, str) and not rule.accepts(tid):
            return True
        for call in m.get("tool_calls") or ():
            cid = call.get("id") if isinstance(call, dict) else None
            if isinstance(cid, str) and not rule.accepts(cid):
                return True
    return False


def _normalise_ids(rules: ModelRules, data: dict[str, Any]) -> None:
    """Foreign tool-call ids (another provider's, after a failover) in a form this one
    takes: each message and tool call copied, never the client's objects changed."""
    rule = rules.tool_id
    out: list[Any] = []
    for m in data["messages"]:
        if not isinstance(m, dict):
            out.append(m)
            continue
        m = dict(m)
        if isinstance(m.get("tool_call_id"), str):
            m["tool_call_id"] = normalise_tool_id(m["tool_call_id"], rule)
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            m["tool_calls"] = [
                {**c, "id": normalise_tool_id(c["id"], rule)}
                if isinstance(c, dict) and isinstance(c.get("id"), str)
                else c
                for c in calls
            ]
        out.append(m)
    data["messages"] = out


def conform_chat(
    kind: str, model: str, body: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """A chat body made to fit ``model``'s rules on a provider of ``kind``: a new dict (the
    request's body is reused for failover: never changed) and the warnings, or ``None``
    when the body fits as it is (the fast path keeps the client's bytes)."""
    rules, keys = _rules(kind, model)
    messages = body.get("messages")
    if keys.isdisjoint(body) and not _needs_ids(rules, messages):
        return None, ()
    data = dict(body)
    adj = Adjust(rules)
    if "thinking" in data:
        _thinking(rules, data, adj)
    if "functions" in data or "function_call" in data:
        _legacy_functions(data)
    effort = data.get("reasoning_effort")
    if isinstance(effort, str) and rules.thinking:
        nearest = _nearest_effort(rules.family, effort)
        if nearest is None:
            del data["reasoning_effort"]
            adj.drop("reasoning_effort", f"'{effort}' is not a reasoning effort")
        elif nearest != effort:
            data["reasoning_effort"] = nearest
            adj.note(f"reasoning_effort '{effort}' sent as '{nearest}' ({rules.family} models)")
        effort = data.get("reasoning_effort")
    if (
        rules.family in SAMPLING_WITHOUT_REASONING
        and (effort or DEFAULT_EFFORT.get(rules.family)) == "none"
    ):
        # Without reasoning these families take the sampling parameters.
        rules = dataclasses.replace(
            rules,
            unsupported=rules.unsupported - {"temperature", "top_p", "top_logprobs"},
            refused=rules.refused - {"logprobs"},
        )
    if kind != "openai_compatible" and "max_tokens" in data:
        cap = data.pop("max_tokens")
        if data.get("max_completion_tokens") is None:
            if cap is not None:
                data["max_completion_tokens"] = cap
        elif cap is not None:
            adj.drop("max_tokens", "max_completion_tokens is set")
    elif (
        kind == "openai_compatible"
        and data.get("max_tokens") is None
        and isinstance(data.get("max_completion_tokens"), int)
    ):
        # Self-hosted servers (llama.cpp, TGI, older vLLM/Ollama) read max_tokens and may
        # ignore max_completion_tokens: an ignored cap would let the answer outgrow the
        # budget reservation. Both are sent: a server that knows either stops at the cap.
        data["max_tokens"] = data["max_completion_tokens"]
    adj.apply_common(rules, data)
    if _needs_ids(rules, data.get("messages")):
        _normalise_ids(rules, data)
    return data, tuple(adj.warnings)


def _estimate(req: GatewayRequest, data: JSON) -> Usage:
    """An answer without usage: the tokenizer counts the request and what came back."""
    if "choices" not in data:  # embeddings: the input is all there is
        return Usage(count_request_tokens(req.body), 0, estimated=True)
    return answer_usage(req.body, data)


_USAGE_NULL = re.compile(rb'"usage"\s*:\s*null')


def _braced(data: bytes) -> bool:
    """An event whose JSON object is written with whitespace around it (pretty-printed)."""
    stripped = data.strip()
    return stripped[:1] == b"{" and stripped[-1:] == b"}"


class OpenAIStreamDecoder:
    """SSE in, chunks out. Events that cannot carry usage or an error are passed through
    unparsed (a structural check only): parsing every event was a tenth of the CPU of a
    streamed request (docs/benchmarks.md)."""

    __slots__ = (
        "_done",
        "_final",
        "_keep_usage_chunk",
        "_parser",
        "_provider",
        "_req",
        "generated",
        "usage",
    )

    def __init__(self, req: GatewayRequest, provider: str) -> None:
        self._parser = SSEParser()
        self._req = req
        self._provider = provider
        self._keep_usage_chunk = req.include_usage
        self._done = False
        self._final = False  # the usage chunk (no choices) arrived
        # Counted only if the upstream never reports usage (it was cut, or the client left).
        self.generated = Generated()
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> list[Chunk]:
        out: list[Chunk] = []
        for ev in self._parser.feed(data):
            chunk = self._event(ev.data)
            if chunk is not None:
                out.append(chunk)
        return out

    def _event(self, data: bytes) -> Chunk | None:
        if data == b"[DONE]":
            self._done = True
            return None
        if b"\n" in data:
            # A pretty-printed event (several data: lines): written again on one line, as
            # the client's stream carries each event on one data: line.
            data = self._compact(data)
        # Only an event that may carry usage or an error is parsed: "usage" in the bytes
        # but not as the ``"usage": null`` OpenAI writes in every chunk of such a stream.
        usage_maybe = b"usage" in data and (
            data.count(b"usage") != 1 or _USAGE_NULL.search(data) is None
        )
        if not usage_maybe and b'"error"' not in data:
            if (data[:1] != b"{" or data[-1:] != b"}") and not _braced(data):
                raise UpstreamProtocolError(
                    f"provider {self._provider} sent a malformed stream event"
                )
            self.generated.add_raw(data)
            return Chunk(raw=data)
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"provider {self._provider} sent a malformed stream event"
            ) from None
        if not isinstance(obj, dict):
            raise UpstreamProtocolError(f"provider {self._provider} sent a malformed stream event")
        if "error" in obj and "choices" not in obj:
            raise UpstreamUnavailable(
                f"provider {self._provider} failed mid-stream: {upstream_message(data)[:300]}"
            )
        self.generated.add_raw(data)  # raw, like the rest: the order of the text matters
        usage = obj.get("usage")
        if isinstance(usage, dict) and usage:
            # Some servers (vLLM's continuous usage stats) repeat a running count in every
            # chunk; the one without choices is the final count.
            self.usage = Usage.from_openai(usage)
            self._final = self._final or not obj.get("choices")
            if not obj.get("choices") and not self._keep_usage_chunk:
                return None
        return Chunk(obj, data)

    def _compact(self, data: bytes) -> bytes:
        try:
            return orjson.dumps(orjson.loads(data))
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"provider {self._provider} sent a malformed stream event"
            ) from None

    def close(self) -> list[Chunk]:
        out = [c for ev in self._parser.flush() if (c := self._event(ev.data)) is not None]
        # No usage from the upstream: left to partial_usage, which the executor runs in a
        # worker thread (the tokenizer stays off the event loop).
        if not self._done:
            raise UpstreamProtocolError(f"provider {self._provider} ended the stream before [DONE]")
        return out

    @property
    def completed(self) -> bool:
        return self._done

    def partial_usage(self, in_flight: bool) -> Usage:
        if self.usage is not None and (self._final or self._done):
            return self.usage
        return stream_usage(self._req.body, self.usage, self.generated, in_flight)
