"""Google Gemini wire format: the Gemini API (``generativelanguage``) and Vertex AI.

Both speak ``GenerateContentRequest``/``GenerateContentResponse``; they differ only in
the URL and in how the caller authenticates (an ``x-goog-api-key`` header carried in
``Target.headers`` for the Gemini API, an OAuth bearer token applied by
:class:`interlock.providers.google_auth.GoogleServiceAccountAuth` for Vertex).

Gemini streams have no terminator event: a stream is complete once a chunk carrying a
``finishReason`` has been seen and the input ends.
"""

from __future__ import annotations

import base64
import re
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
from interlock.providers.sse import SSEParser
from interlock.providers.tokens import estimate_request_tokens, estimate_tokens
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

# The OpenAPI subset of JSON Schema that Gemini's ``Schema`` accepts; everything else
# (additionalProperties, $schema, strict, ...) makes it reject the whole request.
# fmt: off
_SCHEMA_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "example", "anyOf", "propertyOrdering", "items", "minimum", "maximum",
})
# fmt: on

_MIME_BY_EXT = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "pdf": "application/pdf",
    "mp3": "audio/mp3",
    "wav": "audio/wav",
    "mp4": "video/mp4",
}

_THINKING_BUDGET = {"none": 0, "minimal": 0, "low": 1024, "medium": 8192, "high": 24576}

# A Gemini 2.5+/3 function call carries a ``thoughtSignature`` that must come back with
# it on the next turn; OpenAI tool calls have nowhere else to keep it than the id.
_SIG_MARK = "__thought__"
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*?;base64,(.*)$", re.DOTALL)


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
                body = _vertex_embed_body(req.body)
                return UpstreamCall("POST", self.url(target, "predict"), headers, body)
            body = _embed_body(req.body, target.model)
            return UpstreamCall("POST", self.url(target, "batchEmbedContents"), headers, body)
        if req.endpoint != Endpoint.CHAT:
            raise InvalidRequest(
                f"{req.endpoint.value} is not supported by Gemini models",
                code="unsupported_endpoint",
            )
        body = orjson.dumps(to_gemini(req.body))
        if req.stream:
            headers["accept"] = "text/event-stream"
            url = self.url(target, "streamGenerateContent") + "?alt=sse"
            return UpstreamCall("POST", url, headers, body, True)
        return UpstreamCall("POST", self.url(target, "generateContent"), headers, body)

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
            choices = [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ""},
                    "finish_reason": "content_filter" if _blocked(data) else "stop",
                    "logprobs": None,
                }
            ]
        if usage is None:
            text = sum(
                estimate_tokens(c["message"].get("content") or "")
                + sum(
                    estimate_tokens(tc["function"]["arguments"])
                    for tc in c["message"].get("tool_calls") or ()
                )
                for c in choices
            )
            usage = Usage(estimate_request_tokens(req.body), text, estimated=True)
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


# ------------------------------------------------------------------- request building


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") if isinstance(p, dict) else str(p)
            for p in content
            if isinstance(p, str) or (isinstance(p, dict) and isinstance(p.get("text"), str))
        )
    return ""


def _mime_guess(url: str, default: str = "image/jpeg") -> str:
    path = url.split("?", 1)[0].split("#", 1)[0]
    ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    return _MIME_BY_EXT.get(ext, default)


def _media_part(url: str, param: str, default_mime: str = "image/jpeg") -> JSON:
    if url.startswith("data:"):
        m = _DATA_URL.match(url)
        if m is None:
            raise InvalidRequest("only base64 data URLs are supported", param=param)
        return {"inlineData": {"mimeType": m.group(1) or default_mime, "data": m.group(2)}}
    if url.startswith(("http://", "https://", "gs://")):
        return {"fileData": {"mimeType": _mime_guess(url, default_mime), "fileUri": url}}
    raise InvalidRequest("unsupported media URL", param=param)


