"""The inbound Anthropic Messages API (``POST /v1/messages``) as pure translations.

Clients built on the ``anthropic`` SDK reach every provider through Interlock: their
request is validated and translated into the canonical OpenAI chat body, and the
canonical answer (a ``chat.completion`` or a stream of ``chat.completion.chunk`` dicts)
is translated back into an Anthropic ``message`` or Anthropic's typed SSE events. No I/O.

How it translates, and what does not (documented rather than silently faked):
- ``thinking`` is carried as the canonical ``thinking`` extension; signed ``thinking`` and
  ``redacted_thinking`` blocks in the history ride along as an assistant message's
  ``thinking_blocks`` (unsigned ones are dropped), and answers' reasoning extensions come
  back as thinking blocks (see providers/anthropic_convert.py).
- ``max_tokens`` becomes ``max_completion_tokens``; ``role: "system"`` inside ``messages``
  stays in place as a system message; unknown fields are refused as Anthropic refuses them.
- Server tools (web search, code execution, ...) and ``document`` blocks other than
  base64 (or text) are refused; ``top_k`` and placement fields are dropped with a warning.
- ``tool_result.is_error`` becomes an ``Error:`` prefix on the tool message's text.
- ``stop_reason`` is ``stop_sequence`` (with the sequence) when the upstream said which
  one ended the answer (the canonical choice extension ``stop_sequence``); otherwise a
  stop sequence reads as ``end_turn``, since OpenAI's ``finish_reason: stop`` does not say.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from interlock.errors import InvalidRequest
from interlock.providers.anthropic_convert import (
    FINISH_TO_STOP,
    error_type_for_status,
    source_to_url,
    usage_to_anthropic,
)
from interlock.providers.sse import encode
from interlock.types import JSON, Usage

__all__ = [
    "AnthropicStreamEncoder",
    "anthropic_error_body",
    "messages_to_openai",
    "openai_to_message",
]


# --- request: Anthropic Messages -> OpenAI chat ------------------------------------------


# Top-level fields of the anthropic SDK's MessageCreateParams (2.17.0) plus ``stream``;
# tests/api/test_messages_format.py checks this list against the installed SDK.
SDK_FIELDS = frozenset(
    {
        "cache_control", "container", "diagnostics", "inference_geo", "max_tokens",
        "messages", "metadata", "model", "output_config", "service_tier", "speed",
        "stop_sequences", "system", "thinking", "tool_choice", "tools", "user_profile_id",
        "workspace_id", "stream",
    }
)  # fmt: skip
# Sampling fields older SDKs send (dropped from MessageCreateParams in current SDKs, still
# documented for older models): accepted rather than breaking those clients.
LEGACY_FIELDS = frozenset({"temperature", "top_p", "top_k"})
# Beta-only fields (anthropic.types.beta): each changes what the model sees or does (context
# editing, MCP servers, compaction, fallbacks...), so they are refused rather than dropped.
BETA_FIELDS = frozenset(
    {"betas", "billing_policy", "compaction", "context_management",
     "fallback_credit_token", "fallbacks", "mcp_servers", "thread"}
)  # fmt: skip
# Fields about where or how the request runs, not what it answers: dropped with a warning.
_DROPPED = ("container", "diagnostics", "inference_geo", "service_tier", "speed",
            "user_profile_id", "workspace_id", "top_k")  # fmt: skip
_THINKING_TYPES = ("enabled", "disabled", "adaptive", "between_tools")
_EFFORTS = ("low", "medium", "high", "xhigh", "max")
MIN_THINKING_BUDGET = 1024


def messages_to_openai(
    body: JSON,
    warnings: list[str] | None = None,
    *,
    count_only: bool = False,
    warm_ok: bool = False,
) -> JSON:
    """Validate an Anthropic Messages request and translate it to the canonical OpenAI
    chat body. What is dropped is said in ``warnings`` (sent as x-interlock-warnings).

    ``count_only``: a ``count_tokens`` request (MessageCountTokensParams: no max_tokens,
    stop_sequences, metadata or stream). ``max_tokens: 0`` (prompt-cache warming) is
    carried as ``max_completion_tokens: 0`` when ``warm_ok`` (the synchronous route, which
    decides what to do with it); elsewhere (jobs) it is refused.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    notes: list[str] = warnings if warnings is not None else []
    _check_fields(body, count_only)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: a non-empty string is required", param="model")
    max_tokens = body.get("max_tokens")
    if not count_only and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0
    ):
        raise InvalidRequest("max_tokens: a non-negative integer is required", param="max_tokens")
    if max_tokens == 0 and not warm_ok:
        raise InvalidRequest(
            "max_tokens: 0 (prompt-cache warming) is only available on POST /v1/messages",
            param="max_tokens",
        )
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list) or not raw_messages:
        raise InvalidRequest("messages: a non-empty list is required", param="messages")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: must be a boolean", param="stream")

    messages: list[JSON] = []
    system = _system(body.get("system"))
    if system is not None:
        messages.append({"role": "system", "content": system})
    for i, msg in enumerate(raw_messages):
        if not isinstance(msg, dict):
            raise InvalidRequest(f"messages.{i}: must be an object", param=f"messages.{i}")
        extra = set(msg) - {"role", "content"}
        if extra:
            key = sorted(extra)[0]
            raise InvalidRequest(
                f"messages.{i}.{key}: Extra inputs are not permitted", param=f"messages.{i}.{key}"
            )
        role = msg.get("role")
        if role == "user":
            messages.extend(_user(msg.get("content"), i))
        elif role == "assistant":
            messages.append(_assistant(msg.get("content"), i))
        elif role == "system":
            # The SDK's SystemMessageParam: kept in place as a canonical system message.
            content = _system_message(msg.get("content"), i)
            if content is not None:
                messages.append({"role": "system", "content": content})
        else:
            raise InvalidRequest(
                f"messages.{i}.role: must be 'user', 'assistant' or 'system'",
                param=f"messages.{i}.role",
            )
    if not any(m["role"] != "system" for m in messages):
        raise InvalidRequest(
            "messages: at least one user or assistant message is required", param="messages"
        )

    out: JSON = {"model": model, "messages": messages}
    if not count_only:
        # max_completion_tokens: the OpenAI spec marks max_tokens deprecated and o-series
        # models refuse it; every adapter reads max_completion_tokens first.
        out["max_completion_tokens"] = max_tokens
    for key, high in (("temperature", 1.0), ("top_p", 1.0)):
        value = body.get(key)
        if value is None:
            continue
        if not _is_number(value) or not 0 <= value <= high:
            raise InvalidRequest(f"{key}: must be a number between 0 and {high:g}", param=key)
        out[key] = value
    if body.get("top_k") is not None and (
        not isinstance(body["top_k"], int) or isinstance(body["top_k"], bool) or body["top_k"] < 0
    ):
        raise InvalidRequest("top_k: must be a non-negative integer", param="top_k")
    for key in _DROPPED:
        if body.get(key) is not None:
            notes.append(f"{key} dropped: not supported through the gateway")
    stops = body.get("stop_sequences")
    if stops is not None:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise InvalidRequest(
                "stop_sequences: must be a list of strings", param="stop_sequences"
            )
        if stops:
            out["stop"] = stops
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("tools: must be a list", param="tools")
        if tools:
            out["tools"] = [_tool(t, i, notes) for i, t in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is not None:
        _apply_tool_choice(out, choice)
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidRequest("metadata: must be an object", param="metadata")
        extra = set(metadata) - {"user_id", "tags"}  # tags: Interlock's own (request_tags)
        if extra:
            key = sorted(extra)[0]
            raise InvalidRequest(
                f"metadata.{key}: Extra inputs are not permitted", param=f"metadata.{key}"
            )
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise InvalidRequest("metadata.user_id: must be a string", param="metadata.user_id")
        if user:
            out["user"] = user
    thinking = _thinking(body.get("thinking"), max_tokens if not count_only else None)
    if thinking is not None:
        out["thinking"] = thinking  # the canonical extension: adapters map or drop it
    _output_config(body.get("output_config"), out)
    cache = body.get("cache_control")
    if cache is not None:
        _top_level_cache(cache, messages, notes)
    if stream and not count_only:
        out["stream"] = True
        # Usage arrives as a final chunk, so message_delta can carry real output counts.
        out["stream_options"] = {"include_usage": True}
    return out


def _check_fields(body: JSON, count_only: bool) -> None:
    allowed = SDK_FIELDS | LEGACY_FIELDS
    if count_only:
        allowed = allowed - {"max_tokens", "stop_sequences", "metadata", "stream",
                             "service_tier", "container", "diagnostics", "inference_geo"}  # fmt: skip
    for key in sorted(body):
        if key in allowed:
            continue
        if key in BETA_FIELDS:
            raise InvalidRequest(
                f"{key}: this beta feature is not supported through the gateway", param=key
            )
        # Anthropic's own wording for a field its schema does not have.
        raise InvalidRequest(f"{key}: Extra inputs are not permitted", param=key)


def _system_message(content: Any, i: int) -> str | list[JSON] | None:
    param = f"messages.{i}.content"
    if isinstance(content, str):
        return content or None
    if not isinstance(content, list):
        raise InvalidRequest(f"{param}: must be a string or a list of text blocks", param=param)
    parts = [_text_part(block, f"{param}.{j}") for j, block in enumerate(content)]
    if not parts:
        return None
    return _collapse(parts) if len(parts) == 1 else parts


def _thinking(value: Any, max_tokens: int | None) -> JSON | None:
    """Anthropic's ThinkingConfigParam, checked as Anthropic checks it."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind not in _THINKING_TYPES:
        raise InvalidRequest(
            "thinking.type: must be one of " + ", ".join(_THINKING_TYPES), param="thinking.type"
        )
    assert isinstance(value, dict)
    allowed = {"type"}
    if kind in ("enabled", "adaptive"):
        allowed.add("display")
    if kind == "enabled":
        allowed.add("budget_tokens")
    extra = set(value) - allowed
    if extra:
        key = sorted(extra)[0]
        raise InvalidRequest(
            f"thinking.{key}: Extra inputs are not permitted", param=f"thinking.{key}"
        )
    display = value.get("display")
    if display is not None and display not in ("summarized", "omitted"):
        raise InvalidRequest(
            "thinking.display: must be 'summarized' or 'omitted'", param="thinking.display"
        )
    if kind == "enabled":
        budget = value.get("budget_tokens")
        if not isinstance(budget, int) or isinstance(budget, bool):
            raise InvalidRequest(
                "thinking.budget_tokens: an integer is required", param="thinking.budget_tokens"
            )
        if budget < MIN_THINKING_BUDGET:
            raise InvalidRequest(
                f"thinking.budget_tokens: must be >= {MIN_THINKING_BUDGET}",
                param="thinking.budget_tokens",
            )
        if max_tokens and budget >= max_tokens:
            raise InvalidRequest(
                "max_tokens: must be greater than thinking.budget_tokens", param="max_tokens"
            )
    return dict(value)


def _output_config(value: Any, out: JSON) -> None:
    """output_config.effort -> reasoning_effort; output_config.format (a JSON schema) ->
    response_format json_schema, which adapters send as native structured output."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise InvalidRequest("output_config: must be an object", param="output_config")
    extra = set(value) - {"effort", "format"}
    if extra:
        key = sorted(extra)[0]
        raise InvalidRequest(
            f"output_config.{key}: Extra inputs are not permitted", param=f"output_config.{key}"
        )
    effort = value.get("effort")
    if effort is not None:
        if effort not in _EFFORTS:
            raise InvalidRequest(
                "output_config.effort: must be one of " + ", ".join(_EFFORTS),
                param="output_config.effort",
            )
        out["reasoning_effort"] = effort
    fmt = value.get("format")
    if fmt is not None:
        schema = fmt.get("schema") if isinstance(fmt, dict) else None
        if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
            raise InvalidRequest(
                "output_config.format.type: must be 'json_schema'",
                param="output_config.format.type",
            )
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "output_config.format.schema: an object is required",
                param="output_config.format.schema",
            )
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": True},
        }


