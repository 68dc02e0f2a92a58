"""Validation against what Anthropic publishes: the official ``anthropic`` Python SDK's
types (the version installed; written against 2.17.0) and the Messages API rules its
documentation states.

Requests: the SDK's ``MessageCreateParamsBase`` TypedDict, turned into a JSON Schema with
pydantic and closed (every object that names its properties refuses others, as the API
does: ``"extra inputs are not permitted"``), plus ``stream``. Where a family still takes
the sampling parameters the current SDK no longer lists (``temperature``, ``top_p``,
``top_k``: older Claude families, see ``providers/rules/anthropic.py``), they are added
with the SDK 0.x types and the API's ranges. On top of the schema, the rules the API
enforces that a type cannot say (:func:`request_issues`): thinking budgets, the family's
thinking / effort / structured-output / strict-tool support, pairs it refuses together,
tool-use ids and their pairing with tool results, cache breakpoints.

Answers: ``anthropic.types.Message``, ``RawMessageStreamEvent`` (plus ``ping`` and the
``error`` event) and ``ErrorResponse``, validated with pydantic (:func:`answer_issues`,
:func:`event_issues`, :func:`error_issues`).

The simulated provider (``sim/formats/anthropic.py``) refuses a request with issues the
way Anthropic does (400 ``invalid_request_error``); tests/conformance/test_anthropic.py
uses the same functions on the adapter's outbound requests.
"""

from __future__ import annotations

import re
import threading
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs
import orjson

from interlock.providers.capabilities import rules_for
from interlock.providers.rules.anthropic import MIN_BUDGET, claude_for, max_output

__all__ = [
    "SDK_VERSION",
    "answer_issues",
    "count_issues",
    "error_issues",
    "event_issues",
    "request_issues",
    "vendored_schema",
]

JSON = dict[str, Any]
_lock = threading.Lock()

# What the SDK 0.x MessageCreateParams said of the sampling parameters (temperature and
# top_p as floats, top_k as an int), with the API's ranges.
_LEGACY_SAMPLING: JSON = {
    "temperature": {"type": "number", "minimum": 0, "maximum": 1},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "top_k": {"type": "integer", "minimum": 0},
}
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
MAX_CACHE_BREAKPOINTS = 4  # "A maximum of 4 blocks with cache_control may be provided"
# Keywords structured output and strict tools do not take (Anthropic's structured-outputs
# docs; the SDK's transform_schema moves them into the description).
_STRICT_UNSUPPORTED = frozenset(
    {
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minLength",
        "maxLength",
        "minProperties",
        "maxProperties",
        "maxItems",
        "uniqueItems",
    }
)
_STRICT_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)


SDK_VERSION = "2.17.0"  # the SDK the vendored schema was generated from


# Request objects that are open on purpose: a tool's input_schema is a JSON Schema.
_OPEN = frozenset({"InputSchemaTyped"})


def _close(node: Any) -> None:
    """additionalProperties: false on every object schema that lists its properties
    (pydantic leaves TypedDicts unsaid and the SDK's response models, which a request may
    carry back, open; the API refuses unknown keys: "Extra inputs are not permitted")."""
    if isinstance(node, dict):
        if "properties" in node and node.get("title") not in _OPEN:
            node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)


SCHEMA_FILE = "message_create_params.json"  # sim/specs/anthropic (see its ORIGIN.md)
COUNT_SCHEMA_FILE = "message_count_tokens_params.json"  # POST /v1/messages/count_tokens

# Which request schema: /v1/messages without or with the legacy sampling parameters, or
# /v1/messages/count_tokens.
Variant = str  # "create" | "create+sampling" | "count"


def vendored_schema(name: str = SCHEMA_FILE) -> JSON:
    """One of the SDK's request types as JSON Schema, as vendored (unmodified)."""
    ref = resources.files("interlock.sim") / "specs" / "anthropic" / name
    data: JSON = orjson.loads(ref.read_bytes())
    return data


