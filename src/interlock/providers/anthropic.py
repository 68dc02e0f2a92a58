"""Anthropic Messages wire format (``POST /v1/messages``), translated from and to OpenAI chat.

Outbound only: the client's OpenAI chat body becomes a Messages body, Anthropic's
message (or its event stream) becomes an OpenAI ``chat.completion`` (or canonical
``chat.completion.chunk`` dicts). Credentials (``x-api-key``) and ``anthropic-version``
arrive in ``Target.headers``; this module never adds them.

The target model's family (``providers/rules/anthropic.py``) decides what is sent: each
change is a warning on the call (``x-interlock-warnings``). The shapes are those of the
official ``anthropic`` SDK 2.17.0 (``MessageCreateParams``), which the simulated provider
enforces (``sim/conformance/anthropic.py``).

- ``n > 1``, ``logprobs``, audio and web search are refused (400 ``unsupported_parameter``).
- ``temperature`` is clamped into 0..1; with ``top_p`` on families that refuse the pair,
  ``top_p`` is dropped; families without sampling parameters drop them all.
- ``reasoning_effort`` -> ``thinking`` (a budget: low 1024, medium 4096, high 16384
  tokens, below ``max_tokens``) or adaptive thinking with ``output_config.effort``; the
  canonical extension ``thinking`` (Anthropic's own object) is forwarded as is.
- ``response_format`` ``json_schema`` -> ``output_config.format`` (native structured
  output) where the family has it, with the schema rewritten as the SDK's
  ``transform_schema`` does; else (and for ``json_object``) an instruction appended to the
  system prompt, with a warning (asked for, not constrained).
- ``function.strict`` -> the tool's ``strict`` where the family has it.
- Tool-call ids another provider issued are mapped to Anthropic's id rule (stable hash).
- ``thinking`` blocks in the answer are not content: they travel as the canonical
  extension ``reasoning_content`` / ``thinking_blocks`` (signed, for /v1/messages); their
  tokens are reported as ``reasoning_tokens``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import orjson

from interlock.errors import (
    InvalidRequest,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from interlock.providers.anthropic_convert import (
    STOP_TO_FINISH,
    parse_data_url,
    reasoning_extensions,
    thinking_stream_delta,
    url_to_source,
    usage_from_anthropic,
)
from interlock.providers.base import (
    Completion,
    Target,
    UpstreamCall,
    json_object,
    map_status,
    retry_after_seconds,
    upstream_message,
)
from interlock.providers.capabilities import (
    Adjust,
    ModelRules,
    ToolIdRule,
    normalise_tool_id,
    rules_for,
)
from interlock.providers.rules.anthropic import (
    EFFORT_BUDGET,
    EFFORT_BUDGET_TOP,
    MIN_BUDGET,
    Claude,
    claude_for,
    max_output,
)
from interlock.providers.sse import SSEParser
from interlock.providers.tokens import Generated, answer_usage, count_request_tokens, stream_usage
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest, Usage

PROVIDER = "anthropic"
DEFAULT_MAX_TOKENS = 4096

_JSON_OBJECT_HINT = (
    "Respond with a single valid JSON object only: no prose, no Markdown code fences."
)


class AnthropicAdapter:
    wire = "anthropic"

    def supports(self, endpoint: Endpoint) -> bool:
        return endpoint is Endpoint.CHAT

    def build(self, req: GatewayRequest, target: Target) -> UpstreamCall:
        adj = Adjust(_family(target.model)[0])
        body = to_anthropic(req.body, target.model, adj)
        if target.prompt_caching:
            add_cache_markers(body)
        if req.stream:
            body["stream"] = True
        headers = {"content-type": "application/json", **target.headers}
        if req.stream:
            headers["accept"] = "text/event-stream"
        url = f"{target.base_url.rstrip('/')}/v1/messages"
        return UpstreamCall(
            "POST", url, headers, orjson.dumps(body), req.stream, warnings=tuple(adj.warnings)
        )

    def parse(self, req: GatewayRequest, target: Target, status: int, body: bytes) -> Completion:
        data = json_object(body)
        if data.get("type") == "error":
            raise _event_error(data, target.provider)
        completion, usage = to_openai_completion(data, req.model)
        if usage is None:
            usage = answer_usage(req.body, completion)
        return Completion(orjson.dumps(completion), usage)

    def stream_decoder(self, req: GatewayRequest, target: Target) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(req, target.provider)

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        kind = _error_type(body)
        detail = upstream_message(body)[:500]
        suffix = f": {detail}" if detail else ""
        retry_after = retry_after_seconds(headers)
        if status == 529 or kind == "overloaded_error":
            return UpstreamUnavailable(
                f"provider {PROVIDER} is overloaded{suffix}",
                upstream_status=status,
                retry_after=retry_after,
            )
        if status == 400 and "credit balance" in detail.lower():
            # The gateway's account is out of credit: the operator's problem, and another
            # deployment may still answer, so not a client error.
            return UpstreamUnavailable(
                f"provider {PROVIDER} refused the gateway's account{suffix}", upstream_status=status
            )
        err = map_status(status, headers, body, PROVIDER)
        if status == 400 and "prompt is too long" in detail.lower():
            err.code = "context_length_exceeded"
        if status >= 500 and err.retry_after is None:
            err.retry_after = retry_after
        return err


# --- request: OpenAI chat -> Anthropic Messages -------------------------------------------


_OPENING = "(conversation start)"


@lru_cache(maxsize=256)
def _family(model: str) -> tuple[ModelRules, Claude, int]:
    """The model's rules, its Anthropic-only facts and its maximum output (the tables are
    static; a deployment's model is looked up once)."""
    rules = rules_for(PROVIDER, model)
    return rules, claude_for(rules), max_output(model)