def _top_level_cache(cache: Any, messages: list[JSON], notes: list[str]) -> None:
    """Top-level cache_control: Anthropic puts the marker on the last cacheable block;
    so does the gateway, on the canonical body (adapters keep part-level markers)."""
    if not isinstance(cache, dict) or cache.get("type") != "ephemeral":
        raise InvalidRequest("cache_control.type: must be 'ephemeral'", param="cache_control.type")
    marker = dict(cache)
    for message in reversed(messages):
        if message["role"] == "tool":
            continue
        content = message.get("content")
        if isinstance(content, str) and content:
            message["content"] = [{"type": "text", "text": content, "cache_control": marker}]
            return
        if isinstance(content, list) and content and isinstance(content[-1], dict):
            content[-1] = {**content[-1], "cache_control": marker}
            return
    notes.append("cache_control dropped: no cacheable block")


def _system(system: Any) -> str | list[JSON] | None:
    if system is None:
        return None
    if isinstance(system, str):
        return system or None
    if not isinstance(system, list):
        raise InvalidRequest("system: must be a string or a list of text blocks", param="system")
    parts = [_text_part(block, f"system.{i}") for i, block in enumerate(system)]
    if not parts:
        return None
    if any("cache_control" in p for p in parts):
        return parts
    return "\n\n".join(p["text"] for p in parts)


