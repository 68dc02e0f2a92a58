"""Anthropic Messages wire format (``POST /v1/messages``), translated from and to OpenAI chat.

Outbound only: the client's OpenAI chat body becomes a Messages body, Anthropic's
message (or its event stream) becomes an OpenAI ``chat.completion`` (or canonical
``chat.completion.chunk`` dicts). Credentials (``x-api-key``) and ``anthropic-version``
arrive in ``Target.headers``; this module never adds them.

What does not translate:
- ``n > 1`` has no Anthropic equivalent and is refused as a client error.
- ``response_format`` (``json_object`` / ``json_schema``) becomes an instruction appended to
  the system prompt. That is best-effort: the model is asked for JSON, not constrained.
- ``temperature`` is clamped from OpenAI's 0..2 into Anthropic's 0..1.
- ``logprobs``, ``logit_bias``, penalties and ``seed`` have no counterpart and are dropped.
- ``thinking`` blocks in the answer are dropped (OpenAI chat has no place for them).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from interlock.errors import (
    InvalidRequest,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from interlock.providers.anthropic_convert import (
    STOP_TO_FINISH,
    parse_data_url,
    url_to_source,
    usage_from_anthropic,
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
from interlock.providers.sse import SSEParser
from interlock.providers.tokens import Generated, answer_usage, count_request_tokens, stream_usage
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest, Usage

PROVIDER = "anthropic"
DEFAULT_MAX_TOKENS = 4096

_JSON_OBJECT_HINT = (
    "Respond with a single valid JSON object only: no prose, no Markdown code fences."
)


class AnthropicAdapter:
    wire = "anthropic"

    def supports(self, endpoint: Endpoint) -> bool:
        return endpoint is Endpoint.CHAT

    def build(self, req: GatewayRequest, target: Target) -> UpstreamCall:
        body = to_anthropic(req.body, target.model)
        if target.prompt_caching:
            add_cache_markers(body)
        if req.stream:
            body["stream"] = True
        headers = {"content-type": "application/json", **target.headers}
        if req.stream:
            headers["accept"] = "text/event-stream"
        url = f"{target.base_url.rstrip('/')}/v1/messages"
        return UpstreamCall("POST", url, headers, orjson.dumps(body), req.stream)

    def parse(self, req: GatewayRequest, target: Target, status: int, body: bytes) -> Completion:
        data = json_object(body)
        if data.get("type") == "error":
            raise _event_error(data, target.provider)
        completion, usage = to_openai_completion(data, req.model)
        if usage is None:
            usage = answer_usage(req.body, completion)
        return Completion(orjson.dumps(completion), usage)

    def stream_decoder(self, req: GatewayRequest, target: Target) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(req, target.provider)

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        kind = _error_type(body)
        detail = upstream_message(body)[:500]
        suffix = f": {detail}" if detail else ""
        retry_after = retry_after_seconds(headers)
        if status == 529 or kind == "overloaded_error":
            return UpstreamUnavailable(
                f"provider {PROVIDER} is overloaded{suffix}",
                upstream_status=status,
                retry_after=retry_after,
            )
        if status == 400 and "credit balance" in detail.lower():
            # The gateway's account is out of credit: the operator's problem, and another
            # deployment may still answer, so not a client error.
            return UpstreamUnavailable(
                f"provider {PROVIDER} refused the gateway's account{suffix}", upstream_status=status
            )
        err = map_status(status, headers, body, PROVIDER)
        if status == 400 and "prompt is too long" in detail.lower():
            err.code = "context_length_exceeded"
        if status >= 500 and err.retry_after is None:
            err.retry_after = retry_after
        return err


# --- request: OpenAI chat -> Anthropic Messages -------------------------------------------


def to_anthropic(body: JSON, model: str) -> JSON:
    """Translate an OpenAI chat body into an Anthropic Messages body (without ``stream``)."""
    n = body.get("n")
    if n is not None and n != 1:
        raise InvalidRequest(
            f"n > 1 is not supported by provider {PROVIDER}",
            param="n",
            code="unsupported_parameter",
        )
    raw_messages = body.get("messages")
    if not isinstance(raw_messages, list):
        raise InvalidRequest("messages must be a list", param="messages")

    system: list[JSON] = []
    turns: list[JSON] = []
    for i, msg in enumerate(raw_messages):
        if not isinstance(msg, dict):
            raise InvalidRequest("each message must be an object", param=f"messages[{i}]")
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(msg.get("content"), f"messages[{i}].content"))
        elif role == "user":
            _append(turns, "user", _user_blocks(msg.get("content"), i))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(msg, i))
        elif role == "tool":
            _append(turns, "user", [_tool_result(msg, i)])
        else:
            raise InvalidRequest(
                f"message role {role!r} is not supported by provider {PROVIDER}",
                param=f"messages[{i}].role",
            )
    if not turns:
        raise InvalidRequest(
            "messages must contain at least one user or assistant message", param="messages"
        )

    out: JSON = {"model": model, "max_tokens": _max_tokens(body)}
    hint = _response_format_hint(body.get("response_format"))
    if hint:
        system.append({"type": "text", "text": hint})
    if system:
        if any("cache_control" in b for b in system):
            out["system"] = system
        else:
            out["system"] = "\n\n".join(b["text"] for b in system)
    out["messages"] = [_compact(t) for t in turns]

    tools = body.get("tools")
    if tools:
        out["tools"] = _tools(tools)
        choice = _tool_choice(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False and choice.get("type") != "none":
            choice["disable_parallel_tool_use"] = True
        if choice != {"type": "auto"}:
            out["tool_choice"] = choice

    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = [s for s in stop if isinstance(s, str)]
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        out["temperature"] = min(1.0, max(0.0, float(temperature)))
    top_p = body.get("top_p")
    if isinstance(top_p, int | float) and not isinstance(top_p, bool):
        out["top_p"] = top_p
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    return out


_EPHEMERAL: JSON = {"type": "ephemeral"}


def add_cache_markers(body: JSON) -> None:
    """Mark the stable prefix for Anthropic's prompt cache: the last tool, the system
    prompt and the turn before the newest user message (3 of the 4 breakpoints allowed).
    A request that carries its own cache_control anywhere is left as the client sent it.
    """
    if b'"cache_control"' in orjson.dumps(body):
        return
    tools = body.get("tools")
    if isinstance(tools, list) and tools and isinstance(tools[-1], dict):
        tools[-1] = {**tools[-1], "cache_control": _EPHEMERAL}
    system = body.get("system")
    if isinstance(system, str) and system:
        body["system"] = [{"type": "text", "text": system, "cache_control": _EPHEMERAL}]
    elif isinstance(system, list) and system and isinstance(system[-1], dict):
        system[-1] = {**system[-1], "cache_control": _EPHEMERAL}
    messages = body.get("messages")
    if isinstance(messages, list) and len(messages) >= 2:
        prefix = messages[-2]
        content = prefix.get("content") if isinstance(prefix, dict) else None
        if isinstance(content, str) and content:
            prefix["content"] = [{"type": "text", "text": content, "cache_control": _EPHEMERAL}]
        elif isinstance(content, list) and content and isinstance(content[-1], dict):
            content[-1] = {**content[-1], "cache_control": _EPHEMERAL}


def _max_tokens(body: JSON) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequest(f"{key} must be a positive integer", param=key)
        return value
    return DEFAULT_MAX_TOKENS


def _append(turns: list[JSON], role: str, blocks: list[JSON]) -> None:
    """Anthropic wants alternating turns: consecutive same-role messages merge into one."""
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def _compact(turn: JSON) -> JSON:
    blocks: list[JSON] = turn["content"]
    # Anthropic requires tool results to lead the user turn that answers a tool call.
    if turn["role"] == "user" and any(b["type"] == "tool_result" for b in blocks):
        blocks = sorted(blocks, key=lambda b: b["type"] != "tool_result")
    if len(blocks) == 1 and blocks[0]["type"] == "text" and "cache_control" not in blocks[0]:
        return {"role": turn["role"], "content": blocks[0]["text"]}
    return {"role": turn["role"], "content": blocks}


def _text_blocks(content: Any, param: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=param)
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
            raise InvalidRequest("only text parts are allowed here", param=f"{param}[{j}]")
        text = part.get("text") if part.get("type") == "text" else part.get("refusal")
        if not isinstance(text, str):
            raise InvalidRequest("a text part needs a string text", param=f"{param}[{j}]")
        if text:
            blocks.append(_with_cache(part, {"type": "text", "text": text}))
    return blocks


def _user_blocks(content: Any, i: int) -> list[JSON]:
    param = f"messages[{i}].content"
    if content is None or isinstance(content, str):
        return _text_blocks(content, param)
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=param)
    blocks: list[JSON] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else "text"
        if kind == "text":
            blocks.extend(_text_blocks([part], param))
        elif kind == "image_url" and isinstance(part, dict):
            blocks.append(_with_cache(part, _image(part.get("image_url"), f"{param}[{j}]")))
        elif kind == "file" and isinstance(part, dict):
            blocks.append(_with_cache(part, _document(part.get("file"), f"{param}[{j}]")))
        else:
            raise InvalidRequest(
                f"content part type {kind!r} is not supported by provider {PROVIDER}",
                param=f"{param}[{j}].type",
            )
    return blocks


def _image(image_url: Any, param: str) -> JSON:
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url:
        raise InvalidRequest("image_url.url must be a non-empty string", param=f"{param}.image_url")
    if url.startswith("data:") and parse_data_url(url) is None:
        raise InvalidRequest("image data URLs must be base64-encoded", param=f"{param}.image_url")
    if not url.startswith(("data:", "https://", "http://")):
        raise InvalidRequest(
            "image_url.url must be a data: or http(s) URL", param=f"{param}.image_url"
        )
    return {"type": "image", "source": url_to_source(url)}


def _document(file: Any, param: str) -> JSON:
    data = file.get("file_data") if isinstance(file, dict) else None
    parsed = parse_data_url(data) if isinstance(data, str) else None
    if parsed is None:
        raise InvalidRequest(
            f"file parts need base64 file_data for provider {PROVIDER} (file_id is not supported)",
            param=f"{param}.file",
        )
    media, payload = parsed
    return {"type": "document", "source": {"type": "base64", "media_type": media, "data": payload}}


def _assistant_blocks(msg: JSON, i: int) -> list[JSON]:
    blocks = _text_blocks(msg.get("content"), f"messages[{i}].content")
    tool_calls = msg.get("tool_calls")
    if tool_calls is None:
        return blocks
    if not isinstance(tool_calls, list):
        raise InvalidRequest("tool_calls must be a list", param=f"messages[{i}].tool_calls")
    for j, call in enumerate(tool_calls):
        param = f"messages[{i}].tool_calls[{j}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(fn, dict):
            raise InvalidRequest("a tool call needs a function object", param=param)
        call_id, name = call.get("id"), fn.get("name")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise InvalidRequest("a tool call needs string id and function.name", param=param)
        blocks.append(
            {
                "type": "tool_use",
                "id": call_id,
                "name": name,
                "input": _arguments(fn.get("arguments"), f"{param}.function.arguments"),
            }
        )
    return blocks


def _arguments(arguments: Any, param: str) -> JSON:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str):
        raise InvalidRequest("tool call arguments must be a JSON string", param=param)
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest("tool call arguments are not valid JSON", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param=param)
    return value


def _tool_result(msg: JSON, i: int) -> JSON:
    call_id = msg.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(
            "a tool message needs tool_call_id", param=f"messages[{i}].tool_call_id"
        )
    content = msg.get("content")
    block: JSON = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        block["content"] = content
    elif content is not None:
        block["content"] = _text_blocks(content, f"messages[{i}].content")
    return block


def _with_cache(part: JSON, block: JSON) -> JSON:
    # Not OpenAI, but clients that target Anthropic through a gateway send it on parts;
    # keeping it preserves their prompt caching.
    cache = part.get("cache_control")
    if isinstance(cache, dict):
        block["cache_control"] = cache
    return block


def _tools(tools: Any) -> list[JSON]:
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be a list", param="tools")
    out: list[JSON] = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(fn, dict):
            raise InvalidRequest(
                f"only function tools are supported by provider {PROVIDER}", param=f"tools[{i}]"
            )
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("a function tool needs a name", param=f"tools[{i}].function.name")
        params = fn.get("parameters")
        entry: JSON = {"name": name}
        description = fn.get("description")
        if isinstance(description, str) and description:
            entry["description"] = description
        entry["input_schema"] = (
            params if isinstance(params, dict) else {"type": "object", "properties": {}}
        )
        out.append(_with_cache(tool, entry))
    return out


def _tool_choice(choice: Any) -> JSON:
    if choice is None or choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name:
            return {"type": "tool", "name": name}
    raise InvalidRequest(
        "tool_choice must be auto, none, required or a named function", param="tool_choice"
    )


def _response_format_hint(fmt: Any) -> str | None:
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_object":
        return _JSON_OBJECT_HINT
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if isinstance(schema, dict):
            return (
                f"{_JSON_OBJECT_HINT} It must conform to this JSON Schema: "
                f"{orjson.dumps(schema).decode()}"
            )
        return _JSON_OBJECT_HINT
    return None


# --- response: Anthropic message -> OpenAI chat.completion --------------------------------


def to_openai_completion(data: JSON, model: str) -> tuple[JSON, Usage | None]:
    """An Anthropic ``message`` -> (OpenAI ``chat.completion`` dict, usage)."""
    texts: list[str] = []
    tool_calls: list[JSON] = []
    for block in data.get("content") or ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    message: JSON = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    stop = data.get("stop_reason")
    finish = STOP_TO_FINISH.get(stop, "stop") if isinstance(stop, str) else "stop"
    usage = usage_from_anthropic(data.get("usage"))
    completion: JSON = {
        "id": f"chatcmpl-{data.get('id') or 'anthropic'}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        completion["usage"] = usage.to_openai()
    return completion, usage


# --- stream: Anthropic events -> canonical OpenAI chunks ----------------------------------


class AnthropicStreamDecoder:
    """Anthropic's typed SSE events in, canonical ``chat.completion.chunk`` dicts out."""

    __slots__ = (
        "_created",
        "_done",
        "_finish",
        "_id",
        "_input",
        "_model",
        "_output",
        "_parser",
        "_provider",
        "_req",
        "_tools",
        "generated",
    )

    def __init__(self, req: GatewayRequest, provider: str = PROVIDER) -> None:
        self._parser = SSEParser()
        self._req = req
        self._provider = provider
        self._model = req.model
        self._id = "chatcmpl-anthropic"
        self._created = int(time.time())
        self._done = False
        self._finish: str | None = None
        self._input: Usage | None = None  # prompt side, from message_start
        self._output: int | None = None  # cumulative output tokens from message_delta
        self.generated = Generated()  # what was decoded, for an estimate if the stream is cut
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index

    @property
    def completed(self) -> bool:
        return self._done

    @property
    def usage(self) -> Usage:
        """Best knowledge so far: reported counts, or estimates if the stream was cut."""
        return self.partial_usage(in_flight=False)

    def partial_usage(self, in_flight: bool) -> Usage:
        if self._output is None:  # message_delta (the final count) never came
            return stream_usage(self._req.body, self._input, self.generated, in_flight)
        prompt = self._input
        if prompt is None:
            prompt = Usage(count_request_tokens(self._req.body), estimated=True)
        return Usage(
            prompt_tokens=prompt.prompt_tokens,
            completion_tokens=self._output,
            cached_tokens=prompt.cached_tokens,
            estimated=prompt.estimated,
        )

    def feed(self, data: bytes) -> list[Chunk]:
        out: list[Chunk] = []
        for ev in self._parser.feed(data):
            chunk = self._event(ev.data)
            if chunk is not None:
                self.generated.add(chunk.obj)
                out.append(chunk)
        return out

    def close(self) -> list[Chunk]:
        cut = UpstreamProtocolError(
            f"provider {self._provider} ended the stream before message_stop"
        )
        try:
            out = [c for ev in self._parser.flush() if (c := self._event(ev.data)) is not None]
        except UpstreamProtocolError:
            # A half-received last event is a cut stream, not a malformed one.
            if not self._done:
                raise cut from None
            raise
        if not self._done:
            raise cut
        return out

    def _event(self, data: bytes) -> Chunk | None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"provider {self._provider} sent a malformed stream event"
            ) from None
        if not isinstance(obj, dict):
            raise UpstreamProtocolError(f"provider {self._provider} sent a malformed stream event")
        if self._done:
            return None
        kind = obj.get("type")
        if kind == "content_block_delta":
            return self._delta(obj)
        if kind == "content_block_start":
            return self._block_start(obj)
        if kind == "message_start":
            return self._start(obj.get("message"))
        if kind == "message_delta":
            return self._message_delta(obj)
        if kind == "message_stop":
            self._done = True
            if self._req.include_usage:
                return self._chunk([], usage=self.usage.to_openai())
            return None
        if kind == "error":
            raise _event_error(obj, self._provider)
        # ping, content_block_stop and event types added later carry nothing to relay.
        return None

    def _start(self, message: Any) -> Chunk:
        if isinstance(message, dict):
            if isinstance(message.get("id"), str):
                self._id = f"chatcmpl-{message['id']}"
            usage = usage_from_anthropic(message.get("usage"))
            if usage is not None:
                usage.completion_tokens = 0
                self._input = usage
        return self._choice({"role": "assistant", "content": ""})

    def _block_start(self, obj: JSON) -> Chunk | None:
        block = obj.get("content_block")
        if not isinstance(block, dict):
            return None
        if block.get("type") == "tool_use":
            index = len(self._tools)
            self._tools[_index(obj)] = index
            name = block.get("name")
            call = {
                "index": index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            return self._choice({"tool_calls": [call]})
        if block.get("type") == "text" and block.get("text"):
            return self._choice({"content": block["text"]})
        return None

    def _delta(self, obj: JSON) -> Chunk | None:
        delta = obj.get("delta")
        if not isinstance(delta, dict):
            return None
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text")
            if isinstance(text, str) and text:
                return self._choice({"content": text})
        elif kind == "input_json_delta":
            fragment = delta.get("partial_json")
            tool = self._tools.get(_index(obj))
            if isinstance(fragment, str) and fragment and tool is not None:
                call = {"index": tool, "function": {"arguments": fragment}}
                return self._choice({"tool_calls": [call]})
        elif kind == "thinking_delta":
            # Not relayed (nothing in OpenAI chat holds it) but billed as output tokens.
            thinking = delta.get("thinking")
            if isinstance(thinking, str) and thinking:
                self.generated.add({"choices": [{"delta": {"reasoning_content": thinking}}]})
        # signature_delta, citations_delta: nothing in OpenAI chat holds them.
        return None

    def _message_delta(self, obj: JSON) -> Chunk | None:
        usage = obj.get("usage")
        if isinstance(usage, dict):
            output = usage.get("output_tokens")
            if isinstance(output, int):
                self._output = output
            # Newer API versions repeat the (final) input counts here.
            if isinstance(usage.get("input_tokens"), int):
                prompt = usage_from_anthropic(usage)
                if prompt is not None:
                    prompt.completion_tokens = 0
                    self._input = prompt
        delta = obj.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        if not isinstance(stop, str) or self._finish is not None:
            return None
        self._finish = STOP_TO_FINISH.get(stop, "stop")
        return self._chunk(
            [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": self._finish}]
        )

    def _choice(self, delta: JSON) -> Chunk:
        return self._chunk([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])

    def _chunk(self, choices: list[JSON], usage: JSON | None = None) -> Chunk:
        obj: JSON = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if usage is not None:
            obj["usage"] = usage
        return Chunk(obj)


def _index(obj: JSON) -> int:
    index = obj.get("index")
    return index if isinstance(index, int) else 0


def _error_type(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    err = data.get("error") if isinstance(data, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    return kind if isinstance(kind, str) else None


def _event_error(obj: JSON, provider: str) -> UpstreamError:
    """An Anthropic ``{"type": "error"}`` event or body as an upstream error."""
    err = obj.get("error")
    kind = err.get("type") if isinstance(err, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    detail = f": {message[:300]}" if isinstance(message, str) and message else ""
    if kind == "rate_limit_error":
        return UpstreamRateLimited(f"provider {provider} is rate limiting{detail}")
    if kind == "overloaded_error":
        return UpstreamUnavailable(f"provider {provider} is overloaded{detail}")
    if kind in ("invalid_request_error", "request_too_large"):
        return UpstreamBadRequest(f"provider {provider} rejected the request{detail}")
    return UpstreamUnavailable(f"provider {provider} failed mid-stream{detail}")