@cache
def _schema(variant: Variant) -> JSON:
    with _lock:
        schema = vendored_schema(COUNT_SCHEMA_FILE if variant == "count" else SCHEMA_FILE)
    if variant != "count":
        schema["properties"]["stream"] = {"type": "boolean"}
        schema["properties"]["max_tokens"]["minimum"] = 0
    if variant == "create+sampling":
        schema["properties"].update(_LEGACY_SAMPLING)
    _close(schema)
    return schema


@cache
def _validator(variant: Variant, node: str | None = None) -> Any:
    """The whole request's validator, or one for a schema ``node`` (JSON text) inside it."""
    schema = _schema(variant)
    if node is None:
        return jsonschema_rs.Draft202012Validator(schema)
    return jsonschema_rs.Draft202012Validator({**orjson.loads(node), "$defs": schema["$defs"]})


def _path(parts: Any) -> str:
    return ".".join(str(p) for p in parts)


def _schema_issues(instance: Any, legacy: Variant, ref: str | None, prefix: list[Any]) -> list[str]:
    """Schema errors; an ``anyOf`` over block / message types is narrowed to the branch
    the instance's ``type`` (or ``role``) names, so the message says what is wrong."""
    validator = _validator(legacy, ref)
    if validator.is_valid(instance):  # fast; iter_errors walks every anyOf branch
        return []
    out: list[str] = []
    schema = _schema(legacy)
    root: JSON = schema if ref is None else {**orjson.loads(ref), "$defs": schema["$defs"]}
    for err in validator.iter_errors(instance):
        where = [*prefix, *err.instance_path]
        branch = _branch(err, root, schema["$defs"])
        if branch is not None:
            out.extend(_schema_issues(_at(instance, err.instance_path), legacy, branch, where))
            continue
        kind = err.kind.as_dict() if hasattr(err.kind, "as_dict") else {}
        unexpected = kind.get("unexpected") if isinstance(kind, dict) else None
        if isinstance(unexpected, list) and unexpected:
            # Anthropic's (pydantic's) wording for an unknown key.
            out.extend(f"{_path([*where, k])}: Extra inputs are not permitted" for k in unexpected)
            continue
        out.append(f"{_path(where) or 'body'}: {err.message}")
    return out


def _at(instance: Any, path: Any) -> Any:
    for part in path:
        instance = instance[part]
    return instance


def _walk(root: JSON, path: Any, defs: JSON) -> Any:
    node: Any = root
    for part in path:
        if part == "$ref" and isinstance(node, dict) and isinstance(node.get("$ref"), str):
            node = defs.get(node["$ref"].rsplit("/", 1)[-1], {})
        elif isinstance(node, dict):
            node = node.get(part, {})
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return None
    return node


def _branch(err: Any, root: JSON, defs: JSON) -> str | None:
    """The anyOf branch (as JSON text) the failing instance means: the array branch for a
    list, the one its discriminator (``type``, else ``role``) names for an object."""
    instance = err.instance
    path = list(err.schema_path)
    if not path or path[-1] != "anyOf":
        return None
    options = _walk(root, path, defs)
    if not isinstance(options, list):
        return None
    if isinstance(instance, list):
        arrays = [o for o in options if isinstance(o, dict) and o.get("type") == "array"]
        return orjson.dumps(arrays[0]).decode() if len(arrays) == 1 else None
    if not isinstance(instance, dict):
        return None
    for key in ("type", "role"):
        value = instance.get(key)
        if not isinstance(value, str):
            continue
        for option in options:
            ref = option.get("$ref") if isinstance(option, dict) else None
            target = defs.get(ref.rsplit("/", 1)[-1]) if isinstance(ref, str) else None
            prop = (target or {}).get("properties", {}).get(key, {})
            if prop.get("const") == value or value in (prop.get("enum") or ()):
                return orjson.dumps({"$ref": ref}).decode()
    return None