# Keys of each content block: the SDK's request param types joined with its answer block
# models (a client may send an answer's blocks back, ``Message.to_param``).
# tests/api/test_messages_format.py checks this table against the installed SDK.
BLOCK_FIELDS: dict[str, frozenset[str]] = {
    "text": frozenset({"type", "text", "cache_control", "citations"}),
    "image": frozenset({"type", "source", "cache_control", "transformations"}),
    "document": frozenset({"type", "source", "cache_control", "citations", "context", "title"}),
    "tool_use": frozenset({"type", "id", "name", "input", "cache_control", "caller",
                           "toolset_name"}),
    "tool_result": frozenset({"type", "tool_use_id", "content", "is_error", "cache_control",
                              "toolset_name"}),
    "thinking": frozenset({"type", "thinking", "signature"}),
    "redacted_thinking": frozenset({"type", "data"}),
}  # fmt: skip


def _check_block(block: JSON, kind: str, param: str) -> None:
    extra = set(block) - BLOCK_FIELDS[kind]
    if extra:
        key = sorted(extra)[0]
        raise InvalidRequest(
            f"{param}.{key}: Extra inputs are not permitted", param=f"{param}.{key}"
        )


def _text_part(block: Any, param: str) -> JSON:
    if not isinstance(block, dict) or block.get("type") != "text":
        raise InvalidRequest(f"{param}: must be a text block", param=param)
    _check_block(block, "text", param)
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"{param}.text: must be a string", param=f"{param}.text")
    part: JSON = {"type": "text", "text": text}
    cache = block.get("cache_control")
    if isinstance(cache, dict):
        # Kept so an Anthropic upstream can still use the client's prompt-cache breakpoints.
        part["cache_control"] = cache
    return part


