"""Google Gemini wire format: the Gemini API (``generativelanguage``) and Vertex AI.

Both speak ``GenerateContentRequest``/``GenerateContentResponse``; they differ only in
the URL and in how the caller authenticates (an ``x-goog-api-key`` header carried in
``Target.headers`` for the Gemini API, an OAuth bearer token applied by
:class:`interlock.providers.google_auth.GoogleServiceAccountAuth` for Vertex).

Gemini streams have no terminator event: a stream is complete once a chunk carrying a
``finishReason`` has been seen and the input ends.

This module holds :class:`GeminiAdapter` (URLs, request dispatch, error mapping), the
response parsing (``GenerateContentResponse`` → ``chat.completion``), the embeddings
bodies and :class:`GeminiStreamDecoder`. The chat request translation (OpenAI body →
``GenerateContentRequest``, JSON Schema cleaning) lives in
:mod:`interlock.providers.gemini_request`.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

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
)
from interlock.providers.capabilities import Adjust, rules_for
from interlock.providers.gemini_request import SIG_MARK, to_gemini
from interlock.providers.sse import SSEParser
from interlock.providers.tokens import Generated, answer_usage, count_tokens, stream_usage
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest, Usage

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


class GeminiAdapter:
    wire = "gemini"

    def __init__(self, vertex: bool = False) -> None:
        self.vertex = vertex

    def supports(self, endpoint: Endpoint) -> bool:
        return endpoint in (Endpoint.CHAT, Endpoint.EMBEDDINGS)

    def url(self, target: Target, method: str) -> str:
        base = target.base_url.rstrip("/")
        model = target.model.removeprefix("models/")
        if self.vertex:
            if not target.project or not target.region:
                raise UpstreamUnavailable(
                    f"deployment {target.name} needs a project and a region for Vertex AI"
                )
            return (
                f"{base}/{target.api_version or 'v1'}/projects/{target.project}"
                f"/locations/{target.region}/publishers/google/models/{model}:{method}"
            )
        return f"{base}/{target.api_version or 'v1beta'}/models/{model}:{method}"

    def build(self, req: GatewayRequest, target: Target) -> UpstreamCall:
        headers = {"content-type": "application/json", **target.headers}
        if req.endpoint == Endpoint.EMBEDDINGS:
            if self.vertex:
                method, body = _vertex_embed(req.body, target.model)
                return UpstreamCall("POST", self.url(target, method), headers, body)
            body = _embed_body(req.body, target.model)
            return UpstreamCall("POST", self.url(target, "batchEmbedContents"), headers, body)
        if req.endpoint != Endpoint.CHAT:
            raise InvalidRequest(
                f"{req.endpoint.value} is not supported by Gemini models",
                code="unsupported_endpoint",
            )
        rules = rules_for("vertex" if self.vertex else "gemini", _model_id(target.model))
        adj = Adjust(rules)
        body = orjson.dumps(to_gemini(req.body, rules, adj))
        warnings = tuple(adj.warnings)
        if req.stream:
            headers["accept"] = "text/event-stream"
            url = self.url(target, "streamGenerateContent") + "?alt=sse"
            return UpstreamCall("POST", url, headers, body, True, warnings=warnings)
        url = self.url(target, "generateContent")
        return UpstreamCall("POST", url, headers, body, warnings=warnings)

    def parse(self, req: GatewayRequest, target: Target, status: int, body: bytes) -> Completion:
        data = json_object(body)
        if isinstance(data.get("error"), dict):
            raise _google_error(status or 500, {}, data["error"], target.provider)
        if req.endpoint == Endpoint.EMBEDDINGS:
            return _parse_embeddings(req, data, self.vertex)
        usage = usage_from_gemini(data.get("usageMetadata"))
        choices = [_choice(i, cand) for i, cand in enumerate(data.get("candidates") or ())]
        if not choices:
            # No candidates: the prompt itself was blocked (promptFeedback.blockReason).
            # That is an answer, not a failure; it reads like OpenAI's content filter.
            blocked = _blocked(data)
            choices = [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None if blocked else "",
                        "refusal": blocked,
                    },
                    "finish_reason": "content_filter" if blocked else "stop",
                    "logprobs": None,
                }
            ]
        if usage is None:
            usage = answer_usage(req.body, {"choices": choices})
        out = {
            "id": _completion_id(data),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.model,
            "choices": choices,
            "usage": usage.to_openai(),
        }
        return Completion(orjson.dumps(out), usage)

    def stream_decoder(self, req: GatewayRequest, target: Target) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(req, target.provider)

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
        if isinstance(data, list) and data:
            data = data[0]
        provider = "vertex" if self.vertex else "gemini"
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            return _google_error(status, headers, data["error"], provider)
        return map_status(status, headers, body, provider)


# ---------------------------------------------------------------------------- errors


def _retry_delay(err: JSON) -> float | None:
    for detail in err.get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = detail.get("retryDelay")
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return max(0.0, float(delay[:-1]))
                except ValueError:
                    return None
    return None


def _google_error(
    status: int, headers: Mapping[str, str], err: JSON, provider: str
) -> UpstreamError:
    """Google's ``{"error": {"code", "message", "status", "details"}}``, refined."""
    code = err.get("code")
    if isinstance(code, int) and status in (0, 200):
        status = code
    gstatus = str(err.get("status") or "")
    message = str(err.get("message") or "")[:500]
    suffix = f": {message}" if message else ""
    raw = orjson.dumps(err)
    if gstatus == "RESOURCE_EXHAUSTED" or status == 429:
        retry = _retry_delay(err)
        if retry is None:
            retry = retry_after_seconds(headers)
        return UpstreamRateLimited(
            f"provider {provider} is rate limiting{suffix}",
            upstream_status=status,
            retry_after=retry,
        )
    if (
        gstatus in ("UNAUTHENTICATED", "PERMISSION_DENIED")
        or b"API_KEY_INVALID" in raw
        or "API key not valid" in message
    ):
        return UpstreamUnavailable(
            f"provider {provider} refused the gateway's credentials", upstream_status=status
        )
    if gstatus == "FAILED_PRECONDITION":
        # Billing or region problems of the deployment, not of the client's input.
        return UpstreamUnavailable(
            f"provider {provider} cannot serve this deployment{suffix}", upstream_status=status
        )
    if gstatus == "DEADLINE_EXCEEDED" or status == 504:
        return UpstreamTimeout(f"provider {provider} timed out{suffix}", upstream_status=status)
    if gstatus == "INVALID_ARGUMENT" or status in (400, 404, 413, 422):
        out = UpstreamBadRequest(
            f"provider {provider} rejected the request{suffix}", upstream_status=status
        )
        if "token count" in message or "maximum number of tokens" in message:
            out.code = "context_length_exceeded"
        return out
    return map_status(status, headers, orjson.dumps({"error": err}), provider)


