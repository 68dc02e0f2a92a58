"""Gemini request translation: an OpenAI chat-completions body → ``GenerateContentRequest``.

Holds :func:`to_gemini` (messages → ``contents``/``systemInstruction``, tools →
``tools``/``toolConfig``, sampling options → ``generationConfig``), :func:`clean_schema`
(JSON Schema reduced to the OpenAPI subset Gemini's ``Schema`` accepts) and the helpers
they share. :data:`SIG_MARK` is also used by :mod:`interlock.providers.gemini` when it
tucks a function call's ``thoughtSignature`` into the OpenAI tool-call id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from interlock.errors import InvalidRequest
from interlock.types import JSON

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
SIG_MARK = "__thought__"
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*?;base64,(.*)$", re.DOTALL)


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
    if SIG_MARK in call_id:
        return call_id.split(SIG_MARK, 1)[1] or None
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