def _blocks(content: Any, i: int) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"messages.{i}.content: must be a string or a list of blocks",
            param=f"messages.{i}.content",
        )
    return content


def _user(content: Any, i: int) -> list[JSON]:
    """One Anthropic user turn -> tool messages (first) and at most one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(_blocks(content, i)):
        param = f"messages.{i}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append(_text_part(block, param))
        elif kind == "image":
            parts.append(_image_part(block, param))
        elif kind == "document":
            parts.append(_document_part(block, param))
        elif kind == "tool_result":
            message, images = _tool_result(block, param)
            tool_messages.append(message)
            parts.extend(images)
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise InvalidRequest(
                f"{param}.type: block type {kind!r} is not supported", param=f"{param}.type"
            )
    out = tool_messages
    if parts:
        out.append({"role": "user", "content": _collapse(parts)})
    return out


def _assistant(content: Any, i: int) -> JSON:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    parts: list[JSON] = []
    calls: list[JSON] = []
    thinking: list[JSON] = []
    for j, block in enumerate(_blocks(content, i)):
        param = f"messages.{i}.content.{j}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append(_text_part(block, param))
        elif kind == "tool_use":
            calls.append(_tool_call(block, param))
        elif kind in ("thinking", "redacted_thinking"):
            # Signed blocks ride along as the canonical extension (the one answers carry):
            # an Anthropic upstream needs them to continue a tool loop with thinking on;
            # other adapters leave them out. Unsigned ones cannot be replayed anywhere.
            _check_block(block, kind, param)
            native = _native_thinking(block)
            if native is not None and (
                native["type"] == "redacted_thinking" or native["signature"]
            ):
                thinking.append(native)
        else:
            raise InvalidRequest(
                f"{param}.type: block type {kind!r} is not supported in an assistant turn",
                param=f"{param}.type",
            )
    message: JSON = {"role": "assistant", "content": _collapse(parts) if parts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    if thinking:
        message["thinking_blocks"] = thinking
    return message


def _collapse(parts: list[JSON]) -> str | list[JSON]:
    """A lone plain text part travels as a string, which every OpenAI-compatible server takes."""
    if len(parts) == 1 and parts[0]["type"] == "text" and "cache_control" not in parts[0]:
        text: str = parts[0]["text"]
        return text
    return parts


def _image_part(block: JSON, param: str) -> JSON:
    _check_block(block, "image", param)
    url = source_to_url(block.get("source"))
    if url is None:
        raise InvalidRequest(
            f"{param}.source: must be a base64 or url image source", param=f"{param}.source"
        )
    part: JSON = {"type": "image_url", "image_url": {"url": url}}
    if isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def _document_part(block: JSON, param: str) -> JSON:
    _check_block(block, "document", param)
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "text":
        return _text_part({"type": "text", "text": source.get("data")}, f"{param}.source")
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise InvalidRequest(
            f"{param}.source: only base64 and text document sources are supported",
            param=f"{param}.source",
        )
    url = source_to_url(source)
    if url is None:
        raise InvalidRequest(f"{param}.source: media_type and data are required", param=param)
    file: JSON = {"file_data": url}
    title = block.get("title")
    if isinstance(title, str) and title:
        file["filename"] = title
    return {"type": "file", "file": file}


def _tool_result(block: JSON, param: str) -> tuple[JSON, list[JSON]]:
    """A tool_result -> an OpenAI tool message, plus any images it held (OpenAI tool
    messages take text only, so images ride along in the following user message)."""
    _check_block(block, "tool_result", param)
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(
            f"{param}.tool_use_id: a non-empty string is required", param=f"{param}.tool_use_id"
        )
    content = block.get("content")
    texts: list[str] = []
    images: list[JSON] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for k, inner in enumerate(content):
            inner_param = f"{param}.content.{k}"
            kind = inner.get("type") if isinstance(inner, dict) else None
            if kind == "text":
                texts.append(_text_part(inner, inner_param)["text"])
            elif kind == "image":
                images.append(_image_part(inner, inner_param))
            else:
                raise InvalidRequest(
                    f"{inner_param}.type: tool results may hold text and images only",
                    param=f"{inner_param}.type",
                )
    elif content is not None:
        raise InvalidRequest(
            f"{param}.content: must be a string or a list of blocks", param=f"{param}.content"
        )
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _tool_call(block: JSON, param: str) -> JSON:
    _check_block(block, "tool_use", param)
    call_id, name, args = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise InvalidRequest(f"{param}: tool_use needs string id and name", param=param)
    if not isinstance(args, dict):
        raise InvalidRequest(f"{param}.input: must be an object", param=f"{param}.input")
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(args).decode()},
    }


_TOOL_FIELDS = frozenset(
    {"allowed_callers", "cache_control", "defer_loading", "description",
     "eager_input_streaming", "input_examples", "input_schema", "name", "strict", "type"}
)  # fmt: skip
_TOOL_HINTS = ("allowed_callers", "defer_loading", "eager_input_streaming", "input_examples")


def _tool(tool: Any, i: int, notes: list[str]) -> JSON:
    param = f"tools.{i}"
    if not isinstance(tool, dict):
        raise InvalidRequest(f"{param}: must be an object", param=param)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise InvalidRequest(
            f"{param}.type: server tool {kind!r} is not supported through the gateway",
            param=f"{param}.type",
        )
    extra = set(tool) - _TOOL_FIELDS
    if extra:
        key = sorted(extra)[0]
        raise InvalidRequest(
            f"{param}.{key}: Extra inputs are not permitted", param=f"{param}.{key}"
        )
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"{param}.name: a non-empty string is required", param=f"{param}.name")
    if not isinstance(schema, dict):
        raise InvalidRequest(
            f"{param}.input_schema: an object is required", param=f"{param}.input_schema"
        )
    fn: JSON = {"name": name}
    description = tool.get("description")
    if isinstance(description, str) and description:
        fn["description"] = description
    fn["parameters"] = schema
    strict = tool.get("strict")
    if strict is not None:
        if not isinstance(strict, bool):
            raise InvalidRequest(f"{param}.strict: must be a boolean", param=f"{param}.strict")
        fn["strict"] = strict
    out: JSON = {"type": "function", "function": fn}
    if isinstance(tool.get("cache_control"), dict):
        out["cache_control"] = tool["cache_control"]  # kept for an Anthropic upstream
    dropped = [k for k in _TOOL_HINTS if tool.get(k) is not None]
    if dropped:
        notes.append(f"{param}: {', '.join(dropped)} dropped: not supported through the gateway")
    return out


def _apply_tool_choice(out: JSON, choice: Any) -> None:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                "tool_choice.name: a non-empty string is required", param="tool_choice.name"
            )
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise InvalidRequest(
            "tool_choice.type: must be one of auto, any, tool, none", param="tool_choice.type"
        )
    if (
        isinstance(choice, dict)
        and choice.get("disable_parallel_tool_use") is True
        and "tools" in out
    ):
        out["parallel_tool_calls"] = False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- response: OpenAI chat.completion -> Anthropic message --------------------------------


def openai_to_message(
    completion: JSON, model: str, usage: Usage | None = None, *, thinking: bool = False
) -> JSON:
    """An OpenAI ``chat.completion`` -> an Anthropic ``message`` object.

    ``usage``: the gateway's Usage of the answer (it has the cache-write split the OpenAI
    JSON cannot carry); else the completion's own usage. Reasoning comes back as thinking
    blocks: ``message.thinking_blocks`` (Anthropic-shaped, signed: what an Anthropic
    upstream returned) always, a bare ``message.reasoning_content`` only when the client
    asked for ``thinking`` (it has no signature, so the block's signature is empty).
    """
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, dict) else None
    message = message if isinstance(message, dict) else {}

    content: list[JSON] = _thinking_blocks(message, thinking)
    text = _message_text(message.get("content"))
    refusal = message.get("refusal")
    if not text and isinstance(refusal, str):
        text = refusal
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        block = _tool_use_block(call)
        if block is not None:
            content.append(block)

    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    stop = FINISH_TO_STOP.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"
    if stop == "end_turn" and any(b["type"] == "tool_use" for b in content):
        stop = "tool_use"  # some upstreams say "stop" after calling a tool
    sequence = _stop_sequence(choice, finish)
    if sequence is not None:
        stop = "stop_sequence"
    if usage is None:
        usage = Usage.from_openai(completion.get("usage")) or Usage()
    return {
        "id": _message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": sequence,
        "usage": usage_to_anthropic(usage),
    }


def _stop_sequence(choice: Any, finish: Any) -> str | None:
    """The canonical choice extension ``stop_sequence``: which stop sequence ended the
    answer, when the upstream says (Anthropic, Bedrock); OpenAI's ``finish_reason: stop``
    alone does not."""
    value = choice.get("stop_sequence") if isinstance(choice, dict) else None
    return value if finish == "stop" and isinstance(value, str) and value else None


def _thinking_blocks(message: JSON, wanted: bool) -> list[JSON]:
    blocks = message.get("thinking_blocks")
    out: list[JSON] = []
    if isinstance(blocks, list):
        for block in blocks:
            native = _native_thinking(block)
            if native is not None:
                out.append(native)
    if out:
        return out
    reasoning = message.get("reasoning_content")
    if wanted and isinstance(reasoning, str) and reasoning:
        return [{"type": "thinking", "thinking": reasoning, "signature": ""}]
    return []


def _native_thinking(block: Any) -> JSON | None:
    if not isinstance(block, dict):
        return None
    if block.get("type") == "thinking" and isinstance(block.get("thinking"), str):
        signature = block.get("signature")
        return {
            "type": "thinking",
            "thinking": block["thinking"],
            "signature": signature if isinstance(signature, str) else "",
        }
    if block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
        return {"type": "redacted_thinking", "data": block["data"]}
    return None


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _tool_use_block(call: Any) -> JSON | None:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(fn, dict):
        return None
    return {
        "type": "tool_use",
        "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
        "name": fn.get("name") or "",
        "input": _parse_arguments(fn.get("arguments")),
    }


def _parse_arguments(arguments: Any) -> JSON:
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        value = None
    # Anthropic's input must be an object; keep what the model produced rather than drop it.
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


def _message_id(completion_id: Any) -> str:
    if isinstance(completion_id, str) and completion_id:
        rest = completion_id.removeprefix("chatcmpl-")
        return rest if rest.startswith("msg_") else f"msg_{rest}"
    return f"msg_{uuid.uuid4().hex[:24]}"


# --- stream: canonical OpenAI chunks -> Anthropic SSE events ------------------------------


class AnthropicStreamEncoder:
    """Canonical ``chat.completion.chunk`` dicts in, Anthropic's typed SSE events out.

    Anthropic content blocks are strictly sequential, so a block is closed as soon as the
    next one (text, or a tool call with a new index) begins.
    """

    __slots__ = (
        "_block",
        "_block_kind",
        "_chars",
        "_finished",
        "_id",
        "_input_tokens",
        "_model",
        "_next_block",
        "_started",
        "_stop_reason",
        "_stop_sequence",
        "_thinking",
        "_tool_blocks",
        "_usage",
    )

    def __init__(
        self,
        model: str,
        input_tokens: int = 0,
        message_id: str | None = None,
        *,
        thinking: bool = False,
    ) -> None:
        self._model = model
        self._thinking = thinking  # the client asked for thinking: relay bare reasoning
        self._input_tokens = input_tokens  # an estimate; corrected in message_delta
        self._id = message_id
        self._started = False
        self._finished = False
        self._block: int | None = None  # index of the open content block
        self._block_kind: str | None = None
        self._next_block = 0
        self._tool_blocks: dict[int, int] = {}  # OpenAI tool_calls index -> block index
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._usage: Usage | None = None
        self._chars = 0

    @property
    def finished(self) -> bool:
        return self._finished

    def feed(self, chunk: JSON) -> bytes:
        if self._finished:
            return b""
        out: list[bytes] = []
        if not self._started:
            out.append(self._message_start(chunk.get("id")))
        usage = Usage.from_openai(chunk.get("usage")) if chunk.get("usage") else None
        if usage is not None:
            self._usage = usage
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if isinstance(choice, dict):
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            finish = choice.get("finish_reason")
            if isinstance(finish, str) and self._stop_reason is None:
                self._stop_reason = FINISH_TO_STOP.get(finish, "end_turn")
                self._stop_sequence = _stop_sequence(choice, finish)
                if self._stop_sequence is not None:
                    self._stop_reason = "stop_sequence"
                self._close_block(out)
        return b"".join(out)

    def finish(self, usage: Usage | None = None) -> bytes:
        """The closing events (message_delta, message_stop), unless already sent."""
        if self._finished:
            return b""
        out: list[bytes] = []
        if not self._started:
            out.append(self._message_start(None))
        self._close_block(out)
        self._finished = True
        final = usage or self._usage
        delta_usage: JSON
        if final is not None:
            delta_usage = usage_to_anthropic(final, split=False)
        else:
            delta_usage = {"output_tokens": (self._chars + 3) // 4}
        stop = self._stop_reason or ("tool_use" if self._tool_blocks else "end_turn")
        out.append(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": self._stop_sequence},
                    "usage": delta_usage,
                },
            )
        )
        out.append(_event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def error(self, type: str, message: str) -> bytes:
        """An Anthropic error event: headers are already sent, so a late failure is the
        stream's last event rather than a status code."""
        self._finished = True
        payload = {"type": "error", "error": {"type": type, "message": message}}
        return _event("error", payload)

    def _message_start(self, chunk_id: Any) -> bytes:
        self._started = True
        if self._id is None:
            self._id = _message_id(chunk_id)
        message: JSON = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens, "output_tokens": 0},
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def _delta(self, delta: JSON, out: list[bytes]) -> None:
        reasoning = delta.get("reasoning_content")
        if self._thinking and isinstance(reasoning, str) and reasoning:
            if self._block_kind != "thinking":
                self._open_block(
                    out, "thinking", {"type": "thinking", "thinking": "", "signature": ""}
                )
            self._chars += len(reasoning)
            out.append(self._block_delta({"type": "thinking_delta", "thinking": reasoning}))
        for block in delta.get("thinking_blocks") or ():
            self._thinking_block(block, out)
        text = delta.get("content")
        if not isinstance(text, str) or not text:
            text = delta.get("refusal")
        if isinstance(text, str) and text:
            if self._block_kind != "text":
                self._open_block(out, "text", {"type": "text", "text": ""})
            self._chars += len(text)
            out.append(self._block_delta({"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._tool_delta(call, out)

    def _thinking_block(self, block: Any, out: list[bytes]) -> None:
        """A signed thinking block (its signature ends the open thinking block) or a
        redacted one, as an Anthropic upstream sent them (``delta.thinking_blocks``)."""
        native = _native_thinking(block)
        if native is None:
            return
        if native["type"] == "redacted_thinking":
            self._open_block(out, "redacted_thinking", native)
            self._close_block(out)
            return
        if self._block_kind != "thinking":
            self._open_block(out, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
            if native["thinking"]:
                delta = {"type": "thinking_delta", "thinking": native["thinking"]}
                out.append(self._block_delta(delta))
        if native["signature"]:
            out.append(
                self._block_delta({"type": "signature_delta", "signature": native["signature"]})
            )
        self._close_block(out)

    def _tool_delta(self, call: JSON, out: list[bytes]) -> None:
        index = call.get("index")
        index = index if isinstance(index, int) else len(self._tool_blocks)
        fn = call.get("function")
        fn = fn if isinstance(fn, dict) else {}
        block = self._tool_blocks.get(index)
        if block is None:
            name = fn.get("name")
            call_id = call.get("id")
            self._open_block(
                out,
                "tool_use",
                {
                    "type": "tool_use",
                    "id": call_id if isinstance(call_id, str) else f"toolu_{uuid.uuid4().hex[:24]}",
                    "name": name if isinstance(name, str) else "",
                    "input": {},
                },
            )
            block = self._block
            assert block is not None
            self._tool_blocks[index] = block
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            self._chars += len(args)
            # Upstreams stream tool calls one after another; should one interleave, its
            # fragment still names its own block index, which SDK accumulators follow.
            payload = {"type": "input_json_delta", "partial_json": args}
            out.append(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": block, "delta": payload},
                )
            )

    def _open_block(self, out: list[bytes], kind: str, content_block: JSON) -> None:
        self._close_block(out)
        self._block = self._next_block
        self._block_kind = kind
        self._next_block += 1
        out.append(
            _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": self._block,
                    "content_block": content_block,
                },
            )
        )

    def _close_block(self, out: list[bytes]) -> None:
        if self._block is None:
            return
        out.append(
            _event("content_block_stop", {"type": "content_block_stop", "index": self._block})
        )
        self._block = None
        self._block_kind = None

    def _block_delta(self, delta: JSON) -> bytes:
        return _event(
            "content_block_delta",
            {"type": "content_block_delta", "index": self._block, "delta": delta},
        )


def _event(name: str, payload: JSON) -> bytes:
    return encode(orjson.dumps(payload), name)


# --- errors ------------------------------------------------------------------------------


def anthropic_error_body(status: int, code: str, message: str) -> bytes:
    """An Anthropic-shaped error body. ``code`` (Interlock's stable code) is accepted for
    symmetry with the OpenAI renderer; Anthropic's shape has only a type per status."""
    payload = {
        "type": "error",
        "error": {"type": error_type_for_status(status), "message": message},
    }
    return orjson.dumps(payload)