# ----------------------------------------------------------------- response parsing


def _model_id(model: str) -> str:
    return model.rsplit("/", 1)[-1]


def _blocked(data: JSON) -> str | None:
    """The refusal text for a prompt Gemini blocked (``promptFeedback.blockReason``)."""
    feedback = data.get("promptFeedback")
    if isinstance(feedback, dict) and feedback.get("blockReason"):
        reason = str(feedback["blockReason"])
        detail = feedback.get("blockReasonMessage")
        extra = f": {detail}" if isinstance(detail, str) and detail else ""
        return f"The provider blocked the prompt (blockReason {reason}){extra}."
    return None


def _filtered(reason: Any) -> str | None:
    """The refusal text for an answer stopped by a content filter (SAFETY, RECITATION...)."""
    if _FINISH.get(str(reason)) == "content_filter":
        return f"The provider stopped the answer (finishReason {reason})."
    return None


def _completion_id(data: JSON) -> str:
    rid = data.get("responseId")
    return f"chatcmpl-{rid}" if isinstance(rid, str) and rid else f"chatcmpl-{uuid.uuid4().hex}"


def _call_id(part: JSON) -> str:
    issued = part["functionCall"].get("id")
    call_id = issued if isinstance(issued, str) and issued else f"call_{uuid.uuid4().hex[:24]}"
    sig = part.get("thoughtSignature")
    return f"{call_id}{SIG_MARK}{sig}" if isinstance(sig, str) and sig else call_id


