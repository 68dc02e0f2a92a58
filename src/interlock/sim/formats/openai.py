"""OpenAI (and Azure OpenAI, classic and v1) wire format: chat completions, completions,
embeddings, models. Every request body is checked against OpenAI's published spec
(sim/conformance/openai.py) and refused like OpenAI refuses it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import orjson
from aiohttp import web

from interlock.sim.conformance.openai import request_issues
from interlock.sim.embeddings import embed, encode_base64
from interlock.sim.engine import Choice, GenSpec, Tool
from interlock.sim.formats.common import (
    canonical,
    parse_body,
    positive_int,
    retry_after_header,
    sse,
    text_of,
    unix_now,
)
from interlock.sim.runtime import (
    BadRequest,
    SimState,
    StreamParts,
    json_response,
    run_faults,
    serve,
    state_of,
)
from interlock.sim.textgen import (
    VOCABULARY,
    chat_prompt_tokens,
    content_digest,
    count_tokens,
    request_rng,
)

__all__ = ["MODELS", "add_routes"]

MODELS = ("sim-small", "sim-medium", "sim-large", "sim-embed")
_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool": "tool_calls"}
_DONE = b"data: [DONE]\n\n"
Handler = Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]


def openai_error(
    status: int,
    message: str,
    retry_after: float | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
) -> web.Response:
    etype = "invalid_request_error"
    if status == 401:
        code = code or "invalid_api_key"
    elif status == 403:
        etype = "permission_error"
    elif status == 404:
        code = code or "not_found"
    elif status == 429:
        etype, code = "requests", code or "rate_limit_exceeded"
    elif status >= 500:
        etype = "server_error"
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return json_response(body, status, retry_after_header(retry_after))


def _bad(exc: BadRequest) -> web.Response:
    return openai_error(exc.status, exc.message, param=exc.param, code=exc.code)


# --------------------------------------------------------------------------- parsing


def _stop_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(value)
    raise BadRequest("Invalid type for 'stop'.", param="stop", code="invalid_type")


def _tools(body: dict[str, Any]) -> tuple[list[Tool], str, str | None]:
    raw = body.get("tools")
    tools: list[Tool] = []
    if raw is not None:
        if not isinstance(raw, list):
            raise BadRequest("Invalid type for 'tools': expected an array.", param="tools")
        for i, item in enumerate(raw):
            fn = item.get("function") if isinstance(item, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise BadRequest(
                    f"Missing required parameter: 'tools[{i}].function.name'.",
                    param=f"tools[{i}].function.name",
                    code="missing_required_parameter",
                )
            params = fn.get("parameters")
            tools.append(Tool(fn["name"], params if isinstance(params, dict) else {}))
    choice = body.get("tool_choice")
    if choice is None or choice == "auto":
        return tools, "auto", None
    if choice in ("none", "required"):
        return tools, str(choice), None
    if isinstance(choice, dict):
        fn = choice.get("function")
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            if not any(t.name == fn["name"] for t in tools):
                raise BadRequest(
                    f"Invalid value for 'tool_choice': no function named "
                    f"'{fn['name']}' was specified in 'tools'.",
                    param="tool_choice",
                )
            return tools, "named", fn["name"]
    raise BadRequest("Invalid value for 'tool_choice'.", param="tool_choice")


def _response_format(body: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    fmt = body.get("response_format")
    if not isinstance(fmt, dict):
        return False, None
    if fmt.get("type") == "json_object":
        return True, None
    if fmt.get("type") == "json_schema":
        js = fmt.get("json_schema")
        schema = js.get("schema") if isinstance(js, dict) else None
        if not isinstance(schema, dict):
            raise BadRequest(
                "Missing required parameter: 'response_format.json_schema.schema'.",
                param="response_format.json_schema",
                code="missing_required_parameter",
            )
        return True, schema
    return False, None


def _message_texts(messages: list[Any]) -> list[str]:
    texts: list[str] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise BadRequest(
                f"Missing required parameter: 'messages[{i}].role'.",
                param=f"messages[{i}].role",
                code="missing_required_parameter",
            )
        # OpenAI's published count includes each message's role (and name) tokens.
        parts = [msg["role"], *text_of(msg.get("content"))]
        if isinstance(msg.get("name"), str):
            parts.append(msg["name"])
        calls = msg.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise BadRequest(
                f"Invalid type for 'messages[{i}].tool_calls': expected an array.",
                param=f"messages[{i}].tool_calls",
                code="invalid_type",
            )
        for call in calls or ():
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                fn = call["function"]
                parts.append(f"{fn.get('name', '')} {fn.get('arguments', '')}")
        texts.append(" ".join(parts))
    return texts


def parse_chat(body: dict[str, Any], model: str) -> GenSpec:
    messages = body.get("messages")
    if messages is None:
        raise BadRequest(
            "Missing required parameter: 'messages'.",
            param="messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list):
        raise BadRequest(
            "Invalid type for 'messages': expected an array.", param="messages", code="invalid_type"
        )
    if not messages:
        raise BadRequest(
            "Invalid 'messages': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    texts = _message_texts(messages)
    tools, mode, name = _tools(body)
    json_mode, schema = _response_format(body)
    max_tokens = positive_int(body.get("max_completion_tokens"), "max_completion_tokens")
    if max_tokens is None:
        max_tokens = positive_int(body.get("max_tokens"), "max_tokens")
    last = messages[-1]
    return GenSpec(
        model=model,
        digest=content_digest(canonical(body)),
        prompt_tokens=chat_prompt_tokens(texts),
        stream=bool(body.get("stream")),
        max_tokens=max_tokens,
        stop=_stop_list(body.get("stop")),
        n=positive_int(body.get("n"), "n") or 1,
        tools=tools,
        tool_mode=mode,
        tool_name=name,
        last_is_tool_result=last.get("role") in ("tool", "function"),
        json_mode=json_mode,
        json_schema=schema,
        request_seed=body.get("seed"),
    )


# --------------------------------------------------------------------------- rendering


def _logprobs(rng: random.Random, pieces: list[str], top: int) -> dict[str, Any]:
    content = []
    for piece in pieces:
        lp = round(-rng.random() * 1.5, 6)
        tops = [{"token": piece, "logprob": lp, "bytes": list(piece.encode())}]
        floor = lp
        for _ in range(max(top - 1, 0)):
            floor = round(floor - 0.5 - rng.random() * 2, 6)
            alt = " " + VOCABULARY[int(rng.random() * len(VOCABULARY))]
            tops.append({"token": alt, "logprob": floor, "bytes": list(alt.encode())})
        content.append(
            {
                "token": piece,
                "logprob": lp,
                "bytes": list(piece.encode()),
                "top_logprobs": tops[:top],
            }
        )
    return {"content": content, "refusal": None}


class ChatRenderer:
    def __init__(
        self, st: SimState, spec: GenSpec, body: dict[str, Any], rid: str, model: str
    ) -> None:
        self.id = f"chatcmpl-sim{rid}"
        self.model = model
        self.created = unix_now()
        self.seed = st.cfg.seed
        self.spec = spec
        opts = body.get("stream_options")
        self.include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        self.logprobs = bool(body.get("logprobs"))
        top = body.get("top_logprobs")
        self.top = top if isinstance(top, int) and not isinstance(top, bool) else 0

    def _lp(self, choice: Choice) -> dict[str, Any] | None:
        if not self.logprobs or choice.tool_call is not None:
            return None
        rng = request_rng(
            self.seed, self.spec.digest, self.spec.request_seed, f"logprobs{choice.index}"
        )
        return _logprobs(rng, choice.pieces, self.top)

    def _usage(self, choices: list[Choice]) -> dict[str, Any]:
        completion = sum(c.completion_tokens for c in choices)
        return {
            "prompt_tokens": self.spec.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.spec.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def body(self, choices: list[Choice]) -> dict[str, Any]:
        out = []
        for c in choices:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": c.text,
                "refusal": None,
                "annotations": [],
            }
            if c.tool_call is not None:
                message["content"] = None
                message["tool_calls"] = [
                    {
                        "id": f"call_{c.tool_call.id}",
                        "type": "function",
                        "function": {"name": c.tool_call.name, "arguments": c.tool_call.arguments},
                    }
                ]
            out.append(
                {
                    "index": c.index,
                    "message": message,
                    "logprobs": self._lp(c),
                    "finish_reason": _FINISH[c.finish],
                }
            )
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": out,
            "usage": self._usage(choices),
            "service_tier": "default",
            "system_fingerprint": "fp_interlock_sim",
        }

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        data: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_interlock_sim",
            "choices": choices,
        }
        if self.include_usage:
            data["usage"] = usage
        return sse(data)

    def stream(self, choices: list[Choice]) -> StreamParts:
        head: list[bytes] = []
        content: list[tuple[bytes, int]] = []
        tail: list[bytes] = []
        for c in choices:
            call = c.tool_call
            if call is None:
                head.append(
                    self._chunk(
                        [
                            {
                                "index": c.index,
                                "delta": {"role": "assistant", "content": "", "refusal": None},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ]
                    )
                )
                lp = self._lp(c)
                for j, piece in enumerate(c.pieces):
                    piece_lp = {"content": [lp["content"][j]], "refusal": None} if lp else None
                    content.append(
                        (
                            self._chunk(
                                [
                                    {
                                        "index": c.index,
                                        "delta": {"content": piece},
                                        "logprobs": piece_lp,
                                        "finish_reason": None,
                                    }
                                ]
                            ),
                            1,
                        )
                    )
            else:
                head.append(
                    self._chunk(
                        [
                            {
                                "index": c.index,
                                "delta": {
                                    "role": "assistant",
                                    "content": None,
                                    "refusal": None,
                                    "tool_calls": [
                                        {
                                            "index": 0,
                                            "id": f"call_{call.id}",
                                            "type": "function",
                                            "function": {"name": call.name, "arguments": ""},
                                        }
                                    ],
                                },
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ]
                    )
                )
                for piece in call.pieces:
                    content.append(
                        (
                            self._chunk(
                                [
                                    {
                                        "index": c.index,
                                        "delta": {
                                            "tool_calls": [
                                                {"index": 0, "function": {"arguments": piece}}
                                            ]
                                        },
                                        "logprobs": None,
                                        "finish_reason": None,
                                    }
                                ]
                            ),
                            1,
                        )
                    )
            tail.append(
                self._chunk(
                    [
                        {
                            "index": c.index,
                            "delta": {},
                            "logprobs": None,
                            "finish_reason": _FINISH[c.finish],
                        }
                    ]
                )
            )
        if self.include_usage:
            tail.append(self._chunk([], self._usage(choices)))
        tail.append(_DONE)
        return StreamParts(head, content, tail)


class CompletionRenderer:
    def __init__(
        self, spec: GenSpec, rid: str, model: str, body: dict[str, Any] | None = None
    ) -> None:
        self.id = f"cmpl-sim{rid}"
        self.model = model
        self.created = unix_now()
        self.spec = spec
        opts = (body or {}).get("stream_options")
        self.include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))

    def _usage(self, choices: list[Choice]) -> dict[str, int]:
        completion = sum(c.completion_tokens for c in choices)
        return {
            "prompt_tokens": self.spec.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.spec.prompt_tokens + completion,
        }

    def body(self, choices: list[Choice]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_interlock_sim",
            "choices": [
                {
                    "text": c.text,
                    "index": c.index,
                    "logprobs": None,
                    "finish_reason": _FINISH[c.finish],
                }
                for c in choices
            ],
            "usage": self._usage(choices),
        }

    def _chunk(self, index: int, text: str, finish: str | None) -> bytes:
        return sse(
            {
                "id": self.id,
                "object": "text_completion",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": "fp_interlock_sim",
                "choices": [
                    {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
                ],
            }
        )

    def stream(self, choices: list[Choice]) -> StreamParts:
        content = [(self._chunk(c.index, p, None), 1) for c in choices for p in c.pieces]
        tail = [self._chunk(c.index, "", _FINISH[c.finish]) for c in choices]
        if self.include_usage:
            # Like chat: a last chunk with no choices carries the usage.
            tail.append(
                sse(
                    {
                        "id": self.id,
                        "object": "text_completion",
                        "created": self.created,
                        "model": self.model,
                        "system_fingerprint": "fp_interlock_sim",
                        "choices": [],
                        "usage": self._usage(choices),
                    }
                )
            )
        tail.append(_DONE)
        return StreamParts([], content, tail)


# --------------------------------------------------------------------------- handlers


# Where a request came in: OpenAI's /v1, Azure's classic deployment routes
# (/openai/deployments/{dep}/...?api-version=...) or Azure's v1 API (/openai/v1/..., the
# model in the body, no api-version).
Mode = Literal["openai", "azure", "azure_v1"]


def _azure_denied() -> web.Response:
    return json_response(
        {
            "error": {
                "code": "401",
                "message": "Access denied due to invalid subscription key or wrong API endpoint. "
                "Make sure to provide a valid key for an active subscription and use a "
                "correct regional API endpoint for your resource.",
            }
        },
        401,
    )


def _azure_check(request: web.Request, mode: Mode) -> web.Response | None:
    bearer = request.headers.get("authorization", "")
    if not request.headers.get("api-key") and not (
        mode == "azure_v1" and bearer.lower().startswith("bearer ") and bearer[7:].strip()
    ):
        return _azure_denied()
    version = request.query.get("api-version")
    if mode == "azure_v1":
        # The v1 API takes no dated api-version (only "preview", for preview features).
        if version is not None and version != "preview":
            return json_response(
                {
                    "error": {
                        "code": "BadRequest",
                        "message": "api-version query parameter is not allowed when using /v1 path",
                    }
                },
                400,
            )
        return None
    if not version:
        # Azure answers a deployment route without api-version as an unknown resource.
        return json_response({"error": {"code": "404", "message": "Resource not found"}}, 404)
    return None


def _spec_refusal(path: str, body: dict[str, Any]) -> web.Response | None:
    """OpenAI's answer to a body its published spec refuses (sim/conformance/openai.py)."""
    found = request_issues(path, body)
    if found:
        first = found[0]
        return openai_error(400, first.message, param=first.param, code=first.code)
    if path == "chat/completions":
        return _tool_id_refusal(body)
    return None


