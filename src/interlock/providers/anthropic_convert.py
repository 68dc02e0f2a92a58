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
    """Anthropic usage -> Usage; prompt tokens include cache reads and cache writes."""
    if not isinstance(data, dict):
        return None
    fresh = _int(data.get("input_tokens"))
    read = _int(data.get("cache_read_input_tokens"))
    written = _int(data.get("cache_creation_input_tokens"))
    return Usage(
        prompt_tokens=fresh + read + written,
        completion_tokens=_int(data.get("output_tokens")),
        cached_tokens=read,
    )


def usage_to_anthropic(usage: Usage) -> JSON:
    """Usage -> Anthropic usage; Anthropic's input_tokens excludes cache reads."""
    return {
        "input_tokens": max(0, usage.prompt_tokens - usage.cached_tokens),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
