"""AWS Bedrock Converse wire format: ``/model/{modelId}/converse`` and ``converse-stream``
(the latter as binary AWS event-stream messages).

Every request is first checked against botocore's ``bedrock-runtime`` service model
(:mod:`interlock.sim.conformance.bedrock`): one the service would refuse gets its answer,
400 ``ValidationException`` with the constraint(s) it breaks. Prompt caching: a request
with ``cachePoint`` blocks writes the prefix before its last cache point on first sight
and reads it afterwards (``cacheWriteInputTokens`` with ``cacheDetails`` by TTL /
``cacheReadInputTokens``, both outside ``inputTokens`` as Bedrock counts them).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from interlock.sim.conformance.bedrock import (
    conversation_errors,
    validate_request,
    validation_message,
)
from interlock.sim.engine import Choice, GenSpec, Tool
from interlock.sim.eventstream import encode_event, encode_message
from interlock.sim.formats.common import canonical, retry_after_header
from interlock.sim.runtime import (
    BadRequest,
    StreamParts,
    json_response,
    run_faults,
    serve,
    state_of,
)
from interlock.sim.textgen import chat_prompt_tokens, content_digest

__all__ = ["add_routes", "bedrock_error"]

_STOP = {
    "stop": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool": "tool_use",
}
_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
Handler = Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]
# Prompt-cache prefixes this simulator has written (digest of the cached prefix).
CACHE_KEY: web.AppKey[set[bytes]] = web.AppKey("interlock_sim_bedrock_cache", set)


@dataclass(frozen=True, slots=True)
class CacheUse:
    """What a request's cache point does: ``read`` or ``write`` ``tokens`` of its prefix."""

    read: int = 0
    write: int = 0
    ttl: str = "5m"


def bedrock_error(
    status: int, message: str, retry_after: float | None = None, error_type: str | None = None
) -> web.Response:
    etype = error_type or _ERRORS.get(
        status, "InternalServerException" if status >= 500 else "ValidationException"
    )
    headers = {
        "x-amzn-ErrorType": f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/",
        **retry_after_header(retry_after),
    }
    return json_response({"message": message}, status, headers)


def _texts(content: Any) -> list[str]:
    out: list[str] = []
    if not isinstance(content, list):
        return out
    for block in content:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            out.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            out.append(f"{use.get('name', '')} {orjson.dumps(use.get('input', {})).decode()}")
        elif isinstance(block.get("toolResult"), dict):
            for item in block["toolResult"].get("content") or []:
                if isinstance(item, dict) and isinstance(item.get("text"), str):
                    out.append(item["text"])
                elif isinstance(item, dict) and "json" in item:
                    out.append(orjson.dumps(item["json"]).decode())
    return out


def _tools(body: dict[str, Any]) -> tuple[list[Tool], str, str | None]:
    cfg = body.get("toolConfig")
    if not isinstance(cfg, dict):
        return [], "auto", None
    tools: list[Tool] = []
    for i, item in enumerate(cfg.get("tools") or []):
        if isinstance(item, dict) and "cachePoint" in item:
            continue  # a prompt-cache checkpoint after the tools before it
        spec = item.get("toolSpec") if isinstance(item, dict) else None
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise BadRequest(f"The provided request is not valid: toolConfig.tools.{i}.toolSpec")
        schema = spec.get("inputSchema", {})
        js = schema.get("json") if isinstance(schema, dict) else None
        tools.append(Tool(spec["name"], js if isinstance(js, dict) else {}))
    choice = cfg.get("toolChoice")
    if isinstance(choice, dict):
        if "any" in choice:
            return tools, "required", None
        tool = choice.get("tool")
        if isinstance(tool, dict) and isinstance(tool.get("name"), str):
            return tools, "named", tool["name"]
    return tools, "auto", None


