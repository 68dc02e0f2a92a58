"""Anthropic Messages API wire format (``POST /v1/messages``), plain and streaming."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

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
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str, retry_after: float | None = None) -> web.Response:
    etype = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return json_response(
        {"type": "error", "error": {"type": etype, "message": message}},
        status,
        retry_after_header(retry_after),
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
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest("max_tokens: Input should be a valid integer greater than 0")
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise BadRequest("messages: Field required")
    texts: list[str] = []
    system = body.get("system")
    if system is not None:
        texts.append(" ".join(_block_texts(system)))
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        texts.append(" ".join(_block_texts(msg.get("content"))))
    if messages and messages[0].get("role") != "user":
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
    return GenSpec(
        model=model,
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


class MessagesRenderer:
    def __init__(self, spec: GenSpec, rid: str, model: str) -> None:
        self.id = f"msg_sim{rid}"
        self.model = model
        self.spec = spec

    @staticmethod
    def _block(c: Choice) -> dict[str, Any]:
        if c.tool_call is not None:
            return {
                "type": "tool_use",
                "id": f"toolu_{c.tool_call.id}",
                "name": c.tool_call.name,
                "input": c.tool_call.input,
            }
        return {"type": "text", "text": c.text}

    def _usage(self, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": self.spec.prompt_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "service_tier": "standard",
        }

    def body(self, choices: list[Choice]) -> dict[str, Any]:
        c = choices[0]
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [self._block(c)],
            "stop_reason": _STOP[c.finish],
            "stop_sequence": c.stop_sequence,
            "usage": self._usage(c.completion_tokens),
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
        if c.tool_call is not None:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": f"toolu_{c.tool_call.id}",
                "name": c.tool_call.name,
                "input": {},
            }
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in c.tool_call.pieces]
        else:
            block = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in c.pieces]
        head = [
            sse_event("message_start", start),
            sse_event(
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            ),
            sse_event("ping", {"type": "ping"}),
        ]
        content = [
            (
                sse_event(
                    "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d}
                ),
                1,
            )
            for d in deltas
        ]
        tail = [
            sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
            sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _STOP[c.finish], "stop_sequence": c.stop_sequence},
                    "usage": {"output_tokens": c.completion_tokens},
                },
            ),
            sse_event("message_stop", {"type": "message_stop"}),
        ]
        broken = b'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'
        return StreamParts(
            head, content, tail, broken=broken, headers={"request-id": f"req_sim{self.id}"}
        )


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
    try:
        spec = parse_messages(body, model)
    except BadRequest as exc:
        return anthropic_error(exc.status, exc.message)
    return await serve(
        request,
        st,
        fmt="anthropic",
        spec=spec,
        decision=decision,
        renderer_factory=lambda rid: MessagesRenderer(spec, rid, model),
    )


async def count_tokens(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    raw = await st.read(request)
    try:
        body = parse_body(raw)
        body.setdefault("max_tokens", 1)
        spec = parse_messages(body, str(body.get("model", "")))
    except BadRequest as exc:
        return anthropic_error(exc.status, exc.message)
    return json_response({"input_tokens": spec.prompt_tokens})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