def to_anthropic(body: JSON, model: str, adj: Adjust | None = None) -> JSON:
    """Translate an OpenAI chat body into an Anthropic Messages body (without ``stream``)
    for ``model``, following its family's rules; what changed is noted on ``adj``.
    ``body`` is not modified (it is reused for failover to other deployments)."""
    rules, claude, _ = _family(model)
    if adj is None:
        adj = Adjust(rules)
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest(
            f"n > 1 is not supported by provider {PROVIDER}",
            param="n",
            code="unsupported_parameter",
        )
    src = dict(body)  # apply_common changes top-level keys only
    adj.apply_common(rules, src)
    raw_messages = src.get("messages")
    if not isinstance(raw_messages, list):
        raise InvalidRequest("messages must be a list", param="messages")

    ids = rules.tool_id
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, msg in enumerate(raw_messages):
        if not isinstance(msg, dict):
            raise InvalidRequest("each message must be an object", param=f"messages[{i}]")
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(msg.get("content"), f"messages[{i}].content"))
        elif role == "user":
            _append(turns, "user", _user_blocks(msg.get("content"), i))
        elif role == "assistant":
            thinks = claude.thinking != "none"
            _append(turns, "assistant", _assistant_blocks(msg, i, ids, thinks))
        elif role == "tool":
            _append(turns, "user", [_tool_result(msg, i, ids)])
        else:
            raise InvalidRequest(
                f"message role {role!r} is not supported by provider {PROVIDER}",
                param=f"messages[{i}].role",
            )
    if not turns:
        raise InvalidRequest(
            "messages must contain at least one user or assistant message", param="messages"
        )
    if turns[0]["role"] == "assistant":
        # Anthropic conversations start with a user turn; an OpenAI one may open with the
        # assistant (a greeting, or a user turn that was only empty text). A neutral user
        # turn keeps the assistant's words (the Bedrock adapter does the same).
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": _OPENING}]})
        adj.note("a user turn was added before the first assistant message (Anthropic needs one)")
    if any(isinstance(m, dict) and m.get("name") for m in raw_messages):
        adj.drop("messages[].name", "Anthropic messages have no author name")

    max_tokens, explicit = _max_tokens(src)
    out: JSON = {"model": model, "max_tokens": max_tokens}
    output_config: JSON = {}
    hint = _response_format(src.get("response_format"), rules, adj, output_config)
    if hint:
        system.append({"type": "text", "text": hint})
    if system:
        if any("cache_control" in b for b in system):
            out["system"] = system
        else:
            out["system"] = "\n\n".join(b["text"] for b in system)
    out["messages"] = [_compact(t) for t in turns]

    tools = src.get("tools")
    forced = False
    if tools:
        out["tools"] = _tools(tools, rules, adj)
        choice = _tool_choice(src.get("tool_choice"))
        forced = choice.get("type") in ("any", "tool")
        if src.get("parallel_tool_calls") is False and choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
        if choice != {"type": "auto"}:
            out["tool_choice"] = choice

    stop = src.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    given = [s for s in stops if isinstance(s, str) and s]
    kept = [s for s in given if s.strip()]
    if len(kept) < len(given):
        adj.note("stop: whitespace-only stop sequences dropped (Anthropic refuses them)")
    if kept:
        out["stop_sequences"] = kept

    loop_ok = _loop_can_think(out["messages"])
    thinking, effort = _thinking(
        src, claude, adj, out, explicit=explicit, forced=forced, loop_ok=loop_ok
    )
    if thinking is not None:
        out["thinking"] = thinking
    if effort is not None:
        output_config["effort"] = effort
    _cap_output(out, model, adj)
    _sampling(src, claude, adj, out, thinking_on=_thinks(thinking))
    if output_config:
        out["output_config"] = output_config
    user = src.get("user") or src.get("safety_identifier")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    return out


def _cap_output(out: JSON, model: str, adj: Adjust) -> None:
    """``max_tokens`` within the model's maximum output (the API refuses more); a thinking
    budget stays below it."""
    limit = _family(model)[2]
    if out["max_tokens"] <= limit:
        return
    adj.note(f"max_tokens lowered to {limit} (the most {model} writes)")
    out["max_tokens"] = limit
    thinking = out.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if isinstance(thinking, dict) and isinstance(budget, int) and budget >= limit:
        out["thinking"] = {**thinking, "budget_tokens": limit - 1}