# OpenAI refuses a replayed tool-call id over 40 characters (a rule of the API that the
# spec does not state): 400 string_above_max_length naming messages[i].tool_calls[j].id.
TOOL_ID_MAX = 40


def _tool_id_refusal(body: dict[str, Any]) -> web.Response | None:
    for i, msg in enumerate(body.get("messages") or ()):
        calls = msg.get("tool_calls") if isinstance(msg, dict) else None
        for j, call in enumerate(calls if isinstance(calls, list) else ()):
            cid = call.get("id") if isinstance(call, dict) else None
            if isinstance(cid, str) and len(cid) > TOOL_ID_MAX:
                param = f"messages[{i}].tool_calls[{j}].id"
                return openai_error(
                    400,
                    f"Invalid '{param}': string too long. Expected a string with maximum "
                    f"length {TOOL_ID_MAX}, but got a string with length {len(cid)} instead.",
                    param=param,
                    code="string_above_max_length",
                )
    return None


async def _prelude(
    request: web.Request, mode: Mode, path: str
) -> tuple[SimState, dict[str, Any], str, web.Response | None]:
    st = state_of(request)
    raw = await st.read(request)
    if mode != "openai":
        denied = _azure_check(request, mode)
        if denied is not None:
            return st, {}, "", denied
    try:
        body = parse_body(raw)
    except BadRequest as exc:
        return st, {}, "", _bad(exc)
    if mode == "azure":
        deployment = request.match_info["deployment"]
        # The deployment names the model; a body without one is what the spec describes.
        refused = _spec_refusal(path, {"model": deployment, **body})
        return st, body, deployment, refused
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return (
            st,
            body,
            "",
            openai_error(
                400,
                "you must provide a model parameter",
                param=None,
                code="missing_required_parameter",
            ),
        )
    return st, body, model, _spec_refusal(path, body)


