"""Gemini request translation: an OpenAI chat-completions body → ``GenerateContentRequest``.

Holds :func:`to_gemini` (messages → ``contents``/``systemInstruction``, tools →
``tools``/``toolConfig``, sampling options → ``generationConfig``), guided by the model
family's rules (:mod:`interlock.providers.rules.gemini`): tool parameters and response
schemas go as the client's JSON Schema (``parametersJsonSchema`` / ``responseJsonSchema``)
to families that take it, else through :func:`clean_schema` (the OpenAPI subset Gemini's
``Schema`` accepts); ``reasoning_effort`` / ``thinking`` become ``thinkingConfig``. :data:`SIG_MARK` is also used by :mod:`interlock.providers.gemini` when it
tucks a function call's ``thoughtSignature`` into the OpenAI tool-call id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from interlock.errors import InvalidRequest
from interlock.providers.capabilities import Adjust, ModelRules, normalise_tool_id, rules_for
from interlock.providers.rules.gemini import (
    EFFORT_BUDGET,
    EFFORT_LEVEL,
    MAX_CANDIDATES,
    MAX_LOGPROBS,
    MAX_STOP_SEQUENCES,
    thinking_for,
)
from interlock.types import JSON

# Gemini ``Type`` enum names for JSON Schema type names, and the formats the ``Schema.format``
# docstring lists per type (google-genai 3.6.1): other formats go to the description.
_TYPE = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
_FORMATS = {
    "NUMBER": ("float", "double"),
    "INTEGER": ("int32", "int64"),
    "STRING": ("date-time", "date", "time", "enum"),
}
_COUNTS = frozenset(
    {"maxItems", "minItems", "minProperties", "maxProperties", "minLength", "maxLength"}
)
_MAX_DEPTH = 64
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")

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

# A Gemini 2.5+/3 function call carries a ``thoughtSignature`` that must come back with
# it on the next turn; OpenAI tool calls have nowhere else to keep it than the id.
SIG_MARK = "__thought__"
# The value the Gemini docs give for a function call whose signature is not known (a call
# another model made): "skip_thought_signature_validator".
SKIP_SIGNATURE = "skip_thought_signature_validator"
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


def to_gemini(
    body: JSON,
    rules: ModelRules | None = None,
    adj: Adjust | None = None,
) -> JSON:
    """An OpenAI chat-completions body as a Gemini ``GenerateContentRequest`` for a model
    of family ``rules`` (the catch-all family when none is given). ``body`` is not changed;
    what is dropped or clamped is noted on ``adj``."""
    rules = rules or rules_for("gemini", "")
    adj = adj or Adjust(rules)
    body = dict(body)  # apply_common deletes and clamps top-level keys: never on req.body
    adj.apply_common(rules, body)
    if body.get("parallel_tool_calls") is False:
        # Gemini decides itself how many calls to make (true, the default, is its behaviour)
        adj.drop("parallel_tool_calls", "Gemini has no switch for parallel function calls")
    thinking = thinking_for(rules.family)
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
                fc: JSON = {
                    "name": fn["name"],
                    "args": _args(fn.get("arguments"), f"{param}.tool_calls[{k}]"),
                }
                if call_id:
                    fc["id"] = wire_call_id(call_id, rules)
                part: JSON = {"functionCall": fc}
                sig = _split_signature(call_id)
                if sig:
                    part["thoughtSignature"] = sig
                elif thinking.mode == "level":
                    # Gemini 3 refuses a function call of the conversation without its
                    # signature; calls made by another model carry the documented dummy.
                    part["thoughtSignature"] = SKIP_SIGNATURE
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
            fr: JSON = {"name": name, "response": _tool_response(content)}
            if call_id and call_id in names:
                fr["id"] = wire_call_id(call_id, rules)
            add("user", [{"functionResponse": fr}])
        else:
            raise InvalidRequest(f"unsupported role {role!r}", param=f"{param}.role")

    if not contents:
        raise InvalidRequest(
            "messages must hold at least one user or assistant message with content",
            param="messages",
        )
    out: JSON = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    tools = _tools(body.get("tools"), body.get("functions"), rules, adj)
    if tools:
        out["tools"] = tools
    tool_config = _tool_config(body.get("tool_choice", body.get("function_call")))
    allowed = (tool_config or {}).get("functionCallingConfig", {}).get("allowedFunctionNames")
    declared = {d["name"] for t in tools for d in t["functionDeclarations"]}
    if allowed and tools and not set(allowed) <= declared:
        raise InvalidRequest("tool_choice names a function not in tools", param="tool_choice")
    if tool_config and not tools:
        # Gemini refuses a calling mode with no declarations; without tools the model
        # cannot call any, so "none"/"auto" mean the same and "required" cannot be met.
        if tool_config["functionCallingConfig"]["mode"] == "ANY":
            raise InvalidRequest("tool_choice requires tools", param="tool_choice")
        tool_config = None
    if tool_config:
        out["toolConfig"] = tool_config
    config = _generation_config(body, rules, adj)
    if config:
        out["generationConfig"] = config
    return out


def wire_call_id(call_id: str, rules: ModelRules) -> str:
    """The ``functionCall.id`` / ``functionResponse.id`` sent for an OpenAI tool-call id:
    the id without the tucked-in thought signature, mapped to Gemini's id rule (a stable
    hash where another provider's id does not fit), so a call and its result stay paired."""
    return normalise_tool_id(call_id.split(SIG_MARK, 1)[0] or call_id, rules.tool_id)