def _loop_can_think(messages: list[JSON]) -> bool:
    """False in a tool loop (the last turn answers tool calls) whose assistant turn does
    not start with a thinking block: what Anthropic refuses with thinking on."""
    if len(messages) < 2 or not _has(messages[-1], "tool_result"):
        return True
    content = messages[-2]["content"]
    if not isinstance(content, list) or not _has(messages[-2], "tool_use"):
        return True
    return content[0].get("type") in ("thinking", "redacted_thinking")


def _has(message: JSON, kind: str) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(b.get("type") == kind for b in content)


def _thinks(thinking: JSON | None) -> bool:
    return thinking is not None and thinking.get("type") != "disabled"


_LOOP_NOTE = "thinking off: the tool calls being answered carry no signed thinking block"


def _thinking(
    src: JSON,
    claude: Claude,
    adj: Adjust,
    out: JSON,
    *,
    explicit: bool,
    forced: bool,
    loop_ok: bool,
) -> tuple[JSON | None, str | None]:
    """(``thinking``, ``output_config.effort``) for the request: Anthropic's own
    ``thinking`` object (the inbound Messages surface) as is, else ``reasoning_effort``.
    ``loop_ok`` False: with thinking on, Anthropic wants the assistant turn whose tool
    calls are being answered to start with its signed thinking block, and this
    conversation carries none (another provider's turn, a client that dropped it), so it
    cannot think (a warning says so)."""
    native = src.get("thinking")
    requested = src.get("reasoning_effort")
    if native is not None:
        if not isinstance(native, dict) or not isinstance(native.get("type"), str):
            raise InvalidRequest("thinking must be an object with a type", param="thinking")
        # Alongside Anthropic's own thinking object, reasoning_effort is its effort
        # (the inbound Messages API maps output_config.effort there).
        effort = None
        if isinstance(requested, str) and requested != "none":
            effort = _nearest_effort(requested, claude.efforts) if requested in _EFFORTS else None
            if effort is None:
                adj.drop("reasoning_effort", f"{adj.family} models take no effort level")
        kind = native["type"]
        if claude.thinking == "none":
            if kind != "disabled":
                adj.drop("thinking")
            return None, None
        if kind != "disabled" and not loop_ok:
            adj.note(_LOOP_NOTE)
            return None, effort
        if kind == "enabled" and claude.thinking == "adaptive_only":
            adj.note(f"thinking: adaptive instead of a token budget ({adj.family} models)")
            adaptive: JSON = {"type": "adaptive"}
            if "display" in native:
                adaptive["display"] = native["display"]
            return adaptive, effort
        if kind == "adaptive" and claude.thinking == "budget":
            adj.note(f"thinking: a token budget instead of adaptive ({adj.family} models)")
            return _budget(EFFORT_BUDGET["medium"], out, explicit, adj), effort
        return dict(native), effort
    if requested is None:
        return None, None
    if not isinstance(requested, str) or requested not in _EFFORTS:
        raise InvalidRequest(
            f"reasoning_effort must be one of {', '.join(_EFFORTS)}", param="reasoning_effort"
        )
    if requested == "none":
        return None, None
    if claude.thinking == "none":
        adj.drop("reasoning_effort", f"{adj.family} models do not think")
        return None, None
    if forced:
        adj.drop("reasoning_effort", "Anthropic does not think with a forced tool_choice")
        return None, None
    if out["max_tokens"] == 0:
        return None, None
    effort = _nearest_effort(requested, claude.efforts)
    if not loop_ok:
        adj.note(_LOOP_NOTE)
        return None, effort
    if claude.thinking in ("adaptive", "adaptive_only"):
        return {"type": "adaptive"}, effort
    return _budget(EFFORT_BUDGET.get(requested, EFFORT_BUDGET_TOP), out, explicit, adj), effort


_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


def _nearest_effort(level: str, efforts: tuple[str, ...]) -> str | None:
    """The family's effort level closest to OpenAI's ``level`` without exceeding it."""
    if not efforts:
        return None
    order = _EFFORTS[2:]  # low .. max
    wanted = order.index("low" if level == "minimal" else level)
    allowed = [e for e in efforts if order.index(e) <= wanted]
    return allowed[-1] if allowed else efforts[0]


def _budget(budget: int, out: JSON, explicit: bool, adj: Adjust) -> JSON:
    """``thinking.type: enabled``; ``budget_tokens`` must be >= 1024 and below
    ``max_tokens``, which counts thinking too."""
    max_tokens: int = out["max_tokens"]
    if not explicit:
        out["max_tokens"] = max_tokens + budget
        adj.note(
            f"max_tokens raised to {out['max_tokens']} "
            f"(default {max_tokens} + thinking budget {budget})"
        )
    elif budget >= max_tokens:
        if max_tokens - 1 >= MIN_BUDGET:
            budget = max_tokens - 1
            adj.note(f"thinking budget capped at {budget} (below max_tokens {max_tokens})")
        else:
            budget = MIN_BUDGET
            out["max_tokens"] = max_tokens + budget
            adj.note(
                f"max_tokens raised to {out['max_tokens']} "
                f"(thinking needs a budget of at least {MIN_BUDGET} below max_tokens)"
            )
    return {"type": "enabled", "budget_tokens": budget}