def chat_handler(mode: Mode) -> Handler:
    fmt = "openai" if mode == "openai" else "azure"

    async def handle(request: web.Request) -> web.StreamResponse:
        st, body, model, early = await _prelude(request, mode, "chat/completions")
        if early is not None:
            return early
        stream = bool(body.get("stream"))
        decision, replaced = await run_faults(
            request, st, fmt=fmt, model=model, stream=stream, error=openai_error
        )
        if replaced is not None:
            return replaced
        try:
            spec = parse_chat(body, model)
        except BadRequest as exc:
            return _bad(exc)
        return await serve(
            request,
            st,
            fmt=fmt,
            spec=spec,
            decision=decision,
            renderer_factory=lambda rid: ChatRenderer(st, spec, body, rid, model),
        )

    return handle


def _prompts(value: Any) -> list[tuple[str, int]]:
    """(text, tokens) per prompt of a legacy completion request."""
    if isinstance(value, str):
        return [(value, count_tokens(value))]
    if isinstance(value, list) and value:
        if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return [(" ".join(map(str, value)), len(value))]
        out: list[tuple[str, int]] = []
        for item in value:
            if isinstance(item, str):
                out.append((item, count_tokens(item)))
            elif isinstance(item, list) and all(isinstance(t, int) for t in item):
                out.append((" ".join(map(str, item)), len(item)))
            else:
                break
        else:
            return out
    raise BadRequest("Invalid type for 'prompt'.", param="prompt", code="invalid_type")


