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
# Token ids are vocabulary indexes: far below this in every tokenizer in use.
MAX_TOKEN_ID = 2**31 - 1
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


def _str_field(obj: dict[str, Any], name: str, param: str, *, required: bool = False) -> None:
    v = obj.get(name)
    if v is None:
        if required:
            raise _bad(f"'{param}' is required", param, "missing_required_parameter")
        return
    if not isinstance(v, str):
        raise _bad(f"'{param}' must be a string", param, "invalid_type")


def _object(v: Any, param: str, *, required: bool = False) -> dict[str, Any] | None:
    if v is None:
        if required:
            raise _bad(f"'{param}' is required", param, "missing_required_parameter")
        return None
    if not isinstance(v, dict):
        raise _bad(f"'{param}' must be an object", param, "invalid_type")
    return v


def _content_part(part: Any, param: str) -> None:
    """One content part. Known types are checked field by field (adapters, token counting
    and cache keys read these fields); an unknown type is forwarded for the upstream to
    judge, as new OpenAI part types appear."""
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise _bad(f"'{param}' must be an object with a 'type'", param)
    kind = part["type"]
    if kind == "text":
        _str_field(part, "text", f"{param}.text", required=True)
    elif kind == "refusal":
        _str_field(part, "refusal", f"{param}.refusal", required=True)
    elif kind == "image_url":
        image = part.get("image_url")
        if isinstance(image, str):
            return
        obj = _object(image, f"{param}.image_url", required=True)
        assert obj is not None
        _str_field(obj, "url", f"{param}.image_url.url", required=True)
        _str_field(obj, "detail", f"{param}.image_url.detail")
    elif kind == "input_audio":
        obj = _object(part.get("input_audio"), f"{param}.input_audio", required=True)
        assert obj is not None
        _str_field(obj, "data", f"{param}.input_audio.data", required=True)
        _str_field(obj, "format", f"{param}.input_audio.format", required=True)
    elif kind == "file":
        obj = _object(part.get("file"), f"{param}.file", required=True)
        assert obj is not None
        for name in ("file_data", "file_id", "filename"):
            _str_field(obj, name, f"{param}.file.{name}")


def _function_call(v: Any, param: str) -> None:
    """``{"name": str, "arguments": str}`` (a tool call's function, or the legacy
    ``function_call``); arguments are JSON *text*, as OpenAI sends them."""
    obj = _object(v, param, required=True)
    assert obj is not None
    _str_field(obj, "name", f"{param}.name", required=True)
    _str_field(obj, "arguments", f"{param}.arguments", required=True)


def _tool_calls(v: Any, param: str) -> None:
    if v is None:
        return
    if not isinstance(v, list):
        raise _bad(f"'{param}' must be an array", param, "invalid_type")
    for k, call in enumerate(v):
        p = f"{param}[{k}]"
        if not isinstance(call, dict):
            raise _bad(f"'{p}' must be an object", p, "invalid_type")
        _str_field(call, "id", f"{p}.id", required=True)
        _str_field(call, "type", f"{p}.type")
        if call.get("type", "function") == "function":
            _function_call(call.get("function"), f"{p}.function")


def _message(msg: Any, i: int) -> None:
    p = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise _bad(f"'{p}' must be an object", p)
    role = msg.get("role")
    # A role of the wrong type (a list, an object) is a 400 like an unknown one.
    if not isinstance(role, str) or role not in _ROLES:
        raise _bad(f"'{p}.role' must be one of {sorted(_ROLES)}", f"{p}.role")
    content = msg.get("content")
    if content is not None and not isinstance(content, str | list):
        raise _bad(f"'{p}.content' must be a string or an array of content parts", f"{p}.content")
    if isinstance(content, list):
        for j, part in enumerate(content):
            _content_part(part, f"{p}.content[{j}]")
    if content is None and role in ("user", "system", "developer"):
        raise _bad(f"'{p}.content' is required", f"{p}.content")
    for name in ("name", "tool_call_id", "refusal"):
        _str_field(msg, name, f"{p}.{name}")
    _tool_calls(msg.get("tool_calls"), f"{p}.tool_calls")
    if msg.get("function_call") is not None:
        _function_call(msg["function_call"], f"{p}.function_call")


def _messages(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if messages is None:
        raise _bad("'messages' is required", "messages", "missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array", "messages")
    for i, msg in enumerate(messages):
        _message(msg, i)


def _function_def(fn: Any, param: str) -> None:
    """A tool's (or legacy ``functions[]``) definition: a name, and JSON Schema parameters."""
    obj = _object(fn, param, required=True)
    assert obj is not None
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"'{param}.name' is required", f"{param}.name")
    _str_field(obj, "description", f"{param}.description")
    _object(obj.get("parameters"), f"{param}.parameters")
    strict = obj.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _bad(f"'{param}.strict' must be a boolean", f"{param}.strict", "invalid_type")


def _tool_choice(v: Any, param: str) -> None:
    """``"none" | "auto" | "required"`` or ``{"type": "function", "function": {"name"}}``
    (strings other than a known mode are left to the upstream; types are ours)."""
    if v is None or isinstance(v, str):
        return
    obj = _object(v, param)
    assert obj is not None
    _str_field(obj, "type", f"{param}.type")
    if "function" in obj:
        fn = _object(obj["function"], f"{param}.function", required=True)
        assert fn is not None
        _str_field(fn, "name", f"{param}.function.name", required=True)
    _str_field(obj, "name", f"{param}.name")  # the legacy function_call form