def _number(value: Any) -> float | int | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def _sampling(src: JSON, claude: Claude, adj: Adjust, out: JSON, *, thinking_on: bool) -> None:
    """temperature / top_p / top_k, already clamped and paired by the family's rules."""
    if claude.sampling == "none":
        return  # the rules dropped them (with warnings)
    temperature = _number(src.get("temperature"))
    top_p = _number(src.get("top_p"))
    top_k = src.get("top_k")
    if thinking_on:
        # Thinking takes no temperature or top_k change and top_p only in 0.95..1.
        why = "not compatible with thinking"
        if temperature is not None and temperature != 1:
            adj.drop("temperature", why)
            temperature = None
        if top_k is not None:
            adj.drop("top_k", why)
            top_k = None
        if top_p is not None and not 0.95 <= top_p <= 1:
            adj.drop("top_p", "thinking takes top_p 0.95-1 only")
            top_p = None
    if temperature is not None:
        out["temperature"] = float(temperature)
    if top_p is not None:
        out["top_p"] = float(top_p)
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
        out["top_k"] = top_k


_EPHEMERAL: JSON = {"type": "ephemeral"}


def add_cache_markers(body: JSON) -> None:
    """Mark the stable prefix for Anthropic's prompt cache: the last tool, the system
    prompt and the turn before the newest user message (3 of the 4 breakpoints allowed).
    A request that carries its own cache_control anywhere is left as the client sent it.
    """
    if b'"cache_control"' in orjson.dumps(body):
        return
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[-1], dict):
        tools[-1] = {**tools[-1], "cache_control": _EPHEMERAL}
    system = body.get("system")
    if isinstance(system, str) and system:
        body["system"] = [{"type": "text", "text": system, "cache_control": _EPHEMERAL}]
    elif isinstance(system, list) and system and isinstance(system[-1], dict):
        system[-1] = {**system[-1], "cache_control": _EPHEMERAL}
    messages = body.get("messages")
    if isinstance(messages, list) and len(messages) >= 2:
        prefix = messages[-2]
        content = prefix.get("content") if isinstance(prefix, dict) else None
        if isinstance(content, str) and content:
            prefix["content"] = [{"type": "text", "text": content, "cache_control": _EPHEMERAL}]
        elif isinstance(content, list) and content and isinstance(content[-1], dict):
            content[-1] = {**content[-1], "cache_control": _EPHEMERAL}


def _max_tokens(body: JSON) -> tuple[int, bool]:
    """(max_tokens, whether the client set it). 0 is Anthropic's cache warming: the
    prompt is cached, nothing is generated."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidRequest(f"{key} must be a non-negative integer", param=key)
        return value, True
    return DEFAULT_MAX_TOKENS, False


def _append(turns: list[JSON], role: str, blocks: list[JSON]) -> None:
    """Anthropic wants alternating turns: consecutive same-role messages merge into one."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def _compact(turn: JSON) -> JSON:
    blocks: list[JSON] = turn["content"]
    # Anthropic requires tool results to lead the user turn that answers a tool call.
    if turn["role"] == "user" and any(b["type"] == "tool_result" for b in blocks):
        blocks = sorted(blocks, key=lambda b: b["type"] != "tool_result")
    if len(blocks) == 1 and blocks[0]["type"] == "text" and "cache_control" not in blocks[0]:
        return {"role": turn["role"], "content": blocks[0]["text"]}
    return {"role": turn["role"], "content": blocks}


def _text_blocks(content: Any, param: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=param)
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise InvalidRequest("only text parts are allowed here", param=f"{param}[{j}]")
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if not isinstance(text, str):
            raise InvalidRequest("a text part needs a string text", param=f"{param}[{j}]")
        if text:
            blocks.append(_with_cache(part, {"type": "text", "text": text}))
    return blocks


def _user_blocks(content: Any, i: int) -> list[JSON]:
    param = f"messages[{i}].content"
    if content is None or isinstance(content, str):
        return _text_blocks(content, param)
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=param)
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else "text"
        if kind == "text":
            blocks.extend(_text_blocks([part], param))
        elif kind == "image_url" and isinstance(part, dict):
            blocks.append(_with_cache(part, _image(part.get("image_url"), f"{param}[{j}]")))
        elif kind == "file" and isinstance(part, dict):
            blocks.append(_with_cache(part, _document(part.get("file"), f"{param}[{j}]")))
        else:
            raise InvalidRequest(
                f"content part type {kind!r} is not supported by provider {PROVIDER}",
                param=f"{param}[{j}].type",
            )
    return blocks


def _image(image_url: Any, param: str) -> JSON:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise InvalidRequest("image_url.url must be a non-empty string", param=f"{param}.image_url")
    if url.startswith("data:"):
        parsed = parse_data_url(url)
        if parsed is None:
            raise InvalidRequest(
                "image data URLs must be base64-encoded", param=f"{param}.image_url"
            )
        if parsed[0] not in _IMAGE_TYPES:
            raise InvalidRequest(
                f"image type {parsed[0]!r} is not supported by provider {PROVIDER} "
                f"(jpeg, png, gif, webp)",
                param=f"{param}.image_url",
            )
    if not url.startswith(("data:", "https://", "http://")):
        raise InvalidRequest(
            "image_url.url must be a data: or http(s) URL", param=f"{param}.image_url"
        )
    return {"type": "image", "source": url_to_source(url)}


