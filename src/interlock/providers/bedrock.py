"""Amazon Bedrock wire format: the Converse and ConverseStream APIs.

Requests are signed by :class:`interlock.providers.aws_auth.SigV4Auth` (or carry a
Bedrock API key as a bearer header in ``Target.headers``). ConverseStream answers in
the AWS binary event-stream format (``application/vnd.amazon.eventstream``), decoded
incrementally with botocore's :class:`~botocore.eventstream.EventStreamBuffer`.
"""

from __future__ import annotations

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
        body = orjson.dumps(to_converse(req.body))
        headers = {
            "content-type": "application/json",
            "accept": "application/vnd.amazon.eventstream" if req.stream else "application/json",
            **target.headers,
        }
        return UpstreamCall("POST", self.url(target, req.stream), headers, body, req.stream)

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
        msg: JSON = {"role": "assistant", "content": "".join(text) if text or not calls else None}
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
    """Bedrock counts cache reads/writes apart from ``inputTokens``; OpenAI's
    ``prompt_tokens`` includes them, with the reads repeated as ``cached_tokens``."""
    if not isinstance(data, dict):
        return None
    read = int(data.get("cacheReadInputTokens") or 0)
    write = int(data.get("cacheWriteInputTokens") or 0)
    return Usage(
        prompt_tokens=int(data.get("inputTokens") or 0) + read + write,
        completion_tokens=int(data.get("outputTokens") or 0),
        cached_tokens=read,
    )


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
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=param)
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequest("content part must be an object", param=p)
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"text": str(part["text"])})
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
            blocks.append({"image": {"format": fmt, "source": {"bytes": m.group(2)}}})
        else:
            raise InvalidRequest(f"unsupported content part type {kind!r}", param=p)
    return blocks


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


def to_converse(body: JSON) -> JSON:
    """An OpenAI chat-completions body as a Bedrock ``Converse`` request."""
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("Bedrock models return one choice; n must be 1", param="n")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    system: list[JSON] = []
    turns: list[JSON] = []
    has_tool_blocks = False

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
            if text:
                system.append({"text": text})
        elif role == "user":
            add("user", _user_blocks(content, f"{param}.content"))
        elif role == "assistant":
            blocks: list[JSON] = []
            text = _text_of(content)
            if text:
                blocks.append({"text": text})
            for k, call in enumerate(msg.get("tool_calls") or ()):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise InvalidRequest(
                        "tool call needs a function name", param=f"{param}.tool_calls[{k}]"
                    )
                has_tool_blocks = True
                blocks.append(
                    {
                        "toolUse": {
                            "toolUseId": str(call.get("id") or f"call_{i}_{k}"),
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
            add("user", [{"toolResult": {"toolUseId": call_id, "content": _tool_result(content)}}])
        else:
            raise InvalidRequest(f"unsupported role {role!r}", param=f"{param}.role")

    out: JSON = {"messages": turns}
    if system:
        out["system"] = system
    config: JSON = {}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = stop
    if config:
        out["inferenceConfig"] = config
    tool_config = _tool_config(body.get("tools"), body.get("tool_choice"), has_tool_blocks)
    if tool_config is not None:
        out["toolConfig"] = tool_config
    return out


def _tool_config(tools: Any, choice: Any, has_tool_blocks: bool) -> JSON | None:
    if not isinstance(tools, list) or not tools:
        return None
    if choice == "none" and not has_tool_blocks:
        return None  # Converse has no "none"; leaving the tools out says the same
    specs: list[JSON] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest("only function tools are supported", param=f"tools[{i}]")
        schema = fn.get("parameters")
        spec: JSON = {
            "name": fn["name"],
            "inputSchema": {
                "json": schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
            },
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        specs.append({"toolSpec": spec})
    out: JSON = {"tools": specs}
    if choice == "auto":
        out["toolChoice"] = {"auto": {}}
    elif choice == "required":
        out["toolChoice"] = {"any": {}}
    elif isinstance(choice, dict):
        fn = choice.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest("unsupported tool_choice", param="tool_choice")
        out["toolChoice"] = {"tool": {"name": fn["name"]}}
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
