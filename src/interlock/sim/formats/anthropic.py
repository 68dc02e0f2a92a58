"""Anthropic Messages API wire format (``POST /v1/messages``), plain and streaming.

Every request is checked against what Anthropic publishes (``sim/conformance/anthropic.py``:
the official SDK's request types, closed, and the API's documented rules for the model's
family); one it would refuse gets Anthropic's 400 ``invalid_request_error`` with a
``request_id``. Answers are built to the SDK's ``Message`` / ``RawMessageStreamEvent``.

Prompt caching: the prefix up to each ``cache_control`` breakpoint (tools, system,
messages, in that order; ``cache_control`` itself ignored) is remembered per model for
its TTL (``5m`` default, ``1h``); a later request whose breakpoint prefix is remembered
reads it (``cache_read_input_tokens``), new breakpoints write (``cache_creation_input_tokens``
with the ``cache_creation`` TTL split). As Anthropic documents, a prefix shorter than the
minimum cacheable length (1024 tokens here, for every model) is not cached. A breakpoint's
token count is the prompt's count in proportion to the prefix's share of the prompt text.

Thinking (``thinking.type`` enabled or adaptive): the first third of a text answer's
tokens come as a ``thinking`` block (with a signature) and are reported in
``usage.output_tokens_details.thinking_tokens``; ``output_tokens`` counts both. A tool
call is preceded by a signed thinking block with its text omitted (0 tokens). With
thinking on, a tool loop's assistant turn must start with a thinking block (refused
otherwise, as Anthropic does).
"""

from __future__ import annotations

import hashlib
import time
from itertools import count
from typing import Any

import orjson
from aiohttp import web

from interlock.sim.conformance.anthropic import count_issues, request_issues
from interlock.sim.engine import Choice, GenSpec, Tool
from interlock.sim.formats.common import canonical, parse_body, retry_after_header, sse_event
from interlock.sim.runtime import (
    BadRequest,
    StreamParts,
    json_response,
    run_faults,
    serve,
    state_of,
)
from interlock.sim.textgen import chat_prompt_tokens, content_digest

__all__ = ["add_routes", "anthropic_error"]

_STOP = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool": "tool_use",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",  # the SDK's ErrorType (2.17.0) has no request_too_large
    429: "rate_limit_error",
    529: "overloaded_error",
}


_request_ids = count(1)


def anthropic_error(status: int, message: str, retry_after: float | None = None) -> web.Response:
    etype = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    request_id = f"req_sim{next(_request_ids):020d}"
    return json_response(
        {"type": "error", "error": {"type": etype, "message": message}, "request_id": request_id},
        status,
        {**retry_after_header(retry_after), "request-id": request_id},
    )


def _block_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if not isinstance(content, list):
        return out
    for block in content:
        if not isinstance(block, dict):
            continue
        btype = block.get("type")
        if btype == "text" and isinstance(block.get("text"), str):
            out.append(block["text"])
        elif btype == "tool_use":
            out.append(f"{block.get('name', '')} {orjson.dumps(block.get('input', {})).decode()}")
        elif btype == "tool_result":
            out.extend(_block_texts(block.get("content")))
    return out


def _tools(body: dict[str, Any]) -> tuple[list[Tool], str, str | None]:
    tools: list[Tool] = []
    raw = body.get("tools") or []
    if not isinstance(raw, list):
        raise BadRequest("tools: Input should be a valid list")
    for i, tool in enumerate(raw):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise BadRequest(f"tools.{i}.name: Field required")
        schema = tool.get("input_schema")
        tools.append(Tool(tool["name"], schema if isinstance(schema, dict) else {}))
    choice = body.get("tool_choice")
    if not isinstance(choice, dict):
        return tools, "auto", None
    ctype = choice.get("type")
    if ctype == "any":
        return tools, "required", None
    if ctype == "none":
        return tools, "none", None
    if ctype == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not any(t.name == name for t in tools):
            raise BadRequest(f"tool_choice.name: tool '{name}' not found in tools")
        return tools, "named", name
    return tools, "auto", None