def completion_handler(mode: Mode) -> Handler:
    fmt = "openai" if mode == "openai" else "azure"

    async def handle(request: web.Request) -> web.StreamResponse:
        st, body, model, early = await _prelude(request, mode, "completions")
        if early is not None:
            return early
        stream = bool(body.get("stream"))
        decision, replaced = await run_faults(
            request, st, fmt=fmt, model=model, stream=stream, error=openai_error
        )
        if replaced is not None:
            return replaced
        try:
            if "prompt" not in body:
                raise BadRequest(
                    "Missing required parameter: 'prompt'.",
                    param="prompt",
                    code="missing_required_parameter",
                )
            prompts = _prompts(body["prompt"])
            n = positive_int(body.get("n"), "n") or 1
            spec = GenSpec(
                model=model,
                digest=content_digest(canonical(body)),
                prompt_tokens=sum(t for _, t in prompts),
                stream=stream,
                max_tokens=positive_int(body.get("max_tokens"), "max_tokens", minimum=0),
                stop=_stop_list(body.get("stop")),
                n=n * len(prompts),
                request_seed=body.get("seed"),
            )
        except BadRequest as exc:
            return _bad(exc)
        return await serve(
            request,
            st,
            fmt=fmt,
            spec=spec,
            decision=decision,
            renderer_factory=lambda rid: CompletionRenderer(spec, rid, model, body),
        )

    return handle


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    if isinstance(value, str):
        return [(value, count_tokens(value))]
    if isinstance(value, list) and value:
        if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return [(" ".join(map(str, value)), len(value))]
        out: list[tuple[str, int]] = []
        for item in value:
            if isinstance(item, str):
                out.append((item, count_tokens(item)))
            elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
                out.append((" ".join(map(str, item)), len(item)))
            else:
                break
        else:
            return out
    raise BadRequest(
        "'$.input' is invalid. Please check the API reference: "
        "https://platform.openai.com/docs/api-reference.",
        param="input",
    )