def _document(file: Any, param: str) -> JSON:
    data = file.get("file_data") if isinstance(file, dict) else None
    parsed = parse_data_url(data) if isinstance(data, str) else None
    if parsed is None:
        raise InvalidRequest(
            f"file parts need base64 file_data for provider {PROVIDER} (file_id is not supported)",
            param=f"{param}.file",
        )
    media, payload = parsed
    if media == "text/plain":
        try:
            text = base64.b64decode(payload, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest(
                "file_data is not base64 UTF-8 text", param=f"{param}.file"
            ) from None
        return {"type": "document", "source": {"type": "text", "media_type": media, "data": text}}
    if media != "application/pdf":
        raise InvalidRequest(
            f"file type {media!r} is not supported by provider {PROVIDER} (PDF or plain text)",
            param=f"{param}.file",
        )
    return {"type": "document", "source": {"type": "base64", "media_type": media, "data": payload}}


# Base64ImageSourceParam.media_type (anthropic SDK 2.17.0).
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def _signed_thinking(msg: JSON) -> list[JSON]:
    """The signed ``thinking`` / ``redacted_thinking`` blocks a canonical assistant message
    carries back (``thinking_blocks``, the extension answers carry): Anthropic needs them
    at the start of the turn to continue a tool loop with thinking on. Unsigned
    reasoning text cannot be replayed and is left out."""
    out: list[JSON] = []
    blocks = msg.get("thinking_blocks")
    for block in blocks if isinstance(blocks, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        text, signature = block.get("thinking"), block.get("signature")
        if kind == "thinking" and isinstance(text, str) and isinstance(signature, str):
            if signature:
                out.append({"type": "thinking", "thinking": text, "signature": signature})
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            out.append({"type": "redacted_thinking", "data": block["data"]})
    return out


def _assistant_blocks(
    msg: JSON, i: int, ids: ToolIdRule | None, thinks: bool = False
) -> list[JSON]:
    blocks = _signed_thinking(msg) if thinks else []
    blocks += _text_blocks(msg.get("content"), f"messages[{i}].content")
    tool_calls = msg.get("tool_calls")
    if tool_calls is None:
        return blocks
    if not isinstance(tool_calls, list):
        raise InvalidRequest("tool_calls must be a list", param=f"messages[{i}].tool_calls")
    for j, call in enumerate(tool_calls):
        param = f"messages[{i}].tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(fn, dict):
            raise InvalidRequest("a tool call needs a function object", param=param)
        call_id, name = call.get("id"), fn.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise InvalidRequest("a tool call needs string id and function.name", param=param)
        blocks.append(
            {
                "type": "tool_use",
                "id": normalise_tool_id(call_id, ids),
                "name": name,
                "input": _arguments(fn.get("arguments"), f"{param}.function.arguments"),
            }
        )
    return blocks


def _arguments(arguments: Any, param: str) -> JSON:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        raise InvalidRequest("tool call arguments must be a JSON string", param=param)
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest("tool call arguments are not valid JSON", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param=param)
    return value


def _tool_result(msg: JSON, i: int, ids: ToolIdRule | None) -> JSON:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(
            "a tool message needs tool_call_id", param=f"messages[{i}].tool_call_id"
        )
    content = msg.get("content")
    block: JSON = {"type": "tool_result", "tool_use_id": normalise_tool_id(call_id, ids)}
    if isinstance(content, str):
        block["content"] = content
    elif content is not None:
        block["content"] = _text_blocks(content, f"messages[{i}].content")
    return block


def _with_cache(part: JSON, block: JSON) -> JSON:
    # Not OpenAI, but clients that target Anthropic through a gateway send it on parts;
    # keeping it preserves their prompt caching.
    cache = part.get("cache_control")
    if isinstance(cache, dict):
        block["cache_control"] = cache
    return block


def _tools(tools: Any, rules: ModelRules, adj: Adjust) -> list[JSON]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be a list", param="tools")
    out: list[JSON] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise InvalidRequest(
                f"only function tools are supported by provider {PROVIDER}", param=f"tools[{i}]"
            )
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("a function tool needs a name", param=f"tools[{i}].function.name")
        entry: JSON = {"name": name}
        description = fn.get("description")
        if isinstance(description, str) and description:
            entry["description"] = description
        schema = _input_schema(fn.get("parameters"), f"tools[{i}].function.parameters")
        if fn.get("strict") is True:
            if not rules.tool_strict:
                adj.drop(f"tools[{i}].function.strict")
            else:
                try:
                    schema = strict_schema(schema)
                    entry["strict"] = True
                except ValueError as exc:
                    adj.drop(f"tools[{i}].function.strict", str(exc))
        entry["input_schema"] = schema
        out.append(_with_cache(tool, entry))
    return out


def _input_schema(params: Any, param: str) -> JSON:
    """A tool's ``input_schema``: Anthropic wants ``type: object`` at its root."""
    if params is None:
        return {"type": "object", "properties": {}}
    if not isinstance(params, dict):
        raise InvalidRequest("function parameters must be a JSON Schema object", param=param)
    kind = params.get("type")
    if kind is None:
        return {"type": "object", **params} if params else {"type": "object", "properties": {}}
    if kind != "object":
        raise InvalidRequest("function parameters must describe an object", param=param)
    return params


def _tool_choice(choice: Any) -> JSON:
    if choice is None or choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise InvalidRequest(
        "tool_choice must be auto, none, required or a named function", param="tool_choice"
    )


def _response_format(fmt: Any, rules: ModelRules, adj: Adjust, output_config: JSON) -> str | None:
    """Native structured output (``output_config.format``) where the family has it, else
    the instruction to append to the system prompt (with a warning: not enforced)."""
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_object":
        adj.note("response_format json_object: asked for in the prompt, not enforced")
        return _JSON_OBJECT_HINT
    if kind != "json_schema":
        return None
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        adj.note("response_format json_schema without a schema: asked for in the prompt")
        return _JSON_OBJECT_HINT
    if rules.structured_output == "native":
        try:
            output_config["format"] = {"type": "json_schema", "schema": strict_schema(schema)}
            return None
        except ValueError as exc:
            adj.note(f"response_format json_schema: asked for in the prompt ({exc})")
    else:
        adj.note(
            f"response_format json_schema: asked for in the prompt, not enforced "
            f"({rules.family} models have no structured output)"
        )
    return (
        f"{_JSON_OBJECT_HINT} It must conform to this JSON Schema: {orjson.dumps(schema).decode()}"
    )


# The string formats Anthropic's structured output accepts (anthropic SDK 2.17.0,
# lib/_parse/_transform.py SupportedStringFormats).
_STRING_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)


def strict_schema(schema: JSON) -> JSON:
    """A JSON Schema as Anthropic's structured output (and ``strict`` tools) accept it:
    the SDK's ``transform_schema`` (anthropic 2.17.0): every object closed
    (``additionalProperties: false``), ``oneOf`` -> ``anyOf``, keywords the API does not
    take (numeric and length bounds, unknown formats...) moved into the description so
    the model still reads them. A ``type`` list becomes an ``anyOf`` of one type each (the
    SDK has no branch for it). Raises ValueError for a schema with no type to close."""
    out: JSON = {}
    rest = dict(schema)
    defs = rest.pop("$defs", None)
    if isinstance(defs, dict):
        out["$defs"] = {name: strict_schema(d) for name, d in defs.items()}
    ref = rest.pop("$ref", None)
    if ref is not None:
        out["$ref"] = ref
        description = rest.pop("description", None)
        if description is not None:
            out["description"] = description
        return out
    kind = rest.pop("type", None)
    if isinstance(kind, list):
        # Keywords belong to the non-null branches; "null" takes none.
        branches = [
            {"type": "null"} if t == "null" else strict_schema({**rest, "type": t}) for t in kind
        ]
        return {**out, "anyOf": branches} if len(branches) > 1 else {**out, **branches[0]}
    any_of = rest.pop("anyOf", None)
    one_of = rest.pop("oneOf", None)
    all_of = rest.pop("allOf", None)
    enum = rest.get("enum")
    if isinstance(enum, list) and enum and all(_primitive(v) for v in enum):
        out["enum"] = list(rest.pop("enum"))
    if "const" in rest and _primitive(rest["const"]):
        out["const"] = rest.pop("const")
    literal = "enum" in out or "const" in out
    if literal:
        kind = None
    if isinstance(any_of, list):
        out["anyOf"] = [strict_schema(v) for v in any_of]
    elif isinstance(one_of, list):
        out["anyOf"] = [strict_schema(v) for v in one_of]
    elif isinstance(all_of, list):
        out["allOf"] = [strict_schema(v) for v in all_of]
    elif not literal:
        if kind is None:
            raise ValueError("a schema without a type, anyOf, oneOf, allOf, const or enum")
        out["type"] = kind
    for key in ("description", "title"):
        value = rest.pop(key, None)
        if value is not None:
            out[key] = value
    if kind == "object":
        props = rest.pop("properties", None) or {}
        out["properties"] = {k: strict_schema(v) for k, v in props.items()}
        rest.pop("additionalProperties", None)
        out["additionalProperties"] = False
        required = rest.pop("required", None)
        if required is not None:
            out["required"] = list(required) if isinstance(required, list) else required
    elif kind == "string":
        fmt = rest.pop("format", None)
        if fmt in _STRING_FORMATS:
            out["format"] = fmt
        elif fmt:
            rest["format"] = fmt
    elif kind == "array":
        items = rest.pop("items", None)
        if items is not None:
            out["items"] = strict_schema(items)
        min_items = rest.pop("minItems", None)
        if min_items in (0, 1):
            out["minItems"] = min_items
        elif min_items is not None:
            rest["minItems"] = min_items
    if rest:
        extra = ", ".join(f"{key}: {value}" for key, value in rest.items())
        description = out.get("description")
        out["description"] = (
            (f"{description}\n\n" if description is not None else "") + "{" + extra + "}"
        )
    return out


def _primitive(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


# --- response: Anthropic message -> OpenAI chat.completion --------------------------------


def to_openai_completion(data: JSON, model: str) -> tuple[JSON, Usage | None]:
    """An Anthropic ``message`` -> (OpenAI ``chat.completion`` dict, usage)."""
    texts: list[str] = []
    tool_calls: list[JSON] = []
    for block in data.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    stop = data.get("stop_reason")
    message: JSON = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": _refusal(data) if stop == "refusal" else None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    # Thinking is not content: it travels as the canonical extension (reasoning_content,
    # signed thinking_blocks) that OpenAI clients ignore and /v1/messages turns back.
    message.update(reasoning_extensions(data.get("content")))
    finish = STOP_TO_FINISH.get(stop, "stop") if isinstance(stop, str) else "stop"
    usage = usage_from_anthropic(data.get("usage"))
    completion: JSON = {
        "id": f"chatcmpl-{data.get('id') or 'anthropic'}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        completion["usage"] = usage.to_openai()
    return completion, usage


def _refusal(data: JSON) -> str:
    """OpenAI's ``message.refusal`` for a ``stop_reason: refusal`` answer: Anthropic's
    explanation where it gives one (``stop_details``)."""
    details = data.get("stop_details")
    if isinstance(details, dict):
        explanation = details.get("explanation")
        if isinstance(explanation, str) and explanation:
            return explanation
        category = details.get("category")
        if isinstance(category, str) and category:
            return f"The model declined to answer (policy category: {category})."
    return "The model declined to answer."


# --- stream: Anthropic events -> canonical OpenAI chunks ----------------------------------


class AnthropicStreamDecoder:
    """Anthropic's typed SSE events in, canonical ``chat.completion.chunk`` dicts out."""

    __slots__ = (
        "_created",
        "_done",
        "_finish",
        "_id",
        "_input",
        "_model",
        "_output",
        "_parser",
        "_provider",
        "_reasoning",
        "_req",
        "_tools",
        "generated",
    )

    def __init__(self, req: GatewayRequest, provider: str = PROVIDER) -> None:
        self._parser = SSEParser()
        self._req = req
        self._provider = provider
        self._model = req.model
        self._id = "chatcmpl-anthropic"
        self._created = int(time.time())
        self._done = False
        self._finish: str | None = None
        self._input: Usage | None = None  # prompt side, from message_start
        self._output: int | None = None  # cumulative output tokens from message_delta
        self._reasoning = 0  # thinking tokens among them (output_tokens_details)
        self.generated = Generated()  # what was decoded, for an estimate if the stream is cut
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index

    @property
    def completed(self) -> bool:
        return self._done

    @property
    def usage(self) -> Usage:
        """Best knowledge so far: reported counts, or estimates if the stream was cut."""
        return self.partial_usage(in_flight=False)

    def partial_usage(self, in_flight: bool) -> Usage:
        if self._output is None:  # message_delta (the final count) never came
            usage = stream_usage(self._req.body, self._input, self.generated, in_flight)
            known = self._input
            if known is not None and usage.prompt_tokens == known.prompt_tokens:
                # message_start's cache writes stay writes (billed at their TTL's rate).
                usage.cache_write_tokens = known.cache_write_tokens
                usage.cache_write_1h_tokens = known.cache_write_1h_tokens
            return usage
        prompt = self._input
        if prompt is None:
            prompt = Usage(count_request_tokens(self._req.body), estimated=True)
        return Usage(
            prompt_tokens=prompt.prompt_tokens,
            completion_tokens=self._output,
            cached_tokens=prompt.cached_tokens,
            reasoning_tokens=min(self._reasoning, self._output),
            estimated=prompt.estimated,
            cache_write_tokens=prompt.cache_write_tokens,
            cache_write_1h_tokens=prompt.cache_write_1h_tokens,
        )

    def feed(self, data: bytes) -> list[Chunk]:
        out: list[Chunk] = []
        for ev in self._parser.feed(data):
            chunk = self._event(ev.data)
            if chunk is not None:
                self.generated.add(chunk.obj)
                out.append(chunk)
        return out

    def close(self) -> list[Chunk]:
        cut = UpstreamProtocolError(
            f"provider {self._provider} ended the stream before message_stop"
        )
        try:
            out = [c for ev in self._parser.flush() if (c := self._event(ev.data)) is not None]
        except UpstreamProtocolError:
            # A half-received last event is a cut stream, not a malformed one.
            if not self._done:
                raise cut from None
            raise
        if not self._done:
            raise cut
        return out

    def _event(self, data: bytes) -> Chunk | None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"provider {self._provider} sent a malformed stream event"
            ) from None
        if not isinstance(obj, dict):
            raise UpstreamProtocolError(f"provider {self._provider} sent a malformed stream event")
        if self._done:
            return None
        kind = obj.get("type")
        thinking = thinking_stream_delta(obj)
        if thinking is not None:
            # Not OpenAI content: the canonical extension (reasoning_content and signed
            # thinking_blocks) that /v1/messages turns back into thinking blocks.
            return self._choice(thinking)
        if kind == "content_block_delta":
            return self._delta(obj)
        if kind == "content_block_start":
            return self._block_start(obj)
        if kind == "message_start":
            return self._start(obj.get("message"))
        if kind == "message_delta":
            return self._message_delta(obj)
        if kind == "message_stop":
            self._done = True
            if self._req.include_usage:
                return self._chunk([], usage=self.usage.to_openai())
            return None
        if kind == "error":
            raise _event_error(obj, self._provider)
        # ping, content_block_stop and event types added later carry nothing to relay.
        return None

    def _start(self, message: Any) -> Chunk:
        if isinstance(message, dict):
            if isinstance(message.get("id"), str):
                self._id = f"chatcmpl-{message['id']}"
            usage = usage_from_anthropic(message.get("usage"))
            if usage is not None:
                usage.completion_tokens = 0
                self._input = usage
        return self._choice({"role": "assistant", "content": ""})

    def _block_start(self, obj: JSON) -> Chunk | None:
        block = obj.get("content_block")
        if not isinstance(block, dict):
            return None
        if block.get("type") == "tool_use":
            index = len(self._tools)
            self._tools[_index(obj)] = index
            name = block.get("name")
            call = {
                "index": index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            return self._choice({"tool_calls": [call]})
        if block.get("type") == "text" and block.get("text"):
            return self._choice({"content": block["text"]})
        return None

    def _delta(self, obj: JSON) -> Chunk | None:
        delta = obj.get("delta")
        if not isinstance(delta, dict):
            return None
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if isinstance(text, str) and text:
                return self._choice({"content": text})
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            tool = self._tools.get(_index(obj))
            if isinstance(fragment, str) and fragment and tool is not None:
                call = {"index": tool, "function": {"arguments": fragment}}
                return self._choice({"tool_calls": [call]})
        # thinking_delta / signature_delta: the reasoning extension (see _event);
        # citations_delta: nothing in OpenAI chat holds it.
        return None

    def _message_delta(self, obj: JSON) -> Chunk | None:
        usage = obj.get("usage")
        if isinstance(usage, dict):
            output = usage.get("output_tokens")
            if isinstance(output, int):
                self._output = output
            details = usage.get("output_tokens_details")
            thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
            if isinstance(thinking, int):
                self._reasoning = thinking
            # Newer API versions repeat the (final) input counts here.
            if isinstance(usage.get("input_tokens"), int):
                prompt = usage_from_anthropic(self._with_split(usage))
                if prompt is not None:
                    prompt.completion_tokens = 0
                    self._input = prompt
        delta = obj.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        if not isinstance(stop, str) or self._finish is not None:
            return None
        self._finish = STOP_TO_FINISH.get(stop, "stop")
        # A refusal says why in delta.refusal, as OpenAI's streams do.
        last: JSON = {"refusal": _refusal(delta)} if stop == "refusal" and delta else {}
        return self._chunk(
            [{"index": 0, "delta": last, "logprobs": None, "finish_reason": self._finish}]
        )

    def _with_split(self, usage: JSON) -> JSON:
        """message_delta repeats cache_creation_input_tokens without the TTL split: keep
        message_start's split when the total is unchanged."""
        known = self._input
        if "cache_creation" in usage or known is None:
            return usage
        written = usage.get("cache_creation_input_tokens")
        if written != known.cache_write_tokens + known.cache_write_1h_tokens:
            return usage
        split = {
            "ephemeral_5m_input_tokens": known.cache_write_tokens,
            "ephemeral_1h_input_tokens": known.cache_write_1h_tokens,
        }
        return {**usage, "cache_creation": split}

    def _choice(self, delta: JSON) -> Chunk:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def _chunk(self, choices: list[JSON], usage: JSON | None = None) -> Chunk:
        obj: JSON = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if usage is not None:
            obj["usage"] = usage
        return Chunk(obj)


def _index(obj: JSON) -> int:
    index = obj.get("index")
    return index if isinstance(index, int) else 0


def _error_type(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    err = data.get("error") if isinstance(data, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    return kind if isinstance(kind, str) else None


def _event_error(obj: JSON, provider: str) -> UpstreamError:
    """An Anthropic ``{"type": "error"}`` event or body as an upstream error."""
    err = obj.get("error")
    kind = err.get("type") if isinstance(err, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    detail = f": {message[:300]}" if isinstance(message, str) and message else ""
    if kind == "rate_limit_error":
        return UpstreamRateLimited(f"provider {provider} is rate limiting{detail}")
    if kind == "overloaded_error":
        return UpstreamUnavailable(f"provider {provider} is overloaded{detail}")
    if kind in ("invalid_request_error", "request_too_large"):
        return UpstreamBadRequest(f"provider {provider} rejected the request{detail}")
    return UpstreamUnavailable(f"provider {provider} failed mid-stream{detail}")
