"""Token estimates for when an upstream reports no usage.

A deliberate approximation (about four characters per token, the usual figure for
English BPE vocabularies); results built from it carry ``Usage.estimated = True`` so
nobody mistakes them for provider-reported counts.
"""

from __future__ import annotations

from typing import Any

_PER_MESSAGE = 4


def estimate_tokens(text: str) -> int:
    return (len(text) + 3) // 4


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return estimate_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    total += estimate_tokens(text)
                elif part.get("type") in ("image_url", "image", "input_audio"):
                    total += 85  # a low-detail image tile, per OpenAI's published figure
            elif isinstance(part, str):
                total += estimate_tokens(part)
        return total
    return 0


def estimate_request_tokens(body: dict[str, Any]) -> int:
    messages = body.get("messages")
    if isinstance(messages, list):
        total = 3
        for msg in messages:
            if isinstance(msg, dict):
                total += _PER_MESSAGE + _content_tokens(msg.get("content"))
        return total
    prompt = body.get("prompt") if "prompt" in body else body.get("input")
    if isinstance(prompt, str):
        return estimate_tokens(prompt)
    if isinstance(prompt, list):
        return sum(
            _content_tokens(p) if not isinstance(p, str) else estimate_tokens(p) for p in prompt
        )
    return 0
