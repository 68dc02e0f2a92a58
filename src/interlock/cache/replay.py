"""Cached answers as streams, and streams assembled into answers worth caching."""

from __future__ import annotations

from typing import Any

import orjson

from interlock.types import JSON, Chunk, Usage


def replay_chunks(body: bytes, include_usage: bool, usage: Usage | None) -> list[Chunk]:
    """The chunks a provider would have streamed for this complete chat/text completion."""
    data = orjson.loads(body)
    base = {
        "id": data.get("id", "cached"),
        "created": data.get("created", 0),
        "model": data.get("model", ""),
    }
    chunks: list[Chunk] = []
    if data.get("object") == "text_completion":
        for c in data.get("choices") or ():
            chunks.append(Chunk({**base, "object": "text_completion", "choices": [
                {"index": c.get("index", 0), "text": c.get("text", ""), "finish_reason": c.get("finish_reason"),
                 "logprobs": c.get("logprobs")}]}))  # fmt: skip
    else:
        obj = "chat.completion.chunk"
        for c in data.get("choices") or ():
            i = c.get("index", 0)
            msg = c.get("message") or {}
            chunks.append(Chunk({**base, "object": obj, "choices": [
                {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}))  # fmt: skip
            delta: dict[str, Any] = {}
            if msg.get("content"):
                delta["content"] = msg["content"]
            if msg.get("tool_calls"):
                delta["tool_calls"] = [{**tc, "index": n} for n, tc in enumerate(msg["tool_calls"])]
            if msg.get("refusal"):
                delta["refusal"] = msg["refusal"]
            if delta:
                chunks.append(Chunk({**base, "object": obj, "choices": [
                    {"index": i, "delta": delta, "logprobs": c.get("logprobs"), "finish_reason": None}]}))  # fmt: skip
            chunks.append(Chunk({**base, "object": obj, "choices": [
                {"index": i, "delta": {}, "finish_reason": c.get("finish_reason")}]}))  # fmt: skip
    if include_usage and usage is not None:
        chunks.append(
            Chunk(
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": usage.to_openai(),
                }
            )
        )
    return chunks


class StreamAssembler:
    """Collects a stream's chunks into the complete answer it amounts to."""

    def __init__(self) -> None:
        self._choices: dict[int, dict[str, Any]] = {}
        self._head: JSON = {}
        self._text = False

    def feed(self, obj: JSON) -> None:
        if not self._head:
            self._head = {
                "id": obj.get("id"),
                "created": obj.get("created"),
                "model": obj.get("model"),
            }
        for c in obj.get("choices") or ():
            if not isinstance(c, dict):
                continue
            st = self._choices.setdefault(
                int(c.get("index", 0)), {"content": [], "tools": {}, "finish": None}
            )
            if "text" in c:
                self._text = True
                st["content"].append(c.get("text") or "")
            delta = c.get("delta") or {}
            if isinstance(delta.get("content"), str):
                st["content"].append(delta["content"])
            for tc in delta.get("tool_calls") or ():
                slot = st["tools"].setdefault(tc.get("index", 0), {"id": None, "type": "function",
                                                                 "function": {"name": "", "arguments": ""}})  # fmt: skip
                if tc.get("id"):
                    slot["id"] = tc["id"]
                fn = tc.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
            if c.get("finish_reason"):
                st["finish"] = c["finish_reason"]

    def complete(self) -> bool:
        return bool(self._choices) and all(st["finish"] for st in self._choices.values())

    def answer(self, usage: Usage | None) -> bytes:
        choices = []
        for i in sorted(self._choices):
            st = self._choices[i]
            text = "".join(st["content"])
            if self._text:
                choices.append(
                    {"index": i, "text": text, "finish_reason": st["finish"], "logprobs": None}
                )
                continue
            msg: dict[str, Any] = {"role": "assistant", "content": text or None}
            if st["tools"]:
                msg["tool_calls"] = [st["tools"][k] for k in sorted(st["tools"])]
            choices.append(
                {"index": i, "message": msg, "finish_reason": st["finish"], "logprobs": None}
            )
        out = {
            **self._head,
            "object": "text_completion" if self._text else "chat.completion",
            "choices": choices,
        }
        if usage is not None:
            out["usage"] = usage.to_openai()
        return orjson.dumps(out)
