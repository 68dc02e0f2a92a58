"""Gemini API and Vertex AI wire format: generateContent, streamGenerateContent (SSE with
``alt=sse``, else a streamed JSON array), embedContent and batchEmbedContents, and Vertex's
``predict`` for embedding models.

Every request is checked first by :mod:`interlock.sim.conformance.gemini` (the google-genai
SDK types and Google's documented limits); one the real service would refuse gets its
400 ``INVALID_ARGUMENT`` answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from aiohttp import web

from interlock.sim.conformance.gemini import (
    embed_problems,
    predict_problems,
    request_problems,
)
from interlock.sim.embeddings import embed
from interlock.sim.engine import Choice, GenSpec, Tool
from interlock.sim.formats.common import retry_after_header, sse
from interlock.sim.runtime import (
    BadRequest,
    StreamParts,
    json_response,
    run_faults,
    serve,
    state_of,
)
from interlock.sim.textgen import chat_prompt_tokens, content_digest, count_tokens

__all__ = ["add_routes", "google_error"]

_FINISH = {"stop": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "tool": "STOP"}
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
Handler = Callable[[web.Request], Coroutine[Any, Any, web.StreamResponse]]


def google_error(status: int, message: str, retry_after: float | None = None) -> web.Response:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUS.get(status, "UNKNOWN"),
    }
    if retry_after is not None:
        error["details"] = [
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}
        ]
    return json_response({"error": error}, status, retry_after_header(retry_after))


def _part_texts(parts: Any) -> list[str]:
    out: list[str] = []
    if not isinstance(parts, list):
        return out
    for part in parts:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            out.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            out.append(f"{call.get('name', '')} {orjson.dumps(call.get('args', {})).decode()}")
        elif isinstance(part.get("functionResponse"), dict):
            resp = part["functionResponse"]
            out.append(f"{resp.get('name', '')} {orjson.dumps(resp.get('response', {})).decode()}")
    return out


def _tools(body: dict[str, Any]) -> tuple[list[Tool], str, str | None]:
    tools: list[Tool] = []
    for group in body.get("tools") or []:
        if not isinstance(group, dict):
            continue
        for decl in group.get("functionDeclarations") or group.get("function_declarations") or []:
            if isinstance(decl, dict) and isinstance(decl.get("name"), str):
                params = decl.get("parameters") or decl.get("parametersJsonSchema")
                tools.append(Tool(decl["name"], params if isinstance(params, dict) else {}))
    cfg = body.get("toolConfig") or {}
    fcc = cfg.get("functionCallingConfig") if isinstance(cfg, dict) else None
    if not isinstance(fcc, dict):
        return tools, "auto", None
    mode = str(fcc.get("mode", "AUTO")).upper()
    if mode == "NONE":
        return tools, "none", None
    allowed = fcc.get("allowedFunctionNames")
    if mode == "ANY" and isinstance(allowed, list) and allowed:
        return tools, "named", str(allowed[0])
    return tools, "required" if mode == "ANY" else "auto", None


def parse_generate(body: dict[str, Any], model: str, stream: bool) -> GenSpec:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
    texts: list[str] = []
    system = body.get("systemInstruction") or body.get("system_instruction")
    if isinstance(system, dict):
        texts.append(" ".join(_part_texts(system.get("parts"))))
    elif isinstance(system, str):
        texts.append(system)
    for i, content in enumerate(contents):
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            raise BadRequest(
                f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty."
            )
        role = content.get("role", "user")
        if role not in ("user", "model", "function", "tool"):
            raise BadRequest(f"Please use a valid role: user, model. Got {role!r}.")
        texts.append(" ".join(_part_texts(content["parts"])))
    gen = body.get("generationConfig") or {}
    if not isinstance(gen, dict):
        raise BadRequest("generationConfig must be an object")
    max_tokens = gen.get("maxOutputTokens")
    stops = gen.get("stopSequences") or []
    count = gen.get("candidateCount") or 1
    schema = gen.get("responseSchema") or gen.get("responseJsonSchema")
    tools, mode, name = _tools(body)
    last_parts = contents[-1].get("parts") or []
    return GenSpec(
        model=model,
        digest=content_digest(_canonical(body)),
        prompt_tokens=chat_prompt_tokens(texts),
        stream=stream,
        max_tokens=max_tokens if isinstance(max_tokens, int) else None,
        stop=[s for s in stops if isinstance(s, str)] if isinstance(stops, list) else [],
        n=count if isinstance(count, int) and count > 0 else 1,
        tools=tools,
        tool_mode=mode,
        tool_name=name,
        last_is_tool_result=any(
            isinstance(p, dict) and "functionResponse" in p for p in last_parts
        ),
        json_mode=gen.get("responseMimeType") == "application/json",
        json_schema=schema if isinstance(schema, dict) else None,
        request_seed=gen.get("seed"),
    )


_GEN_CONTROL = frozenset(
    {
        "maxOutputTokens",
        "stopSequences",
        "candidateCount",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
    }
)


def _canonical(body: dict[str, Any]) -> dict[str, Any]:
    gen = body.get("generationConfig")
    if not isinstance(gen, dict):
        return body
    return {**body, "generationConfig": {k: v for k, v in gen.items() if k not in _GEN_CONTROL}}


class GenerateRenderer:
    """``GenerateContentResponse`` bodies and stream events. With thinking asked for
    (``thinkingConfig`` with a non-zero budget or a level), the first third of a text
    answer's tokens are thoughts: reported as ``thoughtsTokenCount`` (billed as output,
    so the total is unchanged) and, with ``includeThoughts``, written as ``thought`` parts."""

    def __init__(
        self,
        spec: GenSpec,
        rid: str,
        model: str,
        sse_mode: bool,
        thinking: bool = False,
        include_thoughts: bool = False,
    ) -> None:
        self.spec = spec
        self.model = model
        self.id = f"sim{rid}"
        self.sse_mode = sse_mode
        self.thinking = thinking
        self.include_thoughts = include_thoughts

    def _thought_pieces(self, c: Choice) -> int:
        if not self.thinking or c.tool_call is not None or len(c.pieces) < 2:
            return 0
        return max(1, len(c.pieces) // 3)

    def _usage(self, choices: list[Choice]) -> dict[str, Any]:
        prompt = self.spec.prompt_tokens
        completion = sum(c.completion_tokens for c in choices)
        thoughts = sum(self._thought_pieces(c) for c in choices)
        out: dict[str, Any] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": completion - thoughts,
            "totalTokenCount": prompt + completion,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }
        if thoughts:
            out["thoughtsTokenCount"] = thoughts
        return out

    def _parts(self, c: Choice) -> list[dict[str, Any]]:
        if c.tool_call is not None:
            call = {
                "id": f"{self.id}-{c.index}",
                "name": c.tool_call.name,
                "args": c.tool_call.input,
            }
            return [{"functionCall": call}]
        k = self._thought_pieces(c)
        if not k:
            return [{"text": c.text}]
        parts: list[dict[str, Any]] = []
        if self.include_thoughts:
            parts.append({"text": "".join(c.pieces[:k]), "thought": True})
        answer = "".join(c.pieces[k:])
        parts.append({"text": answer or " "})
        return parts

    def _response(
        self, candidates: list[dict[str, Any]], usage: dict[str, Any] | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"candidates": candidates}
        if usage is not None:
            out["usageMetadata"] = usage
        out["modelVersion"] = self.model
        out["responseId"] = self.id
        return out

    def body(self, choices: list[Choice]) -> dict[str, Any]:
        cands = [
            {
                "content": {"role": "model", "parts": self._parts(c)},
                "finishReason": _FINISH[c.finish],
                "index": c.index,
            }
            for c in choices
        ]
        return self._response(cands, self._usage(choices))

    def _event(self, c: Choice, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return self._response(
            [{"content": {"role": "model", "parts": parts}, "index": c.index}], None
        )

    def stream(self, choices: list[Choice]) -> StreamParts:
        events: list[tuple[dict[str, Any], int]] = []
        for c in choices:
            if c.tool_call is not None:
                events.append((self._event(c, self._parts(c)), c.completion_tokens))
                continue
            k = self._thought_pieces(c)
            hidden = 0  # thought tokens not written (no includeThoughts) ride on the next event
            for i, piece in enumerate(c.pieces):
                if i < k and not self.include_thoughts:
                    hidden += 1
                    continue
                part: dict[str, Any] = {"text": piece}
                if i < k:
                    part["thought"] = True
                events.append((self._event(c, [part]), 1 + hidden))
                hidden = 0
            if hidden:
                events.append((self._event(c, [{"text": " "}]), hidden))
        final = self._response(
            [
                {
                    "content": {"role": "model", "parts": [{"text": ""}]},
                    "finishReason": _FINISH[c.finish],
                    "index": c.index,
                }
                for c in choices
            ],
            self._usage(choices),
        )
        if self.sse_mode:
            return StreamParts(
                [],
                [(sse(e), t) for e, t in events],
                [sse(final)],
                broken=b'data: {"candidates": [{"content": {"ro\n\n',
            )
        # a JSON array, written incrementally
        content = [
            ((b"[" if i == 0 else b",\r\n") + orjson.dumps(e), t) for i, (e, t) in enumerate(events)
        ]
        tail = [(b"[" if not events else b",\r\n") + orjson.dumps(final) + b"]"]
        return StreamParts(
            [],
            content,
            tail,
            content_type="application/json",
            broken=b'[{"candidates": [{"content": {"ro',
        )


def _thinking_of(body: dict[str, Any]) -> tuple[bool, bool]:
    """(thinks, includes thoughts) for a request that passed validation."""
    gen = body.get("generationConfig")
    cfg = gen.get("thinkingConfig") if isinstance(gen, dict) else None
    if not isinstance(cfg, dict):
        return False, False
    thinks = cfg.get("thinkingLevel") is not None or cfg.get("thinkingBudget") not in (None, 0)
    return thinks, thinks and bool(cfg.get("includeThoughts"))


def _split_model(request: web.Request) -> tuple[str, str]:
    model, _, action = request.match_info["model_action"].rpartition(":")
    return model, action


def _auth_error(request: web.Request, vertex: bool) -> web.Response | None:
    if vertex:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return google_error(
                401,
                "Request is missing required authentication credential. "
                "Expected OAuth 2 access token.",
            )
        return None
    if not request.headers.get("x-goog-api-key"):
        return google_error(
            403,
            "Method doesn't allow unregistered callers (callers without "
            "established identity). Please use API Key or other form of "
            "API consumer identity to call this API.",
        )
    return None


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise BadRequest("Invalid JSON payload received.") from exc
    if not isinstance(body, dict):
        raise BadRequest("Invalid JSON payload received. Expected an object.")
    return body


_ACTIONS = frozenset(
    {
        "generateContent",
        "streamGenerateContent",
        "embedContent",
        "batchEmbedContents",
        "countTokens",
    }
)


def _message(problems: list[str]) -> str:
    """Google lists each invalid field of a request on its own line, ``* `` first."""
    if len(problems) == 1:
        return problems[0]
    return "\n".join(f"* {p}" for p in problems[:8])


def model_handler(vertex: bool) -> Handler:
    fmt = "vertex" if vertex else "gemini"

    async def handle(request: web.Request) -> web.StreamResponse:
        st = state_of(request)
        raw = await st.read(request)
        denied = _auth_error(request, vertex)
        if denied is not None:
            return denied
        model, action = _split_model(request)
        actions = _ACTIONS | {"predict"} if vertex else _ACTIONS
        if action not in actions:
            return google_error(404, f"Method not found: {action}")
        try:
            body = _parse_json(raw)
        except BadRequest as exc:
            return google_error(400, exc.message)
        if action in ("embedContent", "batchEmbedContents", "predict"):
            if action == "predict":
                problems = predict_problems(body, model)
            else:
                problems = embed_problems(body, action, vertex)
            if problems:
                return google_error(400, _message(problems))
            return await _embed(request, st, fmt, model, action, body)
        checked = body
        if action == "countTokens" and isinstance(body.get("generateContentRequest"), dict):
            checked = {k: v for k, v in body["generateContentRequest"].items() if k != "model"}
        problems = request_problems(checked, model, vertex)
        if problems:
            return google_error(400, _message(problems))
        stream = action == "streamGenerateContent"
        if action == "countTokens":
            try:
                spec = parse_generate(body, model, False)
            except BadRequest as exc:
                return google_error(400, exc.message)
            return json_response({"totalTokens": spec.prompt_tokens})
        decision, replaced = await run_faults(
            request, st, fmt=fmt, model=model, stream=stream, error=google_error
        )
        if replaced is not None:
            return replaced
        try:
            spec = parse_generate(body, model, stream)
        except BadRequest as exc:
            return google_error(400, exc.message)
        sse_mode = request.query.get("alt") == "sse"
        return await serve(
            request,
            st,
            fmt=fmt,
            spec=spec,
            decision=decision,
            renderer_factory=lambda rid: GenerateRenderer(
                spec, rid, model, sse_mode, *_thinking_of(body)
            ),
        )

    return handle


def _embed_text(req: Any) -> str:
    if not isinstance(req, dict) or not isinstance(req.get("content"), dict):
        raise BadRequest("* EmbedContentRequest.content: content is not specified")
    return " ".join(_part_texts(req["content"].get("parts")))


def _embed_dims(req: dict[str, Any], body: dict[str, Any], action: str) -> Any:
    if action == "predict":
        params = body.get("parameters")
        return params.get("outputDimensionality") if isinstance(params, dict) else None
    config = req.get("embedContentConfig")
    if isinstance(config, dict) and config.get("outputDimensionality"):
        return config["outputDimensionality"]
    return req.get("outputDimensionality")


async def _embed(
    request: web.Request, st: Any, fmt: str, model: str, action: str, body: dict[str, Any]
) -> web.StreamResponse:
    decision, replaced = await run_faults(
        request, st, fmt=fmt, model=model, stream=False, error=google_error
    )
    if replaced is not None:
        return replaced
    try:
        if action == "predict":
            reqs = body.get("instances")
            texts = [str(r.get("content", "")) for r in reqs] if isinstance(reqs, list) else []
        else:
            reqs = body.get("requests") if action == "batchEmbedContents" else [body]
            if not isinstance(reqs, list) or not reqs:
                raise BadRequest("* BatchEmbedContentsRequest.requests: requests is not specified")
            texts = [_embed_text(r) for r in reqs]
    except BadRequest as exc:
        return google_error(400, exc.message)
    if st.cfg.ttft_ms:
        await asyncio.sleep(st.cfg.ttft_ms / 1000)
    tokens = sum(count_tokens(t) for t in texts)
    if decision.fault is not None and decision.fault["type"] == "malformed":
        st.ledger.record(
            st.cfg,
            id=st.next_id(),
            format=fmt,
            model=model,
            stream=False,
            prompt_tokens=tokens,
            completion_tokens=0,
            status=200,
            completed=False,
            fault="malformed",
        )
        return web.Response(body=b'{"embedding": {"values": [0.1,', content_type="application/json")
    vectors: list[dict[str, Any]] = []
    for req, text in zip(reqs or (), texts, strict=True):
        dims = _embed_dims(req, body, action) or st.cfg.embedding_dims
        vectors.append({"values": embed(text, int(dims))})
    st.ledger.record(
        st.cfg,
        id=st.next_id(),
        format=fmt,
        model=model,
        stream=False,
        prompt_tokens=tokens,
        completion_tokens=0,
        status=200,
    )
    if action == "predict":
        predictions = [
            {
                "embeddings": {
                    **v,
                    "statistics": {"token_count": count_tokens(t), "truncated": False},
                }
            }
            for v, t in zip(vectors, texts, strict=True)
        ]
        return json_response(
            {
                "predictions": predictions,
                "metadata": {"billableCharacterCount": sum(len(t) for t in texts)},
            }
        )
    if action == "batchEmbedContents":
        return json_response({"embeddings": vectors})
    if fmt == "vertex":
        return json_response(
            {"embedding": vectors[0], "usageMetadata": {"promptTokenCount": tokens}}
        )
    return json_response({"embedding": vectors[0]})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1beta/models/{model_action}", model_handler(False))
    for version in ("v1", "v1beta1"):
        app.router.add_post(
            f"/{version}/projects/{{project}}/locations/{{location}}/publishers/google/models/"
            "{model_action}",
            model_handler(True),
        )
