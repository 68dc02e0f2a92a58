"""What of a request is compared by meaning, and what must match exactly.

A semantic hit may only differ from the cached request in wording. Everything else —
the tenant, the model alias, every sampling parameter, tools, response_format and (in
``last_turn`` mode) every earlier turn including the system prompt — goes into the
*partition*, a digest that must be identical. Only the text is compared by meaning.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.cache.keys import IGNORED_FIELDS

MAX_TEXT_CHARS = 8_000  # longer prompts are not matched by meaning (exact match still applies)


@dataclass(frozen=True, slots=True)
class Subject:
    partition: str
    text: str


def _text_of(content: Any) -> str | None:
    """A message's text; None for anything that is not plain text (images, audio)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                return None
            t = part.get("text")
            if not isinstance(t, str):
                return None
            parts.append(t)
        return "\n".join(parts)
    return None


def _digest(*items: Any) -> str:
    data = orjson.dumps(items, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()[:32]


def subject(
    namespace: str, alias: str, endpoint: str, body: dict[str, Any], context: str
) -> Subject | None:
    """The partition and text of a request, or None when it is not matched by meaning."""
    params = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    if endpoint == "chat":
        messages = params.pop("messages", None)
        if not isinstance(messages, list) or not messages:
            return None
        last = messages[-1]
        if not isinstance(last, dict) or last.get("role") != "user":
            return None
        if context == "last_turn":
            text = _text_of(last.get("content"))
            earlier: Any = messages[:-1]
        else:
            lines = []
            for m in messages:
                t = _text_of(m.get("content")) if isinstance(m, dict) else None
                if t is None or not isinstance(m.get("role"), str):
                    return None
                lines.append(f"{m['role']}: {t}")
            text, earlier = "\n".join(lines), None
    elif endpoint == "completions":
        prompt = params.pop("prompt", None)
        text, earlier = (prompt if isinstance(prompt, str) else None), None
    else:
        return None
    if text is None or not text.strip() or len(text) > MAX_TEXT_CHARS:
        return None
    return Subject(_digest(namespace, alias, endpoint, context, params, earlier), text)