def parse_converse(body: dict[str, Any], model: str, stream: bool) -> GenSpec:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("The provided request is not valid: messages must not be empty")
    texts: list[str] = []
    system = body.get("system")
    if isinstance(system, list) and system:
        texts.append(" ".join(_texts(system)))
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise BadRequest(f"The provided request is not valid: messages.{i}.role")
        if not isinstance(msg.get("content"), list):
            raise BadRequest(f"The provided request is not valid: messages.{i}.content")
        texts.append(" ".join(_texts(msg["content"])))
    inf = body.get("inferenceConfig") or {}
    if not isinstance(inf, dict):
        raise BadRequest("The provided request is not valid: inferenceConfig")
    max_tokens = inf.get("maxTokens")
    stops = inf.get("stopSequences") or []
    tools, mode, name = _tools(body)
    last = messages[-1].get("content") or []
    schema: dict[str, Any] | None = None
    text_format = (body.get("outputConfig") or {}).get("textFormat")
    if isinstance(text_format, dict):
        definition = (text_format.get("structure") or {}).get("jsonSchema") or {}
        try:
            parsed = orjson.loads(definition.get("schema") or "")
        except orjson.JSONDecodeError:
            raise BadRequest(
                "The provided request is not valid: outputConfig.textFormat schema is not JSON"
            ) from None
        if not isinstance(parsed, dict):
            raise BadRequest(
                "The provided request is not valid: outputConfig.textFormat schema is not an object"
            )
        schema = parsed
    return GenSpec(
        model=model,
        digest=content_digest(canonical(body)),
        prompt_tokens=chat_prompt_tokens(texts),
        stream=stream,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        stop=[s for s in stops if isinstance(s, str)] if isinstance(stops, list) else [],
        tools=tools,
        tool_mode=mode,
        tool_name=name,
        last_is_tool_result=any(isinstance(b, dict) and "toolResult" in b for b in last),
        json_schema=schema,
    )


def cache_prefix(body: dict[str, Any]) -> tuple[list[Any], str] | None:
    """The blocks before the request's last ``cachePoint`` (in the order the prompt is
    read: tools, system, messages) and that point's TTL; None without a cache point."""
    seen: list[Any] = []
    found: tuple[list[Any], str] | None = None
    cfg = body.get("toolConfig")
    groups: list[list[Any]] = [cfg.get("tools") or [] if isinstance(cfg, dict) else []]
    groups.append(body.get("system") or [])
    groups.extend(m.get("content") or [] for m in body.get("messages") or [])
    for group in groups:
        for block in group:
            if isinstance(block, dict) and isinstance(block.get("cachePoint"), dict):
                found = (list(seen), str(block["cachePoint"].get("ttl") or "5m"))
            else:
                seen.append(block)
    return found


def cache_use(cache: set[bytes], body: dict[str, Any], prompt_tokens: int) -> CacheUse | None:
    """Read the prefix if this simulator wrote it before, else write it."""
    prefix = cache_prefix(body)
    if prefix is None:
        return None
    blocks, ttl = prefix
    if not blocks:
        return CacheUse(ttl=ttl)
    tokens = min(chat_prompt_tokens(_texts(blocks)), prompt_tokens)
    digest = content_digest(blocks)
    if digest in cache:
        return CacheUse(read=tokens, ttl=ttl)
    cache.add(digest)
    return CacheUse(write=tokens, ttl=ttl)