def parse_messages(body: dict[str, Any], model: str) -> GenSpec:
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise BadRequest("max_tokens: Field required")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        # 0 is allowed: it fills the prompt cache without generating.
        raise BadRequest("max_tokens: Input should be a valid integer >= 0")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise BadRequest("messages: Field required")
    texts: list[str] = []
    system = body.get("system")
    if system is not None:
        texts.append(" ".join(_block_texts(system)))
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant", "system"):
            raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        texts.append(" ".join(_block_texts(msg.get("content"))))
    turns = [m for m in messages if isinstance(m, dict) and m.get("role") != "system"]
    if turns and turns[0].get("role") != "user":
        raise BadRequest('messages: first message must use the "user" role')
    stops = body.get("stop_sequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise BadRequest("stop_sequences: Input should be a valid list of strings")
    tools, mode, name = _tools(body)
    last_tool_result = False
    if messages:
        content = messages[-1].get("content")
        last_tool_result = isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        )
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    schema = fmt.get("schema") if isinstance(fmt, dict) else None
    return GenSpec(
        model=model,
        json_schema=schema if isinstance(schema, dict) else None,
        digest=content_digest(canonical(body)),
        prompt_tokens=chat_prompt_tokens(texts),
        stream=bool(body.get("stream")),
        max_tokens=max_tokens,
        stop=list(stops),
        tools=tools,
        tool_mode=mode,
        tool_name=name,
        last_is_tool_result=last_tool_result,
    )


# --- prompt cache -------------------------------------------------------------------------

MIN_CACHEABLE_TOKENS = 1024
_TTL_S = {"5m": 300.0, "1h": 3600.0}
PromptCache = dict[bytes, float]  # prefix digest -> expiry (time.monotonic)


class _Caches:
    """The simulator's prompt cache, emptied when the simulator is reset (a reset starts
    a new request-id sequence, which is how it is noticed here)."""

    def __init__(self) -> None:
        self.epoch: object = None
        self.entries: PromptCache = {}

    def current(self, epoch: object) -> PromptCache:
        if epoch is not self.epoch:
            self.epoch, self.entries = epoch, {}
        return self.entries


_CACHE: web.AppKey[_Caches] = web.AppKey("anthropic_prompt_cache", _Caches)


def _strip_cache(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_cache(v) for k, v in node.items() if k != "cache_control"}
    if isinstance(node, list):
        return [_strip_cache(v) for v in node]
    return node


def _breakpoints(body: dict[str, Any]) -> tuple[list[tuple[int, bytes, str]], int]:
    """(prefix length in bytes, prefix digest, ttl) at each ``cache_control`` block, in
    prompt order (tools, system, messages), and the whole prompt's length in bytes."""
    model = str(body.get("model", ""))
    digest = hashlib.sha256(model.encode())
    size = 0
    points: list[tuple[int, bytes, str]] = []

    def add(block: Any) -> None:
        nonlocal size
        data = orjson.dumps(_strip_cache(block), option=orjson.OPT_SORT_KEYS)
        digest.update(data)
        size += len(data)
        mark = block.get("cache_control") if isinstance(block, dict) else None
        if isinstance(mark, dict):
            points.append((size, digest.copy().digest(), str(mark.get("ttl") or "5m")))

    for tool in body.get("tools") or ():
        add(tool)
    system = body.get("system")
    for block in [system] if isinstance(system, str) else system or ():
        add(block)
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        add({"role": message.get("role") if isinstance(message, dict) else None})
        for block in [content] if isinstance(content, str) else content or ():
            add(block)
    return points, size