def _tool_call(part: JSON) -> JSON:
    fn = part["functionCall"]
    return {
        "id": _call_id(part),
        "type": "function",
        "function": {
            "name": str(fn.get("name", "")),
            "arguments": orjson.dumps(fn.get("args") or {}).decode(),
        },
    }


def finish_reason(reason: Any, has_tools: bool) -> str | None:
    if not reason or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    mapped = _FINISH.get(str(reason), "stop")
    return "tool_calls" if mapped == "stop" and has_tools else mapped


def _logprobs(cand: JSON) -> JSON | None:
    result = cand.get("logprobsResult")
    if not isinstance(result, dict):
        return None
    chosen = result.get("chosenCandidates") or []
    tops = result.get("topCandidates") or []
    content = []
    for k, c in enumerate(chosen):
        top = tops[k].get("candidates", []) if k < len(tops) and isinstance(tops[k], dict) else []
        content.append(
            {
                "token": c.get("token", ""),
                "logprob": c.get("logProbability", 0.0),
                "bytes": None,
                "top_logprobs": [
                    {
                        "token": t.get("token", ""),
                        "logprob": t.get("logProbability", 0.0),
                        "bytes": None,
                    }
                    for t in top
                ],
            }
        )
    return {"content": content}


def _choice(i: int, cand: Any) -> JSON:
    if not isinstance(cand, dict):
        raise UpstreamProtocolError("provider gemini returned a malformed candidate")
    parts = (cand.get("content") or {}).get("parts") or []
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[JSON] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("functionCall"), dict):
            calls.append(_tool_call(part))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else text).append(part["text"])
    reason = cand.get("finishReason")
    refusal = _filtered(reason) if not text and not calls else None
    content = None if refusal or (calls and not text) else "".join(text)
    message: JSON = {"role": "assistant", "content": content, "refusal": refusal}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    return {
        "index": cand.get("index", i),
        "message": message,
        "finish_reason": finish_reason(reason, bool(calls)) or "stop",
        "logprobs": _logprobs(cand),
    }


def usage_from_gemini(meta: Any) -> Usage | None:
    if not isinstance(meta, dict):
        return None
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    thoughts = int(meta.get("thoughtsTokenCount") or 0)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=int(meta.get("candidatesTokenCount") or 0) + thoughts,
        cached_tokens=int(meta.get("cachedContentTokenCount") or 0),
        reasoning_tokens=thoughts,
    )


# ---------------------------------------------------------------------- embeddings


# Inputs one request may carry: batchEmbedContents takes at most 100 requests (Gemini API
# and Vertex), Vertex predict at most 250 instances (text-embedding-*).
MAX_EMBED_INPUTS = 100


def _embed_inputs(body: JSON) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        if len(value) > MAX_EMBED_INPUTS:
            raise InvalidRequest(
                f"Gemini embeds at most {MAX_EMBED_INPUTS} inputs per request",
                param="input",
                code="too_many_inputs",
            )
        return list(value)
    raise InvalidRequest("input must be a string or a non-empty list of strings", param="input")


def _embed_body(body: JSON, model: str) -> bytes:
    name = model if model.startswith("models/") else f"models/{model}"
    dims = body.get("dimensions")
    requests = []
    for text in _embed_inputs(body):
        item: JSON = {"model": name, "content": {"parts": [{"text": text}]}}
        if isinstance(dims, int):
            item["outputDimensionality"] = dims
        requests.append(item)
    return orjson.dumps({"requests": requests})


def vertex_embed_method(model: str) -> str:
    """How Vertex embeds with ``model``, as the google-genai SDK decides
    (``t_is_vertex_embed_content_model``): Gemini embedding models (``gemini`` in the id)
    through ``embedContent`` (one input per request), ``text-embedding-*`` and the other
    older models through ``predict`` (several instances per request)."""
    return (
        "embedContent" if "gemini" in _model_id(model) or "maas" in _model_id(model) else "predict"
    )


