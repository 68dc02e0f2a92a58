"""Cheap checks on a small tier's answer: is it worth asking the next tier up?

Only what can be judged from the response body alone, in microseconds: an empty answer,
a refusal, content that is not JSON although ``response_format`` asked for JSON (or lacks
the schema's required keys), and tool calls whose arguments are not a JSON object with
the tool's required parameters. Quality beyond that (is the answer *right*?) is not
something a gateway can check cheaply, so it does not try.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import orjson

__all__ = ["failed_check"]

_REFUSAL = re.compile(
    r"^\W*(i'?m sorry,? but |sorry,? )?(i (can(no|')t|am unable to|'m unable to|won'?t) "
    r"(help|assist|comply|do that|provide)|as an ai\b)",
    re.IGNORECASE,
)


def _required(schema: Any) -> list[str]:
    if isinstance(schema, dict) and isinstance(schema.get("required"), list):
        return [k for k in schema["required"] if isinstance(k, str)]
    return []


def _json_problem(content: str, fmt: Any) -> str | None:
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return "invalid_json"
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        js = fmt.get("json_schema")
        schema = js.get("schema") if isinstance(js, dict) else None
        missing = [k for k in _required(schema) if not isinstance(value, dict) or k not in value]
        if missing:
            return "invalid_json"
    return None


def _tool_problem(calls: list[Any], tools: Any) -> str | None:
    schemas: dict[str, Any] = {}
    for t in tools if isinstance(tools, list) else ():
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            schemas[fn["name"]] = fn.get("parameters")
    for call in calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict):
            return "tool_arguments"
        try:
            args = orjson.loads(fn.get("arguments") or "")
        except orjson.JSONDecodeError:
            return "tool_arguments"
        if not isinstance(args, dict):
            return "tool_arguments"
        name = fn.get("name")
        if schemas and name not in schemas:
            return "tool_arguments"
        if any(k not in args for k in _required(schemas.get(str(name)))):
            return "tool_arguments"
    return None


def failed_check(request: dict[str, Any], response: bytes, checks: Collection[str]) -> str | None:
    """The first check (of ``checks``) the answer fails, or None when it passes."""
    try:
        data = orjson.loads(response)
        message = data["choices"][0]["message"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None  # not a chat completion we can judge
    if not isinstance(message, dict):
        return None
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    calls = message.get("tool_calls")
    if "refusal" in checks and (message.get("refusal") or _REFUSAL.match(text)):
        return "refusal"
    if isinstance(calls, list) and calls:
        if "tool_arguments" in checks:
            return _tool_problem(calls, request.get("tools"))
        return None
    if "empty" in checks and not text.strip():
        return "empty"
    fmt = request.get("response_format")
    if (
        "invalid_json" in checks
        and isinstance(fmt, dict)
        and fmt.get("type") in ("json_object", "json_schema")
    ):
        return _json_problem(text, fmt)
    return None
