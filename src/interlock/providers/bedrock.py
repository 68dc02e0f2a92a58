"""Amazon Bedrock wire format: the Converse and ConverseStream APIs.

Requests are signed by :class:`interlock.providers.aws_auth.SigV4Auth` (or carry a
Bedrock API key as a bearer header in ``Target.headers``). ConverseStream answers in
the AWS binary event-stream format (``application/vnd.amazon.eventstream``), decoded
incrementally with botocore's :class:`~botocore.eventstream.EventStreamBuffer`.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

try:
    from botocore.eventstream import EventStreamBuffer, ParserError
except ImportError:  # the "aws" extra is absent: translation works, streaming says why not
    EventStreamBuffer = None
    ParserError = ValueError

from interlock.errors import (
    InvalidRequest,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from interlock.providers.base import (
    Completion,
    Target,
    UpstreamCall,
    json_object,
    map_status,
    retry_after_seconds,
    upstream_message,
)
from interlock.providers.capabilities import Adjust, ModelRules, normalise_tool_id, rules_for
from interlock.providers.rules.bedrock import (
    CLAUDE_BUDGET,
    MIN_CLAUDE_BUDGET,
    NOVA_EFFORT,
    Traits,
    traits_for,
)
from interlock.providers.tokens import Generated, answer_usage, stream_usage
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest, Usage

_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_IMAGE_FORMATS = {"png": "png", "jpeg": "jpeg", "jpg": "jpeg", "gif": "gif", "webp": "webp"}
_DATA_URL = re.compile(r"^data:image/([\w.+-]+)(?:;[^,;]*)*?;base64,(.*)$", re.DOTALL)

_RATE = ("ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException")
_BAD = ("ValidationException", "ResourceNotFoundException")
_CREDENTIALS = (
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
)
_CONTEXT_HINTS = ("too long", "too many input tokens", "context window", "context length")
_UNAVAILABLE = (
    "ServiceUnavailableException",
    "ModelNotReadyException",
    "InternalServerException",
    "ModelErrorException",
    "ModelStreamErrorException",
)


class BedrockAdapter:
    wire = "bedrock"

    def supports(self, endpoint: Endpoint) -> bool:
        return endpoint == Endpoint.CHAT

    def url(self, target: Target, stream: bool) -> str:
        base = target.base_url.rstrip("/")
        model = urllib.parse.quote(target.model, safe="")
        return f"{base}/model/{model}/{'converse-stream' if stream else 'converse'}"

    def build(self, req: GatewayRequest, target: Target) -> UpstreamCall:
        if req.endpoint != Endpoint.CHAT:
            raise InvalidRequest(
                f"{req.endpoint.value} is not supported by Bedrock models",
                code="unsupported_endpoint",
            )
        adj = Adjust(rules_for("bedrock", target.model))
        body = orjson.dumps(
            to_converse(req.body, target.model, adj, prompt_caching=target.prompt_caching)
        )
        headers = {
            "content-type": "application/json",
            "accept": "application/vnd.amazon.eventstream" if req.stream else "application/json",
            **target.headers,
        }
        return UpstreamCall(
            "POST",
            self.url(target, req.stream),
            headers,
            body,
            req.stream,
            warnings=tuple(adj.warnings),
        )

    def parse(self, req: GatewayRequest, target: Target, status: int, body: bytes) -> Completion:
        data = json_object(body)
        output = data.get("output")
        message = output.get("message") if isinstance(output, dict) else None
        if not isinstance(message, dict):
            if "message" in data:
                raise UpstreamUnavailable(
                    f"provider {target.provider} returned an error: {upstream_message(body)[:300]}"
                )
            raise UpstreamProtocolError(f"provider {target.provider} returned no output message")
        text: list[str] = []
        reasoning: list[str] = []
        calls: list[JSON] = []
        for block in message.get("content") or ():
            if not isinstance(block, dict):
                continue
            if isinstance(block.get("text"), str):
                text.append(block["text"])
            elif isinstance(block.get("toolUse"), dict):
                use = block["toolUse"]
                calls.append(
                    {
                        "id": str(use.get("toolUseId") or f"call_{uuid.uuid4().hex[:24]}"),
                        "type": "function",
                        "function": {
                            "name": str(use.get("name", "")),
                            "arguments": orjson.dumps(use.get("input") or {}).decode(),
                        },
                    }
                )
            elif isinstance(block.get("reasoningContent"), dict):
                rt = block["reasoningContent"].get("reasoningText")
                if isinstance(rt, dict) and isinstance(rt.get("text"), str):
                    reasoning.append(rt["text"])
        msg: JSON = {
            "role": "assistant",
            "content": "".join(text) if text or not calls else None,
            "refusal": None,
        }
        if reasoning:
            msg["reasoning_content"] = "".join(reasoning)
        if calls:
            msg["tool_calls"] = calls
        reason = stop_reason(data.get("stopReason"))
        if calls and reason == "stop":
            reason = "tool_calls"
        usage = usage_from_bedrock(data.get("usage"))
        if usage is None:
            usage = answer_usage(req.body, {"choices": [{"index": 0, "message": msg}]})
        out = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": [{"index": 0, "message": msg, "finish_reason": reason, "logprobs": None}],
            "usage": usage.to_openai(),
        }
        return Completion(orjson.dumps(out), usage)

    def stream_decoder(self, req: GatewayRequest, target: Target) -> BedrockStreamDecoder:
        return BedrockStreamDecoder(req, target.provider)

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        kind = next((v for k, v in headers.items() if k.lower() == "x-amzn-errortype"), "")
        if not kind:
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = None
            if isinstance(data, dict) and isinstance(data.get("__type"), str):
                kind = data["__type"]
        return bedrock_error(kind, upstream_message(body), status, headers)


def bedrock_error(
    kind: str, message: str, status: int | None, headers: Mapping[str, str] | None = None
) -> UpstreamError:
    """One AWS error type (``ThrottlingException``, ``throttlingException``, ...) mapped."""
    # "ThrottlingException:http://internal.amazon.com/coral/..." or "com.amazon#Throttling..."
    name = kind.split(":", 1)[0].rsplit("#", 1)[-1]
    name = name[:1].upper() + name[1:]
    message = message[:500]
    suffix = f": {message}" if message else ""
    if name in _RATE:
        return UpstreamRateLimited(
            f"provider bedrock is rate limiting{suffix}",
            upstream_status=status,
            retry_after=retry_after_seconds(headers or {}),
        )
    if name in _CREDENTIALS:
        return UpstreamUnavailable(
            "provider bedrock refused the gateway's credentials", upstream_status=status
        )
    if name in _UNAVAILABLE:
        return UpstreamUnavailable(
            f"provider bedrock is unavailable{suffix}", upstream_status=status
        )
    if name == "ModelTimeoutException":
        return UpstreamTimeout(f"provider bedrock timed out{suffix}", upstream_status=status)
    if name in _BAD:
        err = UpstreamBadRequest(
            f"provider bedrock rejected the request{suffix}", upstream_status=status
        )
        lowered = message.lower()
        if any(m in lowered for m in _CONTEXT_HINTS):
            err.code = "context_length_exceeded"
        return err
    body = orjson.dumps({"message": message}) if message else b""
    return map_status(status or 500, headers or {}, body, "bedrock")


def stop_reason(reason: Any) -> str:
    return _STOP.get(str(reason), "stop")


def usage_from_bedrock(data: Any) -> Usage | None:
    """Bedrock's ``TokenUsage``: ``inputTokens`` excludes cache reads and writes
    (``cacheReadInputTokens`` / ``cacheWriteInputTokens``); OpenAI's ``prompt_tokens``
    includes them, reads repeated as ``cached_tokens``. ``cacheDetails`` splits the writes
    by TTL (``5m`` / ``1h``); writes it does not attribute count as 5-minute writes (the
    default TTL). Converse reports no reasoning-token count (thinking is in outputTokens)."""
    if not isinstance(data, dict):
        return None
    read = _count(data.get("cacheReadInputTokens"))
    write = _count(data.get("cacheWriteInputTokens"))
    hour = 0
    details = data.get("cacheDetails")
    if isinstance(details, list):
        for item in details:
            if isinstance(item, dict) and item.get("ttl") == "1h":
                hour += _count(item.get("inputTokens"))
    hour = min(hour, write)
    return Usage(
        prompt_tokens=_count(data.get("inputTokens")) + read + write,
        completion_tokens=_count(data.get("outputTokens")),
        cached_tokens=read,
        cache_write_tokens=write - hour,
        cache_write_1h_tokens=hour,
    )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# ------------------------------------------------------------------- request building


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def _user_blocks(content: Any, param: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content.strip() else []
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=param)
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequest("content part must be an object", param=p)
        kind = part.get("type")
        if kind == "text":
            if str(part.get("text") or "").strip():
                blocks.append({"text": str(part["text"])})
                _cache_after(part, blocks)
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            m = _DATA_URL.match(url) if isinstance(url, str) else None
            if m is None:
                raise InvalidRequest(
                    "Bedrock models accept images only as base64 data URLs", param=f"{p}.image_url"
                )
            fmt = _IMAGE_FORMATS.get(m.group(1).lower())
            if fmt is None:
                raise InvalidRequest(
                    f"unsupported image type {m.group(1)!r}", param=f"{p}.image_url"
                )
            data = "".join(m.group(2).split())
            try:
                valid = len(base64.b64decode(data, validate=True)) > 0
            except (binascii.Error, ValueError):
                valid = False
            if not valid:
                raise InvalidRequest("image data is not valid base64", param=f"{p}.image_url")
            blocks.append({"image": {"format": fmt, "source": {"bytes": data}}})
            _cache_after(part, blocks)
        else:
            raise InvalidRequest(f"unsupported content part type {kind!r}", param=p)
    return blocks


_CACHE_POINT: JSON = {"type": "default"}
MAX_CACHE_POINTS = 4  # Bedrock (as Anthropic) takes at most 4 cache checkpoints


def _cache_point(control: Any) -> JSON:
    """An Anthropic-style ``cache_control`` (``{"type": "ephemeral", "ttl": "1h"}``) as a
    Converse ``cachePoint``; the 5-minute default TTL is left implicit."""
    if isinstance(control, dict) and control.get("ttl") == "1h":
        return {**_CACHE_POINT, "ttl": "1h"}
    return dict(_CACHE_POINT)


def _cache_after(part: JSON, blocks: list[JSON]) -> None:
    # Not OpenAI, but clients that target Anthropic through a gateway send it on parts;
    # a checkpoint right after the block keeps their prompt caching on Bedrock.
    if isinstance(part.get("cache_control"), dict):
        blocks.append({"cachePoint": _cache_point(part["cache_control"])})


def _is_cache_point(block: Any) -> bool:
    return isinstance(block, dict) and "cachePoint" in block


def _cache_points(out: JSON, traits: Traits, family: str, caching: bool, adj: Adjust) -> None:
    """Keep the client's checkpoints where the family caches (at most 4), or add the
    deployment's (``prompt_caching``: after the tools, the system prompt and the turn
    before the newest user message); strip them where it does not cache."""
    system: list[JSON] = out.get("system") or []
    turns: list[JSON] = out["messages"]
    tools: list[JSON] = (out.get("toolConfig") or {}).get("tools") or []
    places: list[list[JSON]] = [tools, system, *(t["content"] for t in turns)]
    have = sum(1 for group in places for b in group if _is_cache_point(b))
    if not traits.cache:
        if have:
            for group in places:
                group[:] = [b for b in group if not _is_cache_point(b)]
            adj.drop("cache_control", f"{family} models have no prompt caching on Bedrock")
        return
    if have > MAX_CACHE_POINTS:
        kept = 0
        for group in places:
            keep: list[JSON] = []
            for b in group:
                if _is_cache_point(b):
                    kept += 1
                    if kept > MAX_CACHE_POINTS:
                        continue
                keep.append(b)
            group[:] = keep
        adj.note(f"cache_control: only the first {MAX_CACHE_POINTS} cache checkpoints kept")
        return
    if have or not caching:
        return
    if tools and "tools" in traits.cache:
        tools.append({"cachePoint": dict(_CACHE_POINT)})
    if system:
        system.append({"cachePoint": dict(_CACHE_POINT)})
    if len(turns) >= 2:
        turns[-2]["content"].append({"cachePoint": dict(_CACHE_POINT)})


def _tool_input(raw: Any, param: str) -> Any:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        raise InvalidRequest("tool call arguments must be JSON", param=param) from None


def _tool_result(content: Any) -> list[JSON]:
    text = _text_of(content)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [{"text": text}]
    return [{"json": value}] if isinstance(value, dict) else [{"text": text}]


def to_converse(
    body: JSON, model: str = "", adj: Adjust | None = None, *, prompt_caching: bool = False
) -> JSON:
    """An OpenAI chat-completions body as a Bedrock ``Converse`` request for ``model``,
    after that model family's rules (``providers/rules/bedrock.py``); what was changed is
    recorded on ``adj``. ``body`` itself is not modified (it is reused on failover).
    ``prompt_caching`` (the deployment's setting) adds cache checkpoints where the
    family caches and the client set none."""
    rules = rules_for("bedrock", model)
    traits = traits_for(rules)
    adj = adj if adj is not None else Adjust(rules)
    body = dict(body)
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest(
            "Bedrock models return one choice; n must be 1", param="n", code="unsupported_parameter"
        )
    adj.apply_common(rules, body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    system: list[JSON] = []
    turns: list[JSON] = []
    has_tool_blocks = False
    tool_id = rules.tool_id

    def add(role: str, blocks: list[JSON]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for i, msg in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise InvalidRequest("message must be an object", param=param)
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            text = _text_of(content)
            if text.strip():
                system.append({"text": text})
                control = next(
                    (
                        p["cache_control"]
                        for p in (content if isinstance(content, list) else ())
                        if isinstance(p, dict) and isinstance(p.get("cache_control"), dict)
                    ),
                    None,
                )
                if control is not None:
                    system.append({"cachePoint": _cache_point(control)})
        elif role == "user":
            blocks = _user_blocks(content, f"{param}.content")
            if not traits.images and any("image" in b for b in blocks):
                raise InvalidRequest(
                    f"'image_url' is not supported here: {rules.family} models take no images",
                    param=f"{param}.content",
                    code="unsupported_parameter",
                )
            add("user", blocks)
        elif role == "assistant":
            blocks = []
            text = _text_of(content)
            if text.strip():
                blocks.append({"text": text})
            for k, call in enumerate(msg.get("tool_calls") or ()):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise InvalidRequest(
                        "tool call needs a function name", param=f"{param}.tool_calls[{k}]"
                    )
                _tool_name(fn["name"], f"{param}.tool_calls[{k}].function.name")
                has_tool_blocks = True
                blocks.append(
                    {
                        "toolUse": {
                            "toolUseId": normalise_tool_id(
                                str(call.get("id") or f"call_{i}_{k}"), tool_id
                            ),
                            "name": fn["name"],
                            "input": _tool_input(fn.get("arguments"), f"{param}.tool_calls[{k}]"),
                        }
                    }
                )
            add("assistant", blocks)
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str) or not call_id:
                raise InvalidRequest(
                    "tool message needs tool_call_id", param=f"{param}.tool_call_id"
                )
            has_tool_blocks = True
            result = {
                "toolUseId": normalise_tool_id(call_id, tool_id),
                "content": _tool_result(content),
            }
            add("user", [{"toolResult": result}])
        else:
            raise InvalidRequest(f"unsupported role {role!r}", param=f"{param}.role")

    if turns and turns[0]["role"] == "assistant":
        # Converse conversations start with a user turn; OpenAI's may open with the
        # assistant (a greeting). A neutral user turn keeps the assistant's words.
        turns.insert(0, {"role": "user", "content": [{"text": _OPENING}]})
        adj.note("a user turn was added before the first assistant message (Bedrock needs one)")
    if not turns:
        raise InvalidRequest(
            "Bedrock models need at least one user or assistant message with content",
            param="messages",
        )
    out: JSON = {"messages": turns}
    structured = _response_format(body.get("response_format"), rules, adj, system)
    if structured is not None:
        out["outputConfig"] = {"textFormat": structured}
    if system and not traits.system:
        # The family has no system prompt: the instructions lead the first user turn.
        lead = [{"text": "\n\n".join(str(b["text"]) for b in system if "text" in b)}]
        if turns and turns[0]["role"] == "user":
            turns[0]["content"] = lead + turns[0]["content"]
        else:
            turns.insert(0, {"role": "user", "content": lead})
        adj.note(f"system prompt sent as the first user turn ({rules.family} models take none)")
    elif system:
        out["system"] = system
    config: JSON = {}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
            raise InvalidRequest(f"Bedrock models need {key} to be a positive integer", param=key)
        config["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    stops = [s for s in stops if isinstance(s, str) and s]
    if stops and not traits.stop:
        adj.drop("stop")
    elif stops:
        config["stopSequences"] = stops
    tool_config = _tool_config(body, rules, traits, adj, has_tool_blocks)
    if has_tool_blocks and tool_config is None:
        _tool_history_as_text(turns)
        adj.note("earlier tool calls and results sent as text (no tools in this request)")
    forced = tool_config is not None and (
        "any" in tool_config.get("toolChoice", {}) or "tool" in tool_config.get("toolChoice", {})
    )
    in_tool_loop = any("toolResult" in b for b in turns[-1]["content"])
    extra = _thinking(body.get("reasoning_effort"), traits, config, forced or in_tool_loop, adj)
    if extra is not None:
        out["additionalModelRequestFields"] = extra
    if config:
        out["inferenceConfig"] = config
    if tool_config is not None:
        out["toolConfig"] = tool_config
    _cache_points(out, traits, rules.family, prompt_caching, adj)
    metadata = _request_metadata(body, adj)
    if metadata:
        out["requestMetadata"] = metadata
    return out


_OPENING = "(conversation start)"
_METADATA_TEXT = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}")


def _request_metadata(body: JSON, adj: Adjust) -> dict[str, str]:
    """``user`` and OpenAI ``metadata`` -> Converse ``requestMetadata`` (kept in Bedrock's
    invocation logs); entries its pattern refuses are dropped with a warning."""
    pairs: list[tuple[str, Any]] = []
    if body.get("user") is not None:
        pairs.append(("user", body["user"]))
    meta = body.get("metadata")
    if isinstance(meta, dict):
        pairs.extend(meta.items())
    out: dict[str, str] = {}
    for key, value in pairs:
        ok = (
            isinstance(key, str)
            and isinstance(value, str)
            and len(key) >= 1
            and _METADATA_TEXT.fullmatch(key) is not None
            and _METADATA_TEXT.fullmatch(value) is not None
            and len(out) < 16
        )
        if ok:
            out[key] = value
        else:
            name = "user" if key == "user" else f"metadata.{key}"
            adj.drop(name, "not representable in Bedrock requestMetadata")
    return out


def _response_format(fmt: Any, rules: ModelRules, adj: Adjust, system: list[JSON]) -> JSON | None:
    """``response_format``: native ``outputConfig.textFormat`` where the family has
    structured output, else an instruction in the system prompt (with a warning)."""
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    kind = fmt.get("type")
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(spec, dict) or not isinstance(schema, dict):
            raise InvalidRequest(
                "response_format.json_schema needs a schema object",
                param="response_format.json_schema",
            )
        if rules.structured_output == "native":
            definition: JSON = {"schema": orjson.dumps(schema).decode()}
            if isinstance(spec.get("name"), str) and spec["name"]:
                definition["name"] = spec["name"]
            if isinstance(spec.get("description"), str) and spec["description"]:
                definition["description"] = spec["description"]
            return {"type": "json_schema", "structure": {"jsonSchema": definition}}
        system.append(
            {
                "text": "Respond with only a JSON value (no prose, no code fences) that "
                "validates against this JSON Schema: " + orjson.dumps(schema).decode()
            }
        )
        adj.note(
            f"response_format json_schema sent as an instruction "
            f"({rules.family} models have no native structured output on Bedrock)"
        )
        return None
    if kind == "json_object":
        system.append({"text": "Respond with only a valid JSON object (no prose, no code fences)."})
        adj.note("response_format json_object sent as an instruction (Converse has no JSON mode)")
        return None
    raise InvalidRequest(f"unsupported response_format type {kind!r}", param="response_format")


def _thinking(effort: Any, traits: Traits, config: JSON, forced: bool, adj: Adjust) -> JSON | None:
    """``reasoning_effort`` -> ``additionalModelRequestFields`` (Claude ``thinking`` with a
    token budget; Nova 2 ``reasoningConfig``)."""
    if effort in (None, "none", "minimal") or traits.thinking == "none":
        return None
    if not isinstance(effort, str):
        raise InvalidRequest("reasoning_effort must be a string", param="reasoning_effort")
    if traits.thinking == "nova":
        level = NOVA_EFFORT.get(effort, "medium")
        return {"reasoningConfig": {"type": "enabled", "maxReasoningEffort": level}}
    if forced:
        # A forced tool choice, or a tool loop whose earlier thinking blocks the OpenAI
        # request shape does not carry back (Claude needs them there).
        adj.drop(
            "reasoning_effort",
            "Claude cannot think with a forced tool choice or without the tool loop's "
            "earlier thinking blocks",
        )
        return None
    budget = CLAUDE_BUDGET.get(effort, CLAUDE_BUDGET["medium"])
    max_tokens = config.get("maxTokens")
    if isinstance(max_tokens, int):
        budget = min(budget, max_tokens - 1)
        if budget < MIN_CLAUDE_BUDGET:
            adj.drop(
                "reasoning_effort",
                f"Claude's thinking budget is at least {MIN_CLAUDE_BUDGET} tokens, below max_tokens",
            )
            return None
    else:
        config["maxTokens"] = budget + _ANSWER_ROOM
        adj.note(f"max_tokens set to {budget + _ANSWER_ROOM} (thinking budget {budget} + answer)")
    temperature = config.get("temperature")
    if temperature is not None and temperature != 1:
        del config["temperature"]
        adj.drop("temperature", "Claude thinks only at temperature 1")
    top_p = config.get("topP")
    if top_p is not None and top_p < 0.95:
        del config["topP"]
        adj.drop("top_p", "Claude thinks only with top_p 0.95-1")
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}


_ANSWER_ROOM = 8192


# ToolName in the service model: 1-64 characters of [a-zA-Z0-9_-] (OpenAI's own rule).
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def _tool_name(name: str, param: str) -> None:
    if _TOOL_NAME.fullmatch(name) is None:
        raise InvalidRequest(
            "tool names must be 1-64 characters of a-z, A-Z, 0-9, _ and -", param=param
        )


def _tool_history_as_text(turns: list[JSON]) -> None:
    """Converse refuses ``toolUse`` / ``toolResult`` blocks in a request without
    ``toolConfig``; with no tools offered, the history's calls and results are told as
    text (offering the tools again would let the model call tools the client did not
    offer this time)."""
    names: dict[str, str] = {}
    for turn in turns:
        content: list[JSON] = []
        for block in turn["content"]:
            if "toolUse" in block:
                use = block["toolUse"]
                names[use["toolUseId"]] = use["name"]
                args = orjson.dumps(use["input"]).decode()
                content.append({"text": f"(called tool {use['name']} with {args})"})
            elif "toolResult" in block:
                result = block["toolResult"]
                parts = [
                    str(p["text"]) if "text" in p else orjson.dumps(p.get("json")).decode()
                    for p in result["content"]
                ]
                name = names.get(result["toolUseId"], "a tool")
                content.append({"text": f"(result of {name}: {' '.join(parts) or 'empty'})"})
            else:
                content.append(block)
        turn["content"] = content


def _tool_config(
    body: JSON, rules: ModelRules, traits: Traits, adj: Adjust, has_tool_blocks: bool
) -> JSON | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools:
        return None  # tool blocks in the history then go as text (_tool_history_as_text)
    if choice == "none" and not has_tool_blocks:
        return None  # Converse has no "none"; leaving the tools out says the same
    if not traits.tools:
        raise adj.refuse("tools", f"{rules.family} models take no tools")
    specs: list[JSON] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest("only function tools are supported", param=f"tools[{i}]")
        _tool_name(fn["name"], f"tools[{i}].function.name")
        schema = fn.get("parameters")
        spec: JSON = {
            "name": fn["name"],
            "inputSchema": {
                "json": schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
            },
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        if fn.get("strict") is True:
            if rules.tool_strict:
                spec["strict"] = True
            else:
                adj.drop(f"tools[{i}].function.strict")
        specs.append({"toolSpec": spec})
    out: JSON = {"tools": specs}
    if choice == "auto":
        out["toolChoice"] = {"auto": {}}
    elif choice == "required" or isinstance(choice, dict):
        if isinstance(choice, dict):
            fn = choice.get("function")
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InvalidRequest("unsupported tool_choice", param="tool_choice")
            forced: JSON = {"tool": {"name": fn["name"]}}
        else:
            forced = {"any": {}}
        if traits.forced_tool_choice:
            out["toolChoice"] = forced
        else:
            adj.drop("tool_choice", f"{rules.family} models choose tools themselves (auto)")
    elif choice not in (None, "none"):
        raise InvalidRequest("unsupported tool_choice", param="tool_choice")
    return out


# ------------------------------------------------------------------------ streaming


class BedrockStreamDecoder:
    """ConverseStream event-stream bytes → canonical ``chat.completion.chunk`` dicts."""

    __slots__ = (
        "_blocks",
        "_buffer",
        "_created",
        "_id",
        "_metadata",
        "_provider",
        "_req",
        "_stopped",
        "_tools",
        "_usage_sent",
        "generated",
        "usage",
    )

    def __init__(self, req: GatewayRequest, provider: str = "bedrock") -> None:
        if EventStreamBuffer is None:
            raise UpstreamUnavailable(
                "streaming from Bedrock needs botocore (install interlock[aws])"
            )
        self._buffer = EventStreamBuffer()
        self._req = req
        self._provider = provider
        self._id = f"chatcmpl-{uuid.uuid4().hex}"
        self._created = int(time.time())
        self._blocks: dict[int, int] = {}  # contentBlockIndex of a toolUse -> tool call index
        self._tools = 0
        self._stopped = False
        self._metadata = False
        self._usage_sent = False
        self.generated = Generated()  # what was decoded, for an estimate if the stream is cut
        self.usage: Usage | None = None  # from the metadata event, the stream's last

    @property
    def completed(self) -> bool:
        return self._stopped and self._metadata

    def partial_usage(self, in_flight: bool) -> Usage:
        if self.usage is not None:
            return self.usage
        return stream_usage(self._req.body, None, self.generated, in_flight)

    def _chunk(self, delta: JSON | None, finish: str | None = None) -> Chunk:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return Chunk(
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._req.model,
                "choices": choices,
            }
        )

    def feed(self, data: bytes) -> list[Chunk]:
        self._buffer.add_data(data)
        out: list[Chunk] = []
        try:
            for message in self._buffer:
                self._message(message.headers, message.payload, out)
        except ParserError:
            raise UpstreamProtocolError(
                f"provider {self._provider} sent a malformed event stream"
            ) from None
        finally:
            for chunk in out:
                self.generated.add(chunk.obj)
        return out

    def _message(self, headers: Mapping[str, Any], payload: bytes, out: list[Chunk]) -> None:
        kind = headers.get(":message-type")
        if kind == "exception":
            raise bedrock_error(
                str(headers.get(":exception-type", "")), upstream_message(payload), None
            )
        if kind == "error":
            raise bedrock_error(
                str(headers.get(":error-code", "")), str(headers.get(":error-message", "")), None
            )
        if kind != "event":
            return
        try:
            event = orjson.loads(payload) if payload else {}
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"provider {self._provider} sent a malformed stream event"
            ) from None
        if not isinstance(event, dict):
            raise UpstreamProtocolError(f"provider {self._provider} sent a malformed stream event")
        name = headers.get(":event-type")
        if name == "messageStart":
            out.append(self._chunk({"role": "assistant", "content": ""}))
        elif name == "contentBlockStart":
            use = (event.get("start") or {}).get("toolUse")
            if isinstance(use, dict):
                index = self._tools
                self._tools += 1
                self._blocks[int(event.get("contentBlockIndex", index))] = index
                call = {
                    "index": index,
                    "id": str(use.get("toolUseId") or f"call_{uuid.uuid4().hex[:24]}"),
                    "type": "function",
                    "function": {"name": str(use.get("name", "")), "arguments": ""},
                }
                out.append(self._chunk({"tool_calls": [call]}))
        elif name == "contentBlockDelta":
            delta = event.get("delta") or {}
            if isinstance(delta.get("text"), str):
                out.append(self._chunk({"content": delta["text"]}))
            elif isinstance(delta.get("toolUse"), dict):
                args = str(delta["toolUse"].get("input", ""))
                index = self._blocks.get(int(event.get("contentBlockIndex", -1)), self._tools - 1)
                out.append(
                    self._chunk({"tool_calls": [{"index": index, "function": {"arguments": args}}]})
                )
            elif isinstance(delta.get("reasoningContent"), dict):
                text = delta["reasoningContent"].get("text")
                if isinstance(text, str):
                    out.append(self._chunk({"reasoning_content": text}))
        elif name == "messageStop":
            self._stopped = True
            reason = stop_reason(event.get("stopReason"))
            if self._tools and reason == "stop":
                reason = "tool_calls"
            out.append(self._chunk({}, reason))
        elif name == "metadata":
            self._metadata = True
            usage = usage_from_bedrock(event.get("usage"))
            if usage is not None:
                self.usage = usage
        if self._stopped and self._metadata:
            self._usage_chunk(out)

    def _usage_chunk(self, out: list[Chunk]) -> None:
        if self.usage is None:
            self.usage = self.partial_usage(in_flight=False)
        if self._req.include_usage and not self._usage_sent:
            self._usage_sent = True
            chunk = self._chunk(None)
            chunk.obj["usage"] = self.usage.to_openai()
            out.append(chunk)

    def close(self) -> list[Chunk]:
        out: list[Chunk] = []
        if not self._stopped:
            if self.usage is None:
                self.usage = self.partial_usage(in_flight=False)
            raise UpstreamProtocolError(
                f"provider {self._provider} ended the stream before messageStop"
            )
        self._usage_chunk(out)
        return out