def _vertex_embed(body: JSON, model: str) -> tuple[str, bytes]:
    """The Vertex method and body for an embeddings request. Gemini embedding models take
    one content per ``embedContent``; several inputs go in one ``batchEmbedContents`` (what
    the SDK sends them), never as several ``predict`` instances (Vertex refuses those)."""
    inputs = _embed_inputs(body)
    dims = body.get("dimensions")
    config: JSON = {"outputDimensionality": dims} if isinstance(dims, int) else {}
    if vertex_embed_method(model) == "embedContent":
        items: list[JSON] = []
        for text in inputs:
            item: JSON = {"content": {"parts": [{"text": text}]}}
            if config:
                item["embedContentConfig"] = config
            items.append(item)
        if len(items) == 1:
            return "embedContent", orjson.dumps(items[0])
        return "batchEmbedContents", orjson.dumps({"requests": items})
    out: JSON = {"instances": [{"content": t} for t in inputs]}
    if config:
        out["parameters"] = config
    return "predict", orjson.dumps(out)


def _parse_embeddings(req: GatewayRequest, data: JSON, vertex: bool) -> Completion:
    vectors: list[list[float]] = []
    tokens = 0
    if isinstance(data.get("embedding"), dict):  # embedContent (Vertex Gemini models)
        vectors.append(data["embedding"].get("values") or [])
    elif vertex and "predictions" in data:
        for pred in data.get("predictions") or ():
            emb = pred.get("embeddings") if isinstance(pred, dict) else None
            if not isinstance(emb, dict):
                raise UpstreamProtocolError("provider gemini returned a malformed embedding")
            vectors.append(emb.get("values") or [])
            stats = emb.get("statistics")
            if isinstance(stats, dict):
                tokens += int(stats.get("token_count") or 0)
    else:
        for emb in data.get("embeddings") or ():
            if not isinstance(emb, dict):
                raise UpstreamProtocolError("provider gemini returned a malformed embedding")
            vectors.append(emb.get("values") or [])
    inputs = _embed_inputs(req.body)
    if len(vectors) != len(inputs):
        raise UpstreamProtocolError("provider gemini returned the wrong number of embeddings")
    meta = data.get("usageMetadata")
    if isinstance(meta, dict) and meta.get("promptTokenCount"):
        tokens = int(meta["promptTokenCount"])
    usage = (
        Usage(tokens, 0)
        if tokens
        else Usage(sum(count_tokens(t) for t in inputs), 0, estimated=True)
    )
    b64 = req.body.get("encoding_format") == "base64"
    items = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if b64 else v,
        }
        for i, v in enumerate(vectors)
    ]
    out = {
        "object": "list",
        "data": items,
        "model": req.model,
        "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
    }
    return Completion(orjson.dumps(out), usage)


# ------------------------------------------------------------------------ streaming