def request_issues(body: Any) -> list[str]:
    """Every way ``body`` (a ``POST /v1/messages`` body) breaks what Anthropic publishes,
    as ``path: message`` strings (empty: the API would take it)."""
    if not isinstance(body, dict):
        return ["body: Input should be an object"]
    model = body.get("model")
    rules = rules_for("anthropic", model if isinstance(model, str) else "")
    claude = claude_for(rules)
    variant = "create" if claude.sampling == "none" else "create+sampling"
    issues = _schema_issues(body, variant, None, [])
    if issues:
        return issues
    family = rules.family
    max_tokens = body["max_tokens"]
    limit = max_output(body["model"])
    if max_tokens > limit:
        issues.append(
            f"max_tokens: {max_tokens} > {limit}, which is the maximum allowed number of "
            f"output tokens for {body['model']}"
        )
    thinking = body.get("thinking")
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    thinks = kind in ("enabled", "adaptive", "between_tools")
    if kind == "enabled":
        budget = thinking["budget_tokens"] if isinstance(thinking, dict) else 0
        if budget < MIN_BUDGET:
            issues.append(f"thinking.enabled.budget_tokens: Input should be >= {MIN_BUDGET}")
        if budget >= max_tokens:
            issues.append("max_tokens: must be greater than thinking.budget_tokens")
    if thinks and claude.thinking == "none":
        issues.append(f"thinking: {family} models do not support thinking")
    if kind == "enabled" and claude.thinking == "adaptive_only":
        issues.append(f'thinking.type.enabled: not supported by {family} models; use "adaptive"')
    if kind == "adaptive" and claude.thinking in ("none", "budget"):
        issues.append(f"thinking.type.adaptive: not supported by {family} models")
    config = body.get("output_config") or {}
    effort = config.get("effort")
    if effort is not None and effort not in claude.efforts:
        issues.append(f"output_config.effort: {effort!r} is not supported by {family} models")
    fmt = config.get("format")
    if fmt is not None:
        if rules.structured_output != "native":
            issues.append(f"output_config.format: {family} models have no structured output")
        else:
            issues.extend(_strict_schema_issues(fmt["schema"], "output_config.format.schema"))
    if claude.sampling == "one" and "temperature" in body and "top_p" in body:
        issues.append(
            "temperature and top_p cannot both be specified for this model. Please use only one."
        )
    if thinks:
        if body.get("temperature", 1) != 1:
            issues.append("temperature: may only be set to 1 when thinking is enabled")
        if "top_k" in body:
            issues.append("top_k: not compatible with thinking")
        top_p = body.get("top_p")
        if top_p is not None and not 0.95 <= top_p <= 1:
            issues.append("top_p: must be between 0.95 and 1 when thinking is enabled")
        choice = (body.get("tool_choice") or {}).get("type")
        if choice in ("any", "tool"):
            issues.append("Thinking may not be enabled when tool_choice forces tool use.")
        issues.extend(_thinking_loop_issues(body["messages"]))
    for i, stop in enumerate(body.get("stop_sequences") or ()):
        if not stop.strip():
            issues.append(f"stop_sequences.{i}: each stop sequence must contain non-whitespace")
    issues.extend(_tool_issues(body, rules.tool_strict, family))
    issues.extend(_message_issues(body["messages"]))
    issues.extend(_cache_issues(body))
    return issues


def count_issues(body: Any) -> list[str]:
    """What ``POST /v1/messages/count_tokens`` refuses in ``body`` (the SDK's
    ``MessageCountTokensParams``, closed; tool ids and pairing; cache breakpoints)."""
    if not isinstance(body, dict):
        return ["body: Input should be an object"]
    issues = _schema_issues(body, "count", None, [])
    if issues:
        return issues
    model = body["model"]
    rules = rules_for("anthropic", model if isinstance(model, str) else "")
    issues.extend(_tool_issues(body, rules.tool_strict, rules.family))
    issues.extend(_message_issues(body["messages"]))
    issues.extend(_cache_issues(body))
    return issues


