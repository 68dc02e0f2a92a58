"""Helpers shared by the format modules."""

from __future__ import annotations

import time
from typing import Any

import orjson

from interlock.sim.runtime import BadRequest

__all__ = [
    "canonical",
    "parse_body",
    "positive_int",
    "retry_after_header",
    "sse",
    "sse_event",
    "text_of",
    "unix_now",
]


def parse_body(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``; :class:`BadRequest` when it is not one."""
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly.)"
        ) from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


# Request keys that shape *how* an answer is sampled or delivered, not *what* is asked.
# They are left out of the content digest, so a capped, stopped or streamed answer is a
# prefix of (or equal to) the plain one.
CONTROL_KEYS = frozenset(
    {
        "stream",
        "stream_options",
        "stop",
        "stop_sequences",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "logprobs",
        "top_logprobs",
        "seed",
        "temperature",
        "top_p",
        "top_k",
        "presence_penalty",
        "frequency_penalty",
        "user",
        "metadata",
        "store",
        "service_tier",
        "parallel_tool_calls",
        "inferenceConfig",
        "logit_bias",
    }
)


def canonical(body: dict[str, Any]) -> dict[str, Any]:
    """The part of a request body that determines the generated content."""
    return {k: v for k, v in body.items() if k not in CONTROL_KEYS}


def retry_after_header(retry_after: float | None) -> dict[str, str]:
    if retry_after is None:
        return {}
    value = int(retry_after) if float(retry_after).is_integer() else retry_after
    return {"Retry-After": str(value)}


def sse(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def sse_event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def unix_now() -> int:
    return int(time.time())


def text_of(content: Any) -> list[str]:
    """Texts inside a message ``content`` that is a string or a list of parts/blocks."""
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    out.append(text)
    return out


def positive_int(value: Any, name: str, *, minimum: int = 1) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(
            f"Invalid type for '{name}': expected an integer.", param=name, code="invalid_type"
        )
    if value < minimum:
        raise BadRequest(
            f"Invalid '{name}': integer below minimum value {minimum}.",
            param=name,
            code="integer_below_min_value",
        )
    return value
