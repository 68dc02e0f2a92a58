"""What the worst-case bound (spend/bound.py) costs per request, next to parsing the body.

    .venv/bin/python bench/cost_bound.py

Runs on every budgeted request, so it must stay well below the rest of the request path
(~500 µs of CPU per request, docs/benchmarks.md); parsing the same body with orjson is the
yardstick. Prints the best of several rounds (the least disturbed by other processes).
"""

from __future__ import annotations

import base64
import timeit
from collections.abc import Callable
from typing import Any

import orjson

from interlock.spend.bound import bound_request
from interlock.types import Endpoint


def _best_us(fn: Callable[[], object], number: int, rounds: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=rounds)) / number * 1e6


def bodies() -> dict[str, tuple[Endpoint, dict[str, Any]]]:
    chat = [{"role": "system", "content": "You are a helpful assistant. " * 10}]
    for _ in range(10):
        chat.append({"role": "user", "content": "Tell me about the trains in the north. " * 7})
        chat.append({"role": "assistant", "content": "Sure, here they are: " * 5})
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"q": 1}'}}
    tools_chat = [
        *chat[:5],
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": "result " * 50},
    ]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}}}}]  # fmt: skip
    png = "data:image/png;base64," + base64.b64encode(b"\0" * 300_000).decode()
    image = [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": png}}]}]  # fmt: skip
    return {
        "chat, 4.9 KB, 21 messages": (Endpoint.CHAT, {"model": "m", "messages": chat}),
        "chat with tools and a tool call, 2 KB": (
            Endpoint.CHAT,
            {"model": "m", "messages": tools_chat, "tools": tools},
        ),
        "chat with a 300 KB image": (Endpoint.CHAT, {"model": "m", "messages": image}),
        "completions, 8,000 token ids": (
            Endpoint.COMPLETIONS,
            {"model": "m", "prompt": list(range(8000)), "max_tokens": 16},
        ),
        "embeddings, 16 x 512 token ids": (
            Endpoint.EMBEDDINGS,
            {"model": "m", "input": [list(range(512))] * 16},
        ),
    }


def main() -> None:
    print("| body | bytes | bound µs | orjson.loads µs |\n| --- | ---: | ---: | ---: |")
    for name, (endpoint, body) in bodies().items():
        raw = orjson.dumps(body)
        number = max(50, 200_000 // max(1, len(raw) // 100))
        bound = _best_us(lambda e=endpoint, b=body: bound_request(e, b), number)
        parse = _best_us(lambda r=raw: orjson.loads(r), number)
        print(f"| {name} | {len(raw):,} | {bound:.1f} | {parse:.1f} |")


if __name__ == "__main__":
    main()