def _thinking_loop_issues(messages: list[JSON]) -> list[str]:
    """With thinking on, the assistant turn of the current tool loop (the last message
    answers its tool calls) must start with a thinking block."""
    if len(messages) < 2:
        return []
    last, previous = _blocks(messages[-1]), _blocks(messages[-2])
    if not any(b.get("type") == "tool_result" for b in last):
        return []
    if not any(b.get("type") == "tool_use" for b in previous):
        return []
    if previous[0].get("type") in ("thinking", "redacted_thinking"):
        return []
    return [
        f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or "
        f"`redacted_thinking`, but found `{previous[0].get('type')}`. When `thinking` is "
        f"enabled, a final `assistant` message must start with a thinking block."
    ]


def _tool_issues(body: JSON, strict_ok: bool, family: str) -> list[str]:
    out: list[str] = []
    names: set[str] = set()
    for i, tool in enumerate(body.get("tools") or ()):
        if tool.get("type") not in (None, "custom") or "input_schema" not in tool:
            continue  # server tools: their own shapes, checked by the schema
        names.add(tool["name"])
        schema = tool["input_schema"]
        if schema.get("type") != "object":
            out.append(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
        if tool.get("strict"):
            if not strict_ok:
                out.append(f"tools.{i}.custom.strict: not supported by {family} models")
            else:
                out.extend(_strict_schema_issues(schema, f"tools.{i}.custom.input_schema"))
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool" and choice.get("name") not in names:
        out.append(f"tool_choice.name: tool {choice.get('name')!r} not found in tools")
    return out


def _strict_schema_issues(schema: Any, path: str) -> list[str]:
    """What structured output / strict tools refuse in a JSON Schema."""
    out: list[str] = []
    if isinstance(schema, list):
        for i, item in enumerate(schema):
            out.extend(_strict_schema_issues(item, f"{path}.{i}"))
        return out
    if not isinstance(schema, dict):
        return out
    for key in sorted(_STRICT_UNSUPPORTED & schema.keys()):
        out.append(f"{path}: '{key}' is not supported in structured output schemas")
    types = schema.get("type")
    is_object = types == "object" or (isinstance(types, list) and "object" in types)
    if is_object and schema.get("additionalProperties") is not False:
        out.append(f"{path}: objects must set additionalProperties to false")
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt not in _STRICT_FORMATS:
        out.append(f"{path}.format: {fmt!r} is not a supported string format")
    min_items = schema.get("minItems")
    if min_items is not None and min_items not in (0, 1):
        out.append(f"{path}.minItems: only 0 or 1 are supported")
    for key in ("properties", "$defs", "definitions"):
        sub = schema.get(key)
        if isinstance(sub, dict):
            for name, value in sub.items():
                out.extend(_strict_schema_issues(value, f"{path}.{key}.{name}"))
    for key in ("items", "anyOf", "allOf", "oneOf", "not"):
        if key in schema:
            out.extend(_strict_schema_issues(schema[key], f"{path}.{key}"))
    return out


def _blocks(message: JSON) -> list[JSON]:
    content = message.get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _message_issues(messages: list[JSON]) -> list[str]:
    """Tool-use ids, and the API's pairing rule: every ``tool_use`` of an assistant turn
    has its ``tool_result`` at the start of the next user turn, and a ``tool_result``
    answers a ``tool_use`` of the turn before it."""
    out: list[str] = []
    pending: set[str] = set()
    pending_at = -1
    for i, message in enumerate(messages):
        blocks = _blocks(message)
        results = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
        for j, block in enumerate(blocks):
            if block.get("type") == "tool_use" and not _TOOL_ID.fullmatch(str(block["id"])):
                out.append(
                    f"messages.{i}.content.{j}.tool_use.id: String should match pattern "
                    f"'^[a-zA-Z0-9_-]+$'"
                )
            if block.get("type") == "tool_result":
                if not _TOOL_ID.fullmatch(str(block["tool_use_id"])):
                    out.append(
                        f"messages.{i}.content.{j}.tool_result.tool_use_id: String should "
                        f"match pattern '^[a-zA-Z0-9_-]+$'"
                    )
                elif block["tool_use_id"] not in pending:
                    out.append(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {block['tool_use_id']}. Each `tool_result` "
                        f"block must have a corresponding `tool_use` block in the previous "
                        f"message."
                    )
        if pending and message.get("role") == "user":
            missing = sorted(pending - results)
            if missing:
                out.append(
                    f"messages.{pending_at}: `tool_use` ids were found without "
                    f"`tool_result` blocks immediately after: {', '.join(missing)}"
                )
        if message.get("role") == "assistant":
            pending = {str(b["id"]) for b in blocks if b.get("type") == "tool_use"}
            pending_at = i
        elif message.get("role") == "user":
            pending = set()
    return out


def _cache_issues(body: JSON) -> list[str]:
    """At most four ``cache_control`` breakpoints; a 1-hour one may not follow a
    5-minute one (the prompt is processed tools, system, messages)."""
    marks: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            cache_control = node.get("cache_control")
            if isinstance(cache_control, dict):
                marks.append(str(cache_control.get("ttl", "5m")))
            for key, value in node.items():
                if key != "cache_control":
                    visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    for key in ("tools", "system", "messages"):
        visit(body.get(key))
    out: list[str] = []
    if len(marks) > MAX_CACHE_BREAKPOINTS:
        out.append(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be "
            f"provided. Found {len(marks)}."
        )
    if "1h" in marks and "5m" in marks[: marks.index("1h")]:
        out.append(
            "cache_control: a ttl='1h' cache_control block must not come after a ttl='5m' one"
        )
    return out


# --- answers ---------------------------------------------------------------------------


def _pydantic_issues(adapter: Any, data: Any) -> list[str]:
    """Validation by the SDK's models, and keys they do not know: the models accept
    extra keys (for forward compatibility), an answer built to the spec has none."""
    from pydantic import ValidationError

    try:
        value = adapter.validate_python(data)
    except ValidationError as exc:
        return [f"{_path(e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
    return _extras(value, [])


def _extras(value: Any, path: list[Any]) -> list[str]:
    from pydantic import BaseModel

    out: list[str] = []
    if isinstance(value, BaseModel):
        out += [f"{_path([*path, k])}: not in the SDK's type" for k in value.model_extra or {}]
        for name in type(value).model_fields:
            out += _extras(getattr(value, name), [*path, name])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _extras(item, [*path, i])
    return out


@cache
def _adapters() -> dict[str, Any]:
    from anthropic.types import Message, RawMessageStreamEvent
    from anthropic.types.shared import ErrorResponse
    from pydantic import TypeAdapter

    return {
        "message": TypeAdapter(Message),
        "event": TypeAdapter(RawMessageStreamEvent),
        "error": TypeAdapter(ErrorResponse),
    }


def answer_issues(data: Any) -> list[str]:
    """A whole answer (``anthropic.types.Message``)."""
    return _pydantic_issues(_adapters()["message"], data)


def event_issues(data: Any) -> list[str]:
    """One stream event: ``RawMessageStreamEvent``, ``ping`` or an ``error`` event."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "ping":
        return [] if data == {"type": "ping"} else ["ping: unexpected fields"]
    if kind == "error":
        return _pydantic_issues(_adapters()["error"], data)
    return _pydantic_issues(_adapters()["event"], data)


def error_issues(data: Any) -> list[str]:
    """An error body (``anthropic.types.shared.ErrorResponse``)."""
    return _pydantic_issues(_adapters()["error"], data)