def _user_parts(content: Any, param: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []  # Gemini rejects empty text parts
    if not isinstance(content, list):
        raise InvalidRequest("content must be a string or a list of parts", param=param)
    parts: list[JSON] = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        if isinstance(part, str):
            parts.append({"text": part})
            continue
        if not isinstance(part, dict):
            raise InvalidRequest("content part must be an object", param=p)
        kind = part.get("type")
        if kind == "text" or (kind is None and "text" in part):
            parts.append({"text": str(part.get("text", ""))})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise InvalidRequest("image_url.url must be a string", param=p)
            parts.append(_media_part(url, p))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            fmt = str(audio.get("format") or "wav")
            parts.append(
                {"inlineData": {"mimeType": f"audio/{fmt}", "data": audio.get("data", "")}}
            )
        elif kind == "file":
            file = part.get("file") or {}
            data = file.get("file_data")
            if not isinstance(data, str):
                raise InvalidRequest("only inline file_data is supported", param=p)
            parts.append(_media_part(data, p, "application/pdf"))
        else:
            raise InvalidRequest(f"unsupported content part type {kind!r}", param=p)
    return parts


def _split_signature(call_id: str) -> str | None:
    if _SIG_MARK in call_id:
        return call_id.split(_SIG_MARK, 1)[1] or None
    return None


def _args(raw: Any, param: str) -> Any:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        raise InvalidRequest("tool call arguments must be JSON", param=param) from None
    return value if isinstance(value, dict) else {"value": value}


def _tool_response(content: Any) -> JSON:
    text = _text_of(content)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {"content": text}
    return value if isinstance(value, dict) else {"content": value}


def to_gemini(body: JSON) -> JSON:
    """An OpenAI chat-completions body as a Gemini ``GenerateContentRequest``."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    system: list[JSON] = []
    contents: list[JSON] = []
    names: dict[str, str] = {}

    def add(role: str, parts: list[JSON]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

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
            add("user", _user_parts(content, f"{param}.content"))
        elif role == "assistant":
            parts: list[JSON] = []
            text = _text_of(content)
            if text:
                parts.append({"text": text})
            for k, call in enumerate(msg.get("tool_calls") or ()):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                    raise InvalidRequest(
                        "tool call needs a function name", param=f"{param}.tool_calls[{k}]"
                    )
                call_id = str(call.get("id") or "")
                names[call_id] = fn["name"]
                part: JSON = {
                    "functionCall": {
                        "name": fn["name"],
                        "args": _args(fn.get("arguments"), f"{param}.tool_calls[{k}]"),
                    }
                }
                sig = _split_signature(call_id)
                if sig:
                    part["thoughtSignature"] = sig
                parts.append(part)
            legacy = msg.get("function_call")
            if isinstance(legacy, dict) and isinstance(legacy.get("name"), str):
                parts.append(
                    {
                        "functionCall": {
                            "name": legacy["name"],
                            "args": _args(legacy.get("arguments"), f"{param}.function_call"),
                        }
                    }
                )
            add("model", parts)
        elif role in ("tool", "function"):
            call_id = str(msg.get("tool_call_id") or "")
            name = names.get(call_id) or msg.get("name")
            if not isinstance(name, str) or not name:
                raise InvalidRequest(
                    "tool message does not answer a known tool call", param=f"{param}.tool_call_id"
                )
            add("user", [{"functionResponse": {"name": name, "response": _tool_response(content)}}])
        else:
            raise InvalidRequest(f"unsupported role {role!r}", param=f"{param}.role")

    out: JSON = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = _tools(body.get("tools"), body.get("functions"))
    if tools:
        out["tools"] = tools
    tool_config = _tool_config(body.get("tool_choice", body.get("function_call")))
    if tool_config:
        out["toolConfig"] = tool_config
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    return out


def clean_schema(schema: Any, defs: Mapping[str, Any] | None = None, depth: int = 0) -> Any:
    """A JSON Schema reduced to what Gemini accepts (``$ref`` inlined, unions folded)."""
    if not isinstance(schema, dict) or depth > 32:
        return schema
    if defs is None:
        defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        merged = {**(target if isinstance(target, dict) else {}), **schema}
        merged.pop("$ref", None)
        return clean_schema(merged, defs, depth + 1)
    out: JSON = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        if len(kinds) == 1:
            out["type"] = kinds[0]
        elif kinds:
            out["anyOf"] = [{"type": k} for k in kinds]
    elif kind is not None:
        out["type"] = kind
    for key, value in schema.items():
        if key == "type" or (key not in _SCHEMA_KEYS and key not in ("oneOf", "const", "allOf")):
            continue
        if key == "properties" and isinstance(value, dict):
            out["properties"] = {k: clean_schema(v, defs, depth + 1) for k, v in value.items()}
        elif key == "items":
            out["items"] = clean_schema(value, defs, depth + 1)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            options = [clean_schema(v, defs, depth + 1) for v in value]
            nulls = [o for o in options if isinstance(o, dict) and o.get("type") == "null"]
            options = [o for o in options if o not in nulls]
            if nulls:
                out["nullable"] = True
            if len(options) == 1 and isinstance(options[0], dict):
                out.update({k: v for k, v in options[0].items() if k not in out})
            elif options:
                out["anyOf"] = options
        elif key == "allOf" and isinstance(value, list):
            for sub in value:
                cleaned = clean_schema(sub, defs, depth + 1)
                if isinstance(cleaned, dict):
                    out.update({k: v for k, v in cleaned.items() if k not in out})
        elif key == "const":
            out["enum"] = [value]
        elif (
            key == "format"
            and out.get("type", kind) == "string"
            and value
            not in (
                "enum",
                "date-time",
            )
        ):
            continue  # Gemini accepts only "enum" and "date-time" for strings
        else:
            out[key] = value
    if isinstance(out.get("enum"), list) and "type" not in out:
        out["type"] = "string"
    if "enum" in out and out.get("type") == "string":
        out["enum"] = [str(v) for v in out["enum"]]
    return out


def _parameters(schema: Any) -> JSON | None:
    cleaned = clean_schema(schema)
    if not isinstance(cleaned, dict) or not cleaned:
        return None
    if cleaned.get("type") == "object" and not cleaned.get("properties"):
        return None  # Gemini rejects an OBJECT schema with no properties
    return cleaned


def _tools(tools: Any, functions: Any) -> list[JSON]:
    decls: list[JSON] = []
    specs: list[Any] = []
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type", "function") != "function":
                raise InvalidRequest("only function tools are supported", param=f"tools[{i}]")
            specs.append(tool.get("function"))
    if isinstance(functions, list):
        specs.extend(functions)
    for i, fn in enumerate(specs):
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest("tool needs a function name", param=f"tools[{i}].function")
        decl: JSON = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = _parameters(fn.get("parameters"))
        if params is not None:
            decl["parameters"] = params
        decls.append(decl)
    return [{"functionDeclarations": decls}] if decls else []


def _tool_config(choice: Any) -> JSON | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"functionCallingConfig": {"mode": "AUTO"}}
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if choice in ("required", "any"):
        return {"functionCallingConfig": {"mode": "ANY"}}
    if isinstance(choice, dict):
        fn = choice.get("function") if "function" in choice else choice
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str):
            return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}
    raise InvalidRequest("unsupported tool_choice", param="tool_choice")


def _generation_config(body: JSON) -> JSON:
    config: JSON = {}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed")):
        if body.get(src) is not None:
            config[dst] = body[src]
    # Some Gemini models refuse penalties outright; a zero penalty is the default anyway.
    for src, dst in (
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(src):
            config[dst] = body[src]
    stop = body.get("stop")
    if isinstance(stop, str):
        config["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        config["stopSequences"] = stop
    n = body.get("n")
    if isinstance(n, int) and n != 1:
        config["candidateCount"] = n
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        kind = fmt.get("type")
        if kind in ("json_object", "json_schema"):
            config["responseMimeType"] = "application/json"
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if isinstance(schema, dict):
                config["responseSchema"] = clean_schema(schema)
    effort = body.get("reasoning_effort")
    if isinstance(effort, str) and effort in _THINKING_BUDGET:
        # The budgets Google's own OpenAI-compatible endpoint uses for these efforts.
        config["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGET[effort]}
    if body.get("logprobs"):
        config["responseLogprobs"] = True
        top = body.get("top_logprobs")
        if isinstance(top, int) and top > 0:
            config["logprobs"] = top
    return config


# ----------------------------------------------------------------- response parsing


def _blocked(data: JSON) -> bool:
    feedback = data.get("promptFeedback")
    return isinstance(feedback, dict) and bool(feedback.get("blockReason"))


def _completion_id(data: JSON) -> str:
    rid = data.get("responseId")
    return f"chatcmpl-{rid}" if isinstance(rid, str) and rid else f"chatcmpl-{uuid.uuid4().hex}"


def _call_id(part: JSON) -> str:
    call_id = f"call_{uuid.uuid4().hex[:24]}"
    sig = part.get("thoughtSignature")
    return f"{call_id}{_SIG_MARK}{sig}" if isinstance(sig, str) and sig else call_id


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
    message: JSON = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    return {
        "index": cand.get("index", i),
        "message": message,
        "finish_reason": finish_reason(cand.get("finishReason"), bool(calls)) or "stop",
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


def _embed_inputs(body: JSON) -> list[str]:
    value = body.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
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


def _vertex_embed_body(body: JSON) -> bytes:
    out: JSON = {"instances": [{"content": t} for t in _embed_inputs(body)]}
    dims = body.get("dimensions")
    if isinstance(dims, int):
        out["parameters"] = {"outputDimensionality": dims}
    return orjson.dumps(out)


def _parse_embeddings(req: GatewayRequest, data: JSON, vertex: bool) -> Completion:
    vectors: list[list[float]] = []
    tokens = 0
    if vertex:
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
        else Usage(sum(estimate_tokens(t) for t in inputs), 0, estimated=True)
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
        "_chars",
        "_created",
        "_finished",
        "_id",
        "_parser",
        "_provider",
        "_req",
        "_started",
        "_tools",
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
        self._finished = False
        self._chars = 0
        self.usage: Usage | None = None

    @property
    def completed(self) -> bool:
        return self._finished

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
        for ev in self._parser.feed(data):
            self._event(ev.data, out)
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
        if not candidates and _blocked(obj):
            self._start(0, out)
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
                self._chars += len(call["function"]["arguments"])
            elif isinstance(part.get("text"), str):
                (thoughts if part.get("thought") else text).append(part["text"])
        delta: JSON = {}
        if thoughts:
            delta["reasoning_content"] = "".join(thoughts)
        if text:
            delta["content"] = "".join(text)
            self._chars += len(delta["content"])
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
        reason = finish_reason(cand.get("finishReason"), idx in self._tools)
        if reason is not None:
            out.append(self._chunk([{"index": idx, "delta": {}, "finish_reason": reason}]))
            self._finished = True

    def close(self) -> list[Chunk]:
        out: list[Chunk] = []
        for ev in self._parser.flush():
            self._event(ev.data, out)
        if self.usage is None or (not self._finished and not self.usage.completion_tokens):
            prompt = (
                self.usage.prompt_tokens if self.usage else estimate_request_tokens(self._req.body)
            )
            self.usage = Usage(prompt, (self._chars + 3) // 4, estimated=True)
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