def cache_usage(
    cache: PromptCache, body: dict[str, Any], prompt_tokens: int
) -> tuple[int, int, int]:
    """(cache read, 5-minute writes, 1-hour writes) in tokens, updating ``cache``."""
    points, size = _breakpoints(body)
    if not points or not size:
        return 0, 0, 0
    now = time.monotonic()
    tokens = [min(prompt_tokens, prompt_tokens * at // size) for at, _, _ in points]
    read = 0
    for n, (_, digest, _) in zip(tokens, points, strict=True):
        if cache.get(digest, 0.0) > now:
            read = max(read, n)
    w5 = w1 = 0
    done = read
    for n, (_, digest, ttl) in zip(tokens, points, strict=True):
        expiry = now + _TTL_S.get(ttl, 300.0)
        if n <= read:
            if cache.get(digest, 0.0) > now:
                cache[digest] = max(cache[digest], expiry)  # a hit refreshes the TTL
            continue
        if n < MIN_CACHEABLE_TOKENS:
            continue
        if ttl == "1h":
            w1 += n - done
        else:
            w5 += n - done
        done = n
        cache[digest] = expiry
    return read, w5, w1


def _thinks(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


class MessagesRenderer:
    def __init__(
        self,
        spec: GenSpec,
        rid: str,
        model: str,
        *,
        cache: tuple[int, int, int] = (0, 0, 0),
        thinking: bool = False,
    ) -> None:
        self.id = f"msg_sim{rid}"
        self.model = model
        self.spec = spec
        self.cache = cache
        self.thinking = thinking

    def _split(self, c: Choice) -> int:
        """How many of a text answer's pieces are thinking."""
        if not self.thinking or c.tool_call is not None or len(c.pieces) < 2:
            return 0
        return max(1, len(c.pieces) // 3)

    def _usage(self, output_tokens: int, thinking_tokens: int = 0) -> dict[str, Any]:
        read, w5, w1 = self.cache
        usage: dict[str, Any] = {
            "input_tokens": max(0, self.spec.prompt_tokens - read - w5 - w1),
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": w5 + w1,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
            "service_tier": "standard",
        }
        if self.thinking:
            usage["output_tokens_details"] = {"thinking_tokens": thinking_tokens}
        return usage

    def _blocks(self, c: Choice) -> list[dict[str, Any]]:
        if c.tool_call is not None:
            # Thinking before a tool call: signed, its text omitted (as with
            # display "omitted"), so a tool loop can hand it back.
            lead = [self._tool_thought(c)] if self.thinking else []
            return [
                *lead,
                {
                    "type": "tool_use",
                    "id": f"toolu_{c.tool_call.id}",
                    "name": c.tool_call.name,
                    "input": c.tool_call.input,
                },
            ]
        k = self._split(c)
        blocks: list[dict[str, Any]] = []
        if k:
            thought = "".join(c.pieces[:k])
            blocks.append({"type": "thinking", "thinking": thought, "signature": _sign(thought)})
        text = "".join(c.pieces[k:]) if k else c.text
        if text:
            blocks.append({"type": "text", "text": text})
        return blocks

    @staticmethod
    def _tool_thought(c: Choice) -> dict[str, Any]:
        call_id = c.tool_call.id if c.tool_call is not None else ""
        return {"type": "thinking", "thinking": "", "signature": _sign(call_id)}

    def body(self, choices: list[Choice]) -> dict[str, Any]:
        c = choices[0]
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": self._blocks(c),
            "stop_reason": _STOP[c.finish],
            "stop_sequence": c.stop_sequence,
            "usage": self._usage(c.completion_tokens, self._split(c)),
        }

    def stream(self, choices: list[Choice]) -> StreamParts:
        c = choices[0]
        start = {
            "type": "message_start",
            "message": {
                "id": self.id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": self._usage(1),
            },
        }
        # (index, block at content_block_start, its deltas)
        blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        k = self._split(c)
        if c.tool_call is not None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": f"toolu_{c.tool_call.id}",
                "name": c.tool_call.name,
                "input": {},
            }
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in c.tool_call.pieces]
            if self.thinking:
                signed = {
                    "type": "signature_delta",
                    "signature": self._tool_thought(c)["signature"],
                }
                blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, [signed]))
            blocks.append((block, deltas))
        else:
            if k:
                thought = "".join(c.pieces[:k])
                deltas = [{"type": "thinking_delta", "thinking": p} for p in c.pieces[:k]]
                deltas.append({"type": "signature_delta", "signature": _sign(thought)})
                blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
            text = [{"type": "text_delta", "text": p} for p in c.pieces[k:]]
            blocks.append(({"type": "text", "text": ""}, text))
        head = [sse_event("message_start", start)]
        content: list[tuple[bytes, int]] = []
        for index, (block, deltas) in enumerate(blocks):
            opened = sse_event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
            if index == 0:
                head += [opened, sse_event("ping", {"type": "ping"})]
            else:
                content.append((opened, 0))
            for d in deltas:
                event = {"type": "content_block_delta", "index": index, "delta": d}
                tokens = 0 if d["type"] == "signature_delta" else 1
                content.append((sse_event("content_block_delta", event), tokens))
            if index < len(blocks) - 1:
                stop = {"type": "content_block_stop", "index": index}
                content.append((sse_event("content_block_stop", stop), 0))
        last = len(blocks) - 1
        tail = [
            sse_event("content_block_stop", {"type": "content_block_stop", "index": last}),
            sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _STOP[c.finish], "stop_sequence": c.stop_sequence},
                    "usage": self._delta_usage(c.completion_tokens, k),
                },
            ),
            sse_event("message_stop", {"type": "message_stop"}),
        ]
        broken = b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'
        return StreamParts(
            head, content, tail, broken=broken, headers={"request-id": f"req_sim{self.id}"}
        )

    def _delta_usage(self, output_tokens: int, thinking_tokens: int) -> dict[str, Any]:
        usage = self._usage(output_tokens, thinking_tokens)
        del usage["cache_creation"], usage["service_tier"]  # not in MessageDeltaUsage
        return usage