def embeddings_handler(mode: Mode) -> Handler:
    fmt = "openai" if mode == "openai" else "azure"

    async def handle(request: web.Request) -> web.StreamResponse:
        st, body, model, early = await _prelude(request, mode, "embeddings")
        if early is not None:
            return early
        decision, replaced = await run_faults(
            request, st, fmt=fmt, model=model, stream=False, error=openai_error
        )
        if replaced is not None:
            return replaced
        try:
            if "input" not in body:
                raise BadRequest(
                    "Missing required parameter: 'input'.",
                    param="input",
                    code="missing_required_parameter",
                )
            inputs = _embedding_inputs(body["input"])
            dims = positive_int(body.get("dimensions"), "dimensions") or st.cfg.embedding_dims
            encoding = body.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise BadRequest("Invalid value for 'encoding_format'.", param="encoding_format")
        except BadRequest as exc:
            return _bad(exc)
        return await _serve_embeddings(
            request, st, fmt, model, inputs, dims, encoding, decision.fault
        )

    return handle


async def _serve_embeddings(
    request: web.Request,
    st: SimState,
    fmt: str,
    model: str,
    inputs: list[tuple[str, int]],
    dims: int,
    encoding: str,
    fault: dict[str, Any] | None,
) -> web.StreamResponse:
    cfg = st.cfg
    if cfg.ttft_ms:
        await asyncio.sleep(cfg.ttft_ms / 1000)
    tokens = sum(t for _, t in inputs)
    rid = st.next_id()
    if fault is not None and fault["type"] == "malformed":
        st.ledger.record(
            cfg,
            id=rid,
            format=fmt,
            model=model,
            stream=False,
            prompt_tokens=tokens,
            completion_tokens=0,
            status=200,
            completed=False,
            fault="malformed",
            endpoint="embeddings",
        )
        return web.Response(
            body=b'{"object": "list", "data": [{"embedding": [0.1, ',
            content_type="application/json",
        )
    data = []
    for i, (text, _) in enumerate(inputs):
        vec = embed(text, dims)
        data.append(
            {
                "object": "embedding",
                "index": i,
                "embedding": encode_base64(vec) if encoding == "base64" else vec,
            }
        )
    st.ledger.record(
        cfg,
        id=rid,
        format=fmt,
        model=model,
        stream=False,
        prompt_tokens=tokens,
        completion_tokens=0,
        status=200,
        endpoint="embeddings",
    )
    return web.Response(
        body=orjson.dumps(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        ),
        content_type="application/json",
    )