class ConverseRenderer:
    def __init__(self, spec: GenSpec, latency_ms: int, cache: CacheUse | None = None) -> None:
        self.spec = spec
        self.latency_ms = latency_ms
        self.cache = cache

    def _usage(self, c: Choice) -> dict[str, Any]:
        # Bedrock counts cache reads and writes apart from inputTokens; totalTokens is all.
        usage: dict[str, Any] = {
            "inputTokens": self.spec.prompt_tokens,
            "outputTokens": c.completion_tokens,
            "totalTokens": self.spec.prompt_tokens + c.completion_tokens,
        }
        if self.cache is not None:
            usage["inputTokens"] -= self.cache.read + self.cache.write
            usage["cacheReadInputTokens"] = self.cache.read
            usage["cacheWriteInputTokens"] = self.cache.write
            if self.cache.write:
                usage["cacheDetails"] = [{"ttl": self.cache.ttl, "inputTokens": self.cache.write}]
        return usage

    def body(self, choices: list[Choice]) -> dict[str, Any]:
        c = choices[0]
        if c.tool_call is not None:
            block: dict[str, Any] = {
                "toolUse": {
                    "toolUseId": f"tooluse_{c.tool_call.id}",
                    "name": c.tool_call.name,
                    "input": c.tool_call.input,
                }
            }
        else:
            block = {"text": c.text}
        return {
            "output": {"message": {"role": "assistant", "content": [block]}},
            "stopReason": _STOP[c.finish],
            "usage": self._usage(c),
            "metrics": {"latencyMs": self.latency_ms},
        }

    def stream(self, choices: list[Choice]) -> StreamParts:
        c = choices[0]
        head = [encode_event("messageStart", {"role": "assistant"})]
        if c.tool_call is not None:
            head.append(
                encode_event(
                    "contentBlockStart",
                    {
                        "start": {
                            "toolUse": {
                                "toolUseId": f"tooluse_{c.tool_call.id}",
                                "name": c.tool_call.name,
                            }
                        },
                        "contentBlockIndex": 0,
                    },
                )
            )
            deltas: list[dict[str, Any]] = [{"toolUse": {"input": p}} for p in c.tool_call.pieces]
        else:
            deltas = [{"text": p} for p in c.pieces]
        content = [
            (encode_event("contentBlockDelta", {"delta": d, "contentBlockIndex": 0}), 1)
            for d in deltas
        ]
        tail = [
            encode_event("contentBlockStop", {"contentBlockIndex": 0}),
            encode_event("messageStop", {"stopReason": _STOP[c.finish]}),
            encode_event(
                "metadata", {"usage": self._usage(c), "metrics": {"latencyMs": self.latency_ms}}
            ),
        ]
        broken = encode_message(
            {
                ":event-type": "contentBlockDelta",
                ":content-type": "application/json",
                ":message-type": "event",
            },
            b'{"delta": {"te',
        )
        return StreamParts(
            head, content, tail, content_type="application/vnd.amazon.eventstream", broken=broken
        )


def _auth_error(request: web.Request) -> web.Response | None:
    auth = request.headers.get("Authorization", "")
    if not auth:
        return bedrock_error(
            403, "Missing Authentication Token", error_type="MissingAuthenticationTokenException"
        )
    if not auth.startswith("AWS4-HMAC-SHA256 Credential=") or not request.headers.get("x-amz-date"):
        return bedrock_error(
            403,
            "The security token included in the request is invalid.",
            error_type="UnrecognizedClientException",
        )
    return None


def converse_handler(stream: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        st = state_of(request)
        raw = await st.read(request)
        denied = _auth_error(request)
        if denied is not None:
            return denied
        model = request.match_info["model_id"]
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            return bedrock_error(400, "The provided request is not valid: malformed JSON body")
        invalid = validate_request(body, model, stream=stream)
        if invalid:
            return bedrock_error(400, validation_message(invalid))
        refused = conversation_errors(body, model)
        if refused:
            return bedrock_error(400, refused[0])
        decision, replaced = await run_faults(
            request, st, fmt="bedrock", model=model, stream=stream, error=bedrock_error
        )
        if replaced is not None:
            return replaced
        try:
            spec = parse_converse(body, model, stream)
        except BadRequest as exc:
            return bedrock_error(exc.status, exc.message)
        latency = int(st.cfg.ttft_ms) or 1
        cached = cache_use(request.app[CACHE_KEY], body, spec.prompt_tokens)
        return await serve(
            request,
            st,
            fmt="bedrock",
            spec=spec,
            decision=decision,
            renderer_factory=lambda rid: ConverseRenderer(spec, latency, cached),
            headers={"x-amzn-RequestId": "sim-" + "0" * 8},
        )

    return handle


def add_routes(app: web.Application) -> None:
    app[CACHE_KEY] = set()
    app.router.add_post(r"/model/{model_id:.+}/converse", converse_handler(False))
    app.router.add_post(r"/model/{model_id:.+}/converse-stream", converse_handler(True))