def _sign(thought: str) -> str:
    return hashlib.sha256(thought.encode()).hexdigest()


async def messages(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    raw = await st.read(request)
    # x-api-key, or (as newer SDKs send) an API key as a bearer token
    if not request.headers.get("x-api-key") and not request.headers.get(
        "Authorization", ""
    ).startswith("Bearer "):
        return anthropic_error(401, "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        return anthropic_error(400, "anthropic-version: header is required")
    try:
        body = parse_body(raw)
    except BadRequest as exc:
        return anthropic_error(400, exc.message)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return anthropic_error(400, "model: Field required")
    stream = bool(body.get("stream"))
    decision, replaced = await run_faults(
        request, st, fmt="anthropic", model=model, stream=stream, error=anthropic_error
    )
    if replaced is not None:
        return replaced
    issues = request_issues(body)
    if issues:
        return anthropic_error(400, "; ".join(issues[:5]))
    try:
        spec = parse_messages(body, model)
    except BadRequest as exc:
        return anthropic_error(exc.status, exc.message)
    entries = request.app[_CACHE].current(st._ids)  # a reset replaces _ids: cache emptied
    cached = cache_usage(entries, body, spec.prompt_tokens)
    thinks = _thinks(body)
    return await serve(
        request,
        st,
        fmt="anthropic",
        spec=spec,
        decision=decision,
        renderer_factory=lambda rid: MessagesRenderer(
            spec, rid, model, cache=cached, thinking=thinks
        ),
    )


async def count_tokens(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    raw = await st.read(request)
    try:
        body = parse_body(raw)
        issues = count_issues(body)
        if issues:
            return anthropic_error(400, "; ".join(issues[:5]))
        body = {**body, "max_tokens": 1}
        spec = parse_messages(body, str(body.get("model", "")))
    except BadRequest as exc:
        return anthropic_error(exc.status, exc.message)
    return json_response({"input_tokens": spec.prompt_tokens})


def add_routes(app: web.Application) -> None:
    app[_CACHE] = _Caches()
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
