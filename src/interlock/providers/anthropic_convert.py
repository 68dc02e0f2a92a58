"""Vocabulary shared by both directions of the Anthropic <-> OpenAI translation.

The outbound adapter (:mod:`interlock.providers.anthropic`) and the inbound Messages API
(:mod:`interlock.api.messages_format`) are inverses of each other; the tables and the
small value conversions they share live here so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from interlock.types import JSON, Usage

# Anthropic stop_reason -> OpenAI finish_reason.
STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# OpenAI finish_reason -> Anthropic stop_reason.
FINISH_TO_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type_for_status(status: int) -> str:
    """The Anthropic ``error.type`` a client expects for an HTTP status."""
    known = _ERROR_TYPES.get(status)
    if known is not None:
        return known
    return "api_error" if status >= 500 else "invalid_request_error"


def parse_data_url(url: str) -> tuple[str, str] | None:
    """``data:<media>;base64,<data>`` -> (media type, base64 data); None if not one."""
    if not url.startswith("data:"):
        return None
    header, sep, data = url[5:].partition(",")
    if not sep:
        return None
    media, _, encoding = header.partition(";")
    if encoding != "base64":
        return None
    return media or "application/octet-stream", data


def url_to_source(url: str) -> JSON:
    """An OpenAI image/file URL -> an Anthropic ``source`` object."""
    parsed = parse_data_url(url)
    if parsed is not None:
        media, data = parsed
        return {"type": "base64", "media_type": media, "data": data}
    return {"type": "url", "url": url}


def source_to_url(source: Any) -> str | None:
    """An Anthropic base64 or url ``source`` -> a data/http URL; None if neither."""
    if not isinstance(source, dict):
        return None
    kind = source.get("type")
    if kind == "base64":
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and isinstance(data, str):
            return f"data:{media};base64,{data}"
    elif kind == "url":
        url = source.get("url")
        if isinstance(url, str):
            return url
    return None


def usage_from_anthropic(data: Any) -> Usage | None:
    """Anthropic usage -> Usage; prompt tokens include cache reads and cache writes.

    Cache writes are split by TTL from ``cache_creation`` (``ephemeral_5m_input_tokens``
    -> cache_write_tokens, ``ephemeral_1h_input_tokens`` -> cache_write_1h_tokens); without
    the split every write is a 5-minute one (the default TTL). Thinking tokens
    (``output_tokens_details.thinking_tokens``) -> reasoning_tokens, which stay part of
    completion_tokens as Anthropic's ``output_tokens`` includes them.
    """
    if not isinstance(data, dict):
        return None
    fresh = _int(data.get("input_tokens"))
    read = _int(data.get("cache_read_input_tokens"))
    written = _int(data.get("cache_creation_input_tokens"))
    split = data.get("cache_creation")
    write_1h = 0
    if isinstance(split, dict):
        write_1h = min(written, _int(split.get("ephemeral_1h_input_tokens")))
        if not written:  # only the split was given
            write_1h = _int(split.get("ephemeral_1h_input_tokens"))
            written = write_1h + _int(split.get("ephemeral_5m_input_tokens"))
    details = data.get("output_tokens_details")
    thinking = _int(details.get("thinking_tokens")) if isinstance(details, dict) else 0
    return Usage(
        prompt_tokens=fresh + read + written,
        completion_tokens=_int(data.get("output_tokens")),
        cached_tokens=read,
        reasoning_tokens=thinking,
        cache_write_tokens=written - write_1h,
        cache_write_1h_tokens=write_1h,
    )


def usage_to_anthropic(usage: Usage, *, split: bool = True) -> JSON:
    """Usage -> Anthropic usage. Anthropic's ``input_tokens`` excludes cache reads and
    cache writes (its total input is the sum of the three). ``split``: include the
    ``cache_creation`` TTL split (a Message's usage has it, a message_delta's does not)."""
    read = usage.cached_tokens
    w5, w1 = usage.cache_write_tokens, usage.cache_write_1h_tokens
    out: JSON = {
        "input_tokens": max(0, usage.prompt_tokens - read - w5 - w1),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": w5 + w1,
        "cache_read_input_tokens": read,
    }
    if split:
        out["cache_creation"] = {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1}
    if usage.reasoning_tokens:
        out["output_tokens_details"] = {
            "thinking_tokens": min(usage.reasoning_tokens, usage.completion_tokens)
        }
    return out


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --- thinking: the canonical answer extensions ---------------------------------------------
#
# An answer carries reasoning in the canonical body as ``message.reasoning_content`` (text)
# and ``message.thinking_blocks`` (Anthropic-shaped blocks, signatures intact); a stream as
# ``delta.reasoning_content`` fragments and ``delta.thinking_blocks`` entries (the signature
# that ends a thinking block, or a whole redacted_thinking block). The inbound Messages API
# turns them back into Anthropic blocks (api/messages_format.py); OpenAI clients ignore them.
# Likewise a choice's ``stop_sequence`` (the sequence that ended the answer, Anthropic's
# ``stop_sequence`` field, next to ``finish_reason: "stop"``) comes back as
# ``stop_reason: "stop_sequence"``.


def reasoning_extensions(content: Any) -> JSON:
    """An Anthropic message's content -> the canonical message's reasoning extensions
    (``{}`` when it has no thinking or redacted_thinking block)."""
    blocks: list[JSON] = []
    texts: list[str] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "thinking" and isinstance(block.get("thinking"), str):
            signature = block.get("signature")
            texts.append(block["thinking"])
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": block["thinking"],
                    "signature": signature if isinstance(signature, str) else "",
                }
            )
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str):
            blocks.append({"type": "redacted_thinking", "data": block["data"]})
    if not blocks:
        return {}
    return {"reasoning_content": "".join(texts), "thinking_blocks": blocks}


def thinking_stream_delta(event: Any) -> JSON | None:
    """One Anthropic stream event -> the canonical ``delta`` extension it carries, if any:
    a ``thinking_delta`` -> ``reasoning_content``; a ``signature_delta`` -> a thinking block
    with that signature; the start of a ``redacted_thinking`` block -> that block."""
    if not isinstance(event, dict):
        return None
    if event.get("type") == "content_block_start":
        block = event.get("content_block")
        if (
            isinstance(block, dict)
            and block.get("type") == "redacted_thinking"
            and isinstance(block.get("data"), str)
        ):
            return {"thinking_blocks": [{"type": "redacted_thinking", "data": block["data"]}]}
        return None
    if event.get("type") != "content_block_delta":
        return None
    delta = event.get("delta")
    if not isinstance(delta, dict):
        return None
    if delta.get("type") == "thinking_delta" and isinstance(delta.get("thinking"), str):
        return {"reasoning_content": delta["thinking"]} if delta["thinking"] else None
    if delta.get("type") == "signature_delta" and isinstance(delta.get("signature"), str):
        block = {"type": "thinking", "thinking": "", "signature": delta["signature"]}
        return {"thinking_blocks": [block]}
    return None