class GeminiStreamDecoder:
    """``streamGenerateContent?alt=sse`` → canonical ``chat.completion.chunk`` dicts."""

    __slots__ = (
        "_created",
        "_finished",
        "_id",
        "_parser",
        "_provider",
        "_req",
        "_started",
        "_tools",
        "_wrote",
        "generated",
        "usage",
    )

    def __init__(self, req: GatewayRequest, provider: str = "gemini") -> None:
        self._parser = SSEParser()
        self._req = req
        self._provider = provider
        self._id: str | None = None
        self._created = int(time.time())
        self._started: set[int] = set()
        self._tools: dict[int, int] = {}  # candidate index -> tool calls so far
        self._wrote: set[int] = set()  # candidates that wrote text or calls
        self._finished = False
        self.generated = Generated()  # what was decoded, for an estimate if the stream is cut
        # Gemini repeats usageMetadata in chunks (the prompt count at least); the last is final.
        self.usage: Usage | None = None

    @property
    def completed(self) -> bool:
        return self._finished

    def partial_usage(self, in_flight: bool) -> Usage:
        if self._finished and self.usage is not None:
            return self.usage
        return stream_usage(self._req.body, self.usage, self.generated, in_flight)

    def _chunk(self, choices: list[JSON]) -> Chunk:
        obj: JSON = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._req.model,
            "choices": choices,
        }
        return Chunk(obj)

    def feed(self, data: bytes) -> list[Chunk]:
        out: list[Chunk] = []
        try:
            for ev in self._parser.feed(data):
                self._event(ev.data, out)
        finally:
            for chunk in out:
                self.generated.add(chunk.obj)
        return out

    def _event(self, data: bytes, out: list[Chunk]) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"provider {self._provider} sent a malformed stream event"
            ) from None
        if isinstance(obj, list) and len(obj) == 1:
            obj = obj[0]
        if not isinstance(obj, dict):
            raise UpstreamProtocolError(f"provider {self._provider} sent a malformed stream event")
        if isinstance(obj.get("error"), dict):
            raise _google_error(200, {}, obj["error"], self._provider)
        if self._id is None:
            self._id = _completion_id(obj)
        usage = usage_from_gemini(obj.get("usageMetadata"))
        if usage is not None:
            self.usage = usage
        candidates = obj.get("candidates") or []
        blocked = _blocked(obj) if not candidates else None
        if blocked:
            self._start(0, out)
            out.append(
                self._chunk([{"index": 0, "delta": {"refusal": blocked}, "finish_reason": None}])
            )
            out.append(self._chunk([{"index": 0, "delta": {}, "finish_reason": "content_filter"}]))
            self._finished = True
            return
        for i, cand in enumerate(candidates):
            if not isinstance(cand, dict):
                raise UpstreamProtocolError(f"provider {self._provider} sent a malformed candidate")
            self._candidate(int(cand.get("index", i)), cand, out)

    def _start(self, idx: int, out: list[Chunk]) -> None:
        if idx not in self._started:
            self._started.add(idx)
            out.append(
                self._chunk(
                    [
                        {
                            "index": idx,
                            "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None,
                        }
                    ]
                )
            )

    def _candidate(self, idx: int, cand: JSON, out: list[Chunk]) -> None:
        self._start(idx, out)
        text: list[str] = []
        thoughts: list[str] = []
        calls: list[JSON] = []
        for part in (cand.get("content") or {}).get("parts") or ():
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("functionCall"), dict):
                call = _tool_call(part)
                call["index"] = self._tools.get(idx, 0) + len(calls)
                calls.append(call)
            elif isinstance(part.get("text"), str):
                (thoughts if part.get("thought") else text).append(part["text"])
        delta: JSON = {}
        if thoughts:
            delta["reasoning_content"] = "".join(thoughts)
        if text:
            delta["content"] = "".join(text)
        if calls:
            delta["tool_calls"] = [
                {"index": c["index"], "id": c["id"], "type": "function", "function": c["function"]}
                for c in calls
            ]
            self._tools[idx] = self._tools.get(idx, 0) + len(calls)
        if delta:
            choice: JSON = {"index": idx, "delta": delta, "finish_reason": None}
            logprobs = _logprobs(cand)
            if logprobs is not None:
                choice["logprobs"] = logprobs
            out.append(self._chunk([choice]))
        if delta.get("content") or calls:
            self._wrote.add(idx)
        refusal = _filtered(cand.get("finishReason"))
        if refusal and idx not in self._wrote:
            out.append(
                self._chunk([{"index": idx, "delta": {"refusal": refusal}, "finish_reason": None}])
            )
        reason = finish_reason(cand.get("finishReason"), idx in self._tools)
        if reason is not None:
            out.append(self._chunk([{"index": idx, "delta": {}, "finish_reason": reason}]))
            self._finished = True

    def close(self) -> list[Chunk]:
        out: list[Chunk] = []
        for ev in self._parser.flush():
            self._event(ev.data, out)
        for chunk in out:
            self.generated.add(chunk.obj)
        if self.usage is None or not self._finished:
            self.usage = self.partial_usage(in_flight=False)
        if not self._finished:
            raise UpstreamProtocolError(
                f"provider {self._provider} ended the stream before a finish reason"
            )
        if self._req.include_usage:
            if self._id is None:
                self._id = f"chatcmpl-{uuid.uuid4().hex}"
            usage_chunk = self._chunk([])
            usage_chunk.obj["usage"] = self.usage.to_openai()
            out.append(usage_chunk)
        return out