# ------------------------------------------------------------------------- schemas


def _inline_refs(schema: Any, defs: Mapping[str, Any], depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise InvalidRequest("schema is nested too deeply (or its $refs loop)", param="tools")
    if isinstance(schema, list):
        return [_inline_refs(v, defs, depth + 1) for v in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        if not isinstance(target, dict):
            raise InvalidRequest(f"schema $ref {ref!r} does not resolve", param="tools")
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _inline_refs(merged, defs, depth + 1)
    return {
        k: _inline_refs(v, defs, depth + 1) if k not in ("enum", "const", "default") else v
        for k, v in schema.items()
        if k not in ("$defs", "definitions")
    }


def clean_schema(schema: Any, adj: Adjust | None = None, where: str = "schema") -> Any:
    """A JSON Schema as Gemini's OpenAPI-subset ``Schema``: ``$ref`` inlined, type names of
    the ``Type`` enum (upper case), ``["integer", "null"]`` / ``anyOf`` with null as
    ``nullable``, ``const`` as a one-value enum, arrays given ``items``, and what the subset
    has no field for (``additionalProperties``, ``exclusiveMinimum``, ``default``, formats it
    does not list for the type) left out. An enum of numbers cannot be written (the subset's
    enum holds strings): it moves to the description, noted on ``adj``."""
    if not isinstance(schema, dict):
        return schema
    defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
    return _subset(_inline_refs(schema, defs), adj, where, 0)


def _subset(schema: Any, adj: Adjust | None, where: str, depth: int) -> Any:
    if not isinstance(schema, dict):
        return {}
    if depth > _MAX_DEPTH:
        raise InvalidRequest("schema is nested too deeply", param="tools")
    out: JSON = {}
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        if len(kinds) == 1:
            out["type"] = _TYPE.get(str(kinds[0]), "STRING")
        elif kinds:
            out["anyOf"] = [_subset({"type": k}, adj, where, depth + 1) for k in kinds]
    elif isinstance(kind, str):
        if kind == "null":
            out["type"] = "NULL"
        else:
            out["type"] = _TYPE.get(kind, _TYPE.get(kind.lower(), "STRING"))
    for key, value in schema.items():
        if (
            key in ("title", "description", "pattern", "example", "propertyOrdering")
            or (key in _COUNTS and isinstance(value, int))
            or (key in ("minimum", "maximum") and isinstance(value, int | float))
        ):
            out[key] = value
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {
                k: _subset(v, adj, f"{where}.{k}", depth + 1) for k, v in value.items()
            }
        elif key == "required" and isinstance(value, list):
            out["required"] = [v for v in value if isinstance(v, str)]
        elif key == "items" and isinstance(value, dict):
            out["items"] = _subset(value, adj, f"{where}[]", depth + 1)
        elif key in ("anyOf", "oneOf") and isinstance(value, list):
            options = [_subset(v, adj, where, depth + 1) for v in value]
            nulls = [o for o in options if o.get("type") == "NULL"]
            options = [o for o in options if o.get("type") != "NULL"]
            if nulls:
                out["nullable"] = True
            if len(options) == 1:
                out.update({k: v for k, v in options[0].items() if k not in out})
            elif options:
                out["anyOf"] = options
        elif key == "allOf" and isinstance(value, list):
            for sub in value:
                merged = _subset(sub, adj, where, depth + 1)
                out.update({k: v for k, v in merged.items() if k not in out})
        elif key == "const":
            out["enum"] = [value]
        elif key == "enum" and isinstance(value, list):
            out["enum"] = list(value)
    if "enum" in out:
        values = out["enum"]
        if "type" not in out:
            out["type"] = "STRING" if all(isinstance(v, str) for v in values) else "NUMBER"
        if out["type"] == "STRING":
            out["enum"] = [str(v) for v in values]
        else:
            del out["enum"]
            listed = ", ".join(orjson.dumps(v).decode() for v in values)
            note = f"One of: {listed}."
            out["description"] = f"{out['description']} {note}" if out.get("description") else note
            if adj is not None:
                adj.note(f"{where}: enum of {out['type'].lower()} values moved to the description")
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS.get(str(out.get("type")), ()):
        out["format"] = fmt
    elif isinstance(fmt, str) and out.get("type") == "STRING":
        note = f"Format: {fmt}."
        out["description"] = f"{out['description']} {note}" if out.get("description") else note
    props = out.get("properties")
    if isinstance(props, dict) and not props:
        del out["properties"]  # Gemini: "properties: should be non-empty for OBJECT type"
    if isinstance(out.get("required"), list):
        # the subset refuses a required name that is not a property
        known = props if isinstance(props, dict) else {}
        out["required"] = [r for r in out["required"] if r in known]
        if not out["required"]:
            del out["required"]
    if out.get("type") == "ARRAY" and "items" not in out:
        out["items"] = {"type": "STRING"}
        if adj is not None:
            adj.note(f"{where}: array without items sent as an array of strings")
    return out


def _json_schema(schema: JSON) -> JSON:
    """A client's JSON Schema as ``parametersJsonSchema`` / ``responseJsonSchema`` take it:
    as written (``$defs``/``$ref``, integer enums, formats, ``additionalProperties`` are
    all JSON Schema), less the ``$schema`` dialect marker (Gemini reads 2020-12 keywords)."""
    return {k: v for k, v in schema.items() if k != "$schema"}


def _parameters(schema: Any, rules: ModelRules, adj: Adjust, where: str) -> tuple[str, JSON] | None:
    if not isinstance(schema, dict) or not schema:
        return None
    props = schema.get("properties")
    if schema.get("type", "object") == "object" and not props and "$ref" not in schema:
        return None  # a function without parameters: Gemini rejects an empty OBJECT
    if rules.tool_schema == "json-schema":
        return "parametersJsonSchema", _json_schema(schema)
    return "parameters", clean_schema(schema, adj, where)


def _tools(tools: Any, functions: Any, rules: ModelRules, adj: Adjust) -> list[JSON]:
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
        if _FUNCTION_NAME.fullmatch(fn["name"]) is None:
            raise InvalidRequest(
                "a Gemini function name starts with a letter or '_' and holds up to 128 of "
                "a-z A-Z 0-9 _ . : -",
                param=f"tools[{i}].function.name",
                code="invalid_tool_name",
            )
        decl: JSON = {"name": fn["name"]}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = _parameters(fn.get("parameters"), rules, adj, f"tools[{i}].function.parameters")
        if params is not None:
            decl[params[0]] = params[1]
        if fn.get("strict") and not rules.tool_strict:
            adj.drop(
                f"tools[{i}].function.strict",
                "Gemini has no strict function calling (the schema is still sent)",
            )
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


# ----------------------------------------------------------------- generation config


def _generation_config(body: JSON, rules: ModelRules, adj: Adjust) -> JSON:
    config: JSON = {}
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
            raise InvalidRequest(f"{param} must be a positive integer", param=param)
        config["maxOutputTokens"] = max_tokens
    for src, dst in (("temperature", "temperature"), ("top_p", "topP")):
        if body.get(src) is not None:
            config[dst] = body[src]
    seed = body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        # Gemini's seed is an int32; OpenAI's an int64: a larger seed is folded (stably).
        if not -(2**31) <= seed < 2**31:
            folded = seed & 0x7FFFFFFF
            adj.note(f"seed folded to {folded} (Gemini seeds are 32-bit)")
            seed = folded
        config["seed"] = seed
    # A zero penalty is the default: not sent (some models refuse the field outright).
    for src, dst in (
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(src):
            config[dst] = body[src]
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    stops = [s for s in stops if isinstance(s, str) and s]  # an empty sequence stops nothing
    if len(stops) > MAX_STOP_SEQUENCES:
        raise adj.refuse("stop", f"Gemini takes at most {MAX_STOP_SEQUENCES} stop sequences")
    if stops:
        config["stopSequences"] = stops
    n = body.get("n")
    if isinstance(n, int) and n != 1:
        if n < 1:
            raise InvalidRequest("n must be at least 1", param="n")
        if n > MAX_CANDIDATES:
            raise adj.refuse("n", f"Gemini writes at most {MAX_CANDIDATES} candidates")
        config["candidateCount"] = n
    _response_format(body.get("response_format"), config, rules, adj)
    _thinking(body, config, rules, adj)
    if body.get("logprobs"):
        config["responseLogprobs"] = True
        top = body.get("top_logprobs")
        if isinstance(top, int) and top > 0:
            config["logprobs"] = min(top, MAX_LOGPROBS)
    return config


def _response_format(fmt: Any, config: JSON, rules: ModelRules, adj: Adjust) -> None:
    if not isinstance(fmt, dict):
        return
    kind = fmt.get("type")
    if kind in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
    if kind != "json_schema":
        return
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        return
    if rules.tool_schema == "json-schema":
        config["responseJsonSchema"] = _json_schema(schema)
    else:
        config["responseSchema"] = clean_schema(schema, adj, "response_format.json_schema")


def _thinking(body: JSON, config: JSON, rules: ModelRules, adj: Adjust) -> None:
    effort = body.get("reasoning_effort")
    ext = body.get("thinking")
    if effort is None and not isinstance(ext, dict):
        return
    spec = thinking_for(rules.family)
    param = "reasoning_effort" if effort is not None else "thinking"
    if spec.mode == "none":
        adj.drop(param, f"{rules.family} models do not think")
        return
    if isinstance(ext, dict) and effort is None:
        if ext.get("type") == "disabled":
            budget = 0
        elif ext.get("type") == "enabled" and isinstance(ext.get("budget_tokens"), int):
            budget = int(ext["budget_tokens"])
        else:
            raise InvalidRequest(
                "thinking must be {'type': 'enabled', 'budget_tokens': N} or {'type': 'disabled'}",
                param="thinking",
            )
    elif effort == "none" or (isinstance(effort, str) and effort in EFFORT_BUDGET):
        budget = 0 if effort == "none" else EFFORT_BUDGET[str(effort)]
    else:
        raise InvalidRequest(
            "reasoning_effort must be one of none, minimal, low, medium, high, xhigh",
            param="reasoning_effort",
        )
    # The canonical thinking extension asks for the thinking itself (Anthropic-style
    # clients show it): Gemini writes thought summaries only with includeThoughts.
    include = param == "thinking" and budget != 0
    if spec.mode == "level":
        level = _level_for(effort if isinstance(effort, str) else None, budget, spec.levels)
        if budget == 0:
            adj.note(f"{param}: {rules.family} models always think; sent thinkingLevel {level}")
        config["thinkingConfig"] = {"thinkingLevel": level}
        if include:
            config["thinkingConfig"]["includeThoughts"] = True
        return
    if budget == 0 and not spec.can_disable:
        adj.note(f"{param}: {rules.family} models always think; sent the lowest budget")
        budget = spec.low
    elif budget != 0 and not spec.low <= budget <= spec.high:
        clamped = min(max(budget, spec.low), spec.high)
        adj.note(f"{param}: thinking budget {budget} clamped to {clamped} ({rules.family})")
        budget = clamped
    config["thinkingConfig"] = {"thinkingBudget": budget}
    if include and budget != 0:
        config["thinkingConfig"]["includeThoughts"] = True


def _level_for(effort: str | None, budget: int, levels: tuple[str, ...]) -> str:
    if effort is not None and effort != "none":
        wanted = EFFORT_LEVEL[effort]
    elif budget <= 0:
        wanted = "MINIMAL"
    elif budget <= 1024:
        wanted = "LOW"
    elif budget <= 8192:
        wanted = "MEDIUM"
    else:
        wanted = "HIGH"
    if wanted in levels:
        return wanted
    order = ("MINIMAL", "LOW", "MEDIUM", "HIGH")
    rank = order.index(wanted)
    # the nearest level the family has, rounding up (more thinking, not less)
    for candidate in (*order[rank:], *reversed(order[:rank])):
        if candidate in levels:
            return candidate
    return levels[-1]