def _tools(body: dict[str, Any]) -> None:
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _bad("'tools' must be an array", "tools")
    for i, tool in enumerate(tools or ()):
        if not isinstance(tool, dict):
            raise _bad(f"'tools[{i}]' must be an object", f"tools[{i}]")
        kind = tool.get("type", "function")
        if not isinstance(kind, str):
            raise _bad(f"'tools[{i}].type' must be a string", f"tools[{i}].type", "invalid_type")
        if kind == "function":
            _function_def(tool.get("function"), f"tools[{i}].function")
    functions = body.get("functions")
    if functions is not None:
        if not isinstance(functions, list):
            raise _bad("'functions' must be an array", "functions", "invalid_type")
        for i, fn in enumerate(functions):
            _function_def(fn, f"functions[{i}]")
    _tool_choice(body.get("tool_choice"), "tool_choice")
    _tool_choice(body.get("function_call"), "function_call")
    ptc = body.get("parallel_tool_calls")
    if ptc is not None and not isinstance(ptc, bool):
        raise _bad("'parallel_tool_calls' must be a boolean", "parallel_tool_calls", "invalid_type")
    rf = body.get("response_format")
    if rf is not None:
        if not isinstance(rf, dict) or not isinstance(rf.get("type"), str):
            raise _bad("'response_format' must be an object with a 'type'", "response_format")
        if rf["type"] == "json_schema":
            js = _object(rf.get("json_schema"), "response_format.json_schema", required=True)
            assert js is not None
            _str_field(js, "name", "response_format.json_schema.name")
            _object(js.get("schema"), "response_format.json_schema.schema")
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise _bad("'logprobs' must be a boolean", "logprobs")
    top = body.get("top_logprobs")
    if top is not None and (not _is_int(top) or not 0 <= top <= 20):
        raise _bad("'top_logprobs' must be an integer between 0 and 20", "top_logprobs")


def _extras(body: dict[str, Any]) -> None:
    """Fields the gateway itself reads (adapters translate them, tags come from metadata)."""
    for name in ("reasoning_effort", "service_tier"):
        _str_field(body, name, name)
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise _bad("'metadata' must be an object", "metadata", "invalid_type")
    bias = body.get("logit_bias")
    if bias is not None and (
        not isinstance(bias, dict)
        or not all(_is_num(v) and -100 <= v <= 100 for v in bias.values())
    ):
        raise _bad("'logit_bias' must map token ids to numbers from -100 to 100", "logit_bias")


def chat_request(body: dict[str, Any], raw: bytes, cfg: ServerSettings) -> GatewayRequest:
    _check_forbidden(body)
    model = _model(body)
    _messages(body)
    _sampling(body, cfg)
    stream, include_usage = _stream(body)
    _tools(body)
    _extras(body)
    return GatewayRequest(Endpoint.CHAT, model, body, raw, stream, include_usage)


def _token_ids(v: Any) -> bool:
    return isinstance(v, list) and all(_is_int(t) and 0 <= t <= MAX_TOKEN_ID for t in v)


def _prompt_list(prompt: list[Any]) -> bool:
    """One accepted form throughout: strings, token ids, or non-empty token id arrays."""
    first = prompt[0]
    if isinstance(first, str):
        return all(isinstance(p, str) for p in prompt)
    if isinstance(first, list):
        return all(isinstance(p, list) and p and _token_ids(p) for p in prompt)
    return _token_ids(prompt)


def completion_request(body: dict[str, Any], raw: bytes, cfg: ServerSettings) -> GatewayRequest:
    _check_forbidden(body)
    model = _model(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise _bad("'prompt' is required", "prompt", "missing_required_parameter")
    if not isinstance(prompt, str | list) or (isinstance(prompt, list) and not prompt):
        raise _bad("'prompt' must be a string or a non-empty array", "prompt")
    if isinstance(prompt, list) and not _prompt_list(prompt):
        raise _bad(
            "'prompt' must be a string, an array of strings, an array of token ids, "
            "or an array of token id arrays",
            "prompt",
        )
    _sampling(body, cfg)
    best_of = body.get("best_of")
    if best_of is not None and (not _is_int(best_of) or not 1 <= best_of <= 20):
        raise _bad("'best_of' must be an integer between 1 and 20", "best_of")
    logprobs = body.get("logprobs")
    if logprobs is not None and (not _is_int(logprobs) or not 0 <= logprobs <= 5):
        raise _bad("'logprobs' must be an integer between 0 and 5", "logprobs")
    echo = body.get("echo")
    if echo is not None and not isinstance(echo, bool):
        raise _bad("'echo' must be a boolean", "echo", "invalid_type")
    _str_field(body, "suffix", "suffix")
    _extras(body)
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
            if not _token_ids(inp):
                raise _bad("'input' must be an array of token ids", "input")
        elif isinstance(first, list):
            if not all(isinstance(x, list) and x and _token_ids(x) for x in inp):
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
    _str_field(body, "user", "user")
    return GatewayRequest(Endpoint.EMBEDDINGS, model, body, raw)
