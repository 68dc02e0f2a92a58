"""Validation of OpenAI-shaped request bodies, before anything reaches an upstream.

Checks only what the gateway must guarantee (types and ranges that would otherwise
crash an adapter or waste a paid call, and fields that would redirect traffic); every
other field is forwarded as the client sent it, so new OpenAI parameters keep working.
"""

from __future__ import annotations

from typing import Any

from interlock.errors import InvalidRequest
from interlock.settings import ServerSettings
from interlock.types import Endpoint, GatewayRequest

# Fields that would let a client choose where the gateway sends traffic (or with what
# credentials). No such request may reach an upstream.
FORBIDDEN_FIELDS = frozenset(
    {
        "api_base",
        "base_url",
        "api_url",
        "api_host",
        "upstream",
        "upstream_url",
        "azure_endpoint",
        "endpoint_url",
        "api_key",
        "api_version",
        "custom_llm_provider",
        "host",
    }
)
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _bad(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_forbidden(body: dict[str, Any]) -> None:
    for name in FORBIDDEN_FIELDS.intersection(body):
        raise _bad(
            f"'{name}' cannot be set by clients: upstreams are chosen by the gateway's configuration",
            name,
            "forbidden_parameter",
        )


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise _bad("'model' is required", "model", "missing_required_parameter")
    if not isinstance(model, str) or not model or len(model) > 256:
        raise _bad("'model' must be a non-empty string", "model")
    return model


def _range(body: dict[str, Any], name: str, lo: float, hi: float) -> None:
    v = body.get(name)
    if v is None:
        return
    if not _is_num(v) or not lo <= v <= hi:
        raise _bad(f"'{name}' must be a number between {lo:g} and {hi:g}", name)


def _sampling(body: dict[str, Any], cfg: ServerSettings) -> None:
    for name in ("max_tokens", "max_completion_tokens"):
        v = body.get(name)
        if v is None:
            continue
        if not _is_int(v) or v <= 0:
            raise _bad(f"'{name}' must be a positive integer", name)
        if v > cfg.max_tokens_limit:
            raise _bad(f"'{name}' must be at most {cfg.max_tokens_limit}", name)
    n = body.get("n")
    if n is not None and (not _is_int(n) or not 1 <= n <= cfg.max_n):
        raise _bad(f"'n' must be an integer between 1 and {cfg.max_n}", "n")
    _range(body, "temperature", 0.0, 2.0)
    _range(body, "top_p", 0.0, 1.0)
    _range(body, "presence_penalty", -2.0, 2.0)
    _range(body, "frequency_penalty", -2.0, 2.0)
    stop = body.get("stop")
    if (
        stop is not None
        and not isinstance(stop, str)
        and (
            not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop)
        )
    ):
        raise _bad("'stop' must be a string or a list of at most 4 strings", "stop")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise _bad("'seed' must be an integer", "seed")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("'user' must be a string", "user")


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean", "stream")
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not isinstance(opts, dict):
            raise _bad("'stream_options' must be an object", "stream_options")
        iu = opts.get("include_usage", False)
        if not isinstance(iu, bool):
            raise _bad(
                "'stream_options.include_usage' must be a boolean", "stream_options.include_usage"
            )
        include_usage = iu
    return stream, include_usage


def _messages(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise _bad("'messages' is required", "messages", "missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array", "messages")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise _bad(f"'messages[{i}]' must be an object", f"messages[{i}]")
        role = msg.get("role")
        if role not in _ROLES:
            raise _bad(
                f"'messages[{i}].role' must be one of {sorted(_ROLES)}", f"messages[{i}].role"
            )
        content = msg.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _bad(
                f"'messages[{i}].content' must be a string or an array of content parts",
                f"messages[{i}].content",
            )
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise _bad(
                        f"'messages[{i}].content[{j}]' must be an object with a 'type'",
                        f"messages[{i}].content[{j}]",
                    )
        if content is None and role in ("user", "system", "developer"):
            raise _bad(f"'messages[{i}].content' is required", f"messages[{i}].content")


def _tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _bad("'tools' must be an array", "tools")
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise _bad(f"'tools[{i}]' must be an object", f"tools[{i}]")
        if tool.get("type", "function") == "function":
            fn = tool.get("function")
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
                raise _bad(f"'tools[{i}].function.name' is required", f"tools[{i}].function.name")
    rf = body.get("response_format")
    if rf is not None and (not isinstance(rf, dict) or not isinstance(rf.get("type"), str)):
        raise _bad("'response_format' must be an object with a 'type'", "response_format")
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise _bad("'logprobs' must be a boolean", "logprobs")
    top = body.get("top_logprobs")
    if top is not None and (not _is_int(top) or not 0 <= top <= 20):
        raise _bad("'top_logprobs' must be an integer between 0 and 20", "top_logprobs")


def chat_request(body: dict[str, Any], raw: bytes, cfg: ServerSettings) -> GatewayRequest:
    _check_forbidden(body)
    model = _model(body)
    _messages(body)
    _sampling(body, cfg)
    stream, include_usage = _stream(body)
    if "tools" in body or "response_format" in body or "logprobs" in body or "top_logprobs" in body:
        _tools(body)
    return GatewayRequest(Endpoint.CHAT, model, body, raw, stream, include_usage)


def completion_request(body: dict[str, Any], raw: bytes, cfg: ServerSettings) -> GatewayRequest:
    _check_forbidden(body)
    model = _model(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise _bad("'prompt' is required", "prompt", "missing_required_parameter")
    if not isinstance(prompt, str | list) or (isinstance(prompt, list) and not prompt):
        raise _bad("'prompt' must be a string or a non-empty array", "prompt")
    _sampling(body, cfg)
    stream, include_usage = _stream(body)
    return GatewayRequest(Endpoint.COMPLETIONS, model, body, raw, stream, include_usage)


def embeddings_request(body: dict[str, Any], raw: bytes, cfg: ServerSettings) -> GatewayRequest:
    _check_forbidden(body)
    model = _model(body)
    inp = body.get("input")
    if inp is None:
        raise _bad("'input' is required", "input", "missing_required_parameter")
    if isinstance(inp, str):
        if not inp:
            raise _bad("'input' must not be empty", "input")
    elif isinstance(inp, list):
        if not inp or len(inp) > 2048:
            raise _bad("'input' must be an array of 1 to 2048 items", "input")
        first = inp[0]
        if isinstance(first, str):
            if not all(isinstance(x, str) and x for x in inp):
                raise _bad("'input' must be an array of non-empty strings", "input")
        elif _is_int(first):
            if not all(_is_int(x) for x in inp):
                raise _bad("'input' must be an array of token ids", "input")
        elif isinstance(first, list):
            if not all(isinstance(x, list) and x and all(_is_int(t) for t in x) for x in inp):
                raise _bad("'input' must be an array of token id arrays", "input")
        else:
            raise _bad("'input' must be a string or an array", "input")
    else:
        raise _bad("'input' must be a string or an array", "input")
    fmt = body.get("encoding_format")
    if fmt is not None and fmt not in ("float", "base64"):
        raise _bad("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    dims = body.get("dimensions")
    if dims is not None and (not _is_int(dims) or not 1 <= dims <= 65536):
        raise _bad("'dimensions' must be a positive integer", "dimensions")
    return GatewayRequest(Endpoint.EMBEDDINGS, model, body, raw)