def _model(mid: str) -> dict[str, Any]:
    return {"id": mid, "object": "model", "created": 1_700_000_000, "owned_by": "interlock-sim"}


async def list_models(request: web.Request) -> web.StreamResponse:
    return json_response({"object": "list", "data": [_model(m) for m in MODELS]})


async def get_model(request: web.Request) -> web.StreamResponse:
    mid = request.match_info["model"]
    if mid not in MODELS:
        return openai_error(
            404, f"The model '{mid}' does not exist", param="model", code="model_not_found"
        )
    return json_response(_model(mid))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/chat/completions", chat_handler("openai"))
    app.router.add_post("/v1/completions", completion_handler("openai"))
    app.router.add_post("/v1/embeddings", embeddings_handler("openai"))
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model}", get_model)
    base = "/openai/deployments/{deployment}"
    app.router.add_post(base + "/chat/completions", chat_handler("azure"))
    app.router.add_post(base + "/completions", completion_handler("azure"))
    app.router.add_post(base + "/embeddings", embeddings_handler("azure"))
    # Azure OpenAI's v1 API: OpenAI's paths under /openai/v1, the model in the body.
    app.router.add_post("/openai/v1/chat/completions", chat_handler("azure_v1"))
    app.router.add_post("/openai/v1/completions", completion_handler("azure_v1"))
    app.router.add_post("/openai/v1/embeddings", embeddings_handler("azure_v1"))
    app.router.add_get("/openai/v1/models", list_models)
