"""Produce values that satisfy a JSON schema (the subset LLM APIs use).

Handles ``type`` (string, number, integer, boolean, array, object, null, or a list of
them; case-insensitive so Gemini's ``OBJECT``/``STRING`` work), ``enum``, ``const``,
``properties``/``required``, ``items``, ``minItems``/``maxItems``, ``minimum``/
``maximum``, ``minLength``/``maxLength``, ``format`` (date, date-time, email, uri,
uuid), ``anyOf``/``oneOf``/``allOf`` and local ``$ref`` into ``$defs``/``definitions``.
"""

from __future__ import annotations

import math
import random
from typing import Any

from interlock.sim.textgen import generate_words

__all__ = ["conforms", "value_for_schema"]

_MAX_DEPTH = 8


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while isinstance(schema.get("$ref"), str) and seen < 16:
        ref: str = schema["$ref"]
        seen += 1
        if not ref.startswith("#/"):
            return {}
        node: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                return {}
            node = node[part]
        if not isinstance(node, dict):
            return {}
        schema = node
    return schema


def _string(schema: dict[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    if fmt == "date":
        return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if fmt == "date-time":
        return f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z"
    if fmt == "email":
        return f"{generate_words(rng, 1)[0]}@example.com"
    if fmt in ("uri", "url"):
        return f"https://example.com/{generate_words(rng, 1)[0]}"
    if fmt == "uuid":
        return "%08x-%04x-4%03x-8%03x-%012x" % (  # noqa: UP031
            rng.getrandbits(32),
            rng.getrandbits(16),
            rng.getrandbits(12),
            rng.getrandbits(12),
            rng.getrandbits(48),
        )
    text = " ".join(generate_words(rng, rng.randint(1, 3)))
    min_len = schema.get("minLength")
    max_len = schema.get("maxLength")
    if isinstance(min_len, int) and len(text) < min_len:
        text = text.ljust(min_len, "x")
    if isinstance(max_len, int) and len(text) > max_len:
        text = text[:max_len]
    return text


def _number(schema: dict[str, Any], rng: random.Random, integer: bool) -> int | float:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    lo_f = float(lo) if isinstance(lo, int | float) and not isinstance(lo, bool) else 0.0
    hi_f = float(hi) if isinstance(hi, int | float) and not isinstance(hi, bool) else lo_f + 100
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        lo_f += 1 if integer else 0.5
    if "exclusiveMaximum" in schema and "maximum" not in schema:
        hi_f -= 1 if integer else 0.5
    if hi_f < lo_f:
        hi_f = lo_f
    if integer:
        low, high = math.ceil(lo_f), math.floor(hi_f)
        return rng.randint(low, high) if high >= low else low
    return round(rng.uniform(lo_f, hi_f), 2) if hi_f > lo_f else lo_f


def value_for_schema(
    schema: Any, rng: random.Random, root: dict[str, Any] | None = None, depth: int = 0
) -> Any:
    """A value that conforms to ``schema`` (best effort for exotic keywords)."""
    if not isinstance(schema, dict):
        return generate_words(rng, 1)[0]
    if root is None:
        root = schema
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[int(rng.random() * len(enum))]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return value_for_schema((non_null or options)[0], rng, root, depth + 1)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        merged: dict[str, Any] = {}
        for part in all_of:
            part = _resolve(part, root) if isinstance(part, dict) else {}
            for k, v in part.items():
                if k in ("properties",) and isinstance(v, dict):
                    merged.setdefault("properties", {}).update(v)
                elif k == "required" and isinstance(v, list):
                    merged.setdefault("required", []).extend(v)
                else:
                    merged.setdefault(k, v)
        return value_for_schema(merged, rng, root, depth + 1)

    stype: Any = schema.get("type")
    if isinstance(stype, list):
        choices = [t for t in stype if str(t).lower() != "null"]
        stype = choices[0] if choices else "null"
    if stype is None:
        if "properties" in schema:
            stype = "object"
        elif "items" in schema:
            stype = "array"
        else:
            stype = "string"
    stype = str(stype).lower()

    if stype == "string":
        return _string(schema, rng)
    if stype == "integer":
        return _number(schema, rng, True)
    if stype == "number":
        return _number(schema, rng, False)
    if stype == "boolean":
        return rng.random() < 0.5
    if stype == "null":
        return None
    if stype == "array":
        min_items = schema.get("minItems") if isinstance(schema.get("minItems"), int) else 1
        max_items = schema.get("maxItems") if isinstance(schema.get("maxItems"), int) else None
        count = max(min_items, 1 if depth < _MAX_DEPTH else 0)
        if max_items is not None:
            count = min(count, max_items)
        items = schema.get("items", {})
        return [value_for_schema(items, rng, root, depth + 1) for _ in range(count)]
    if stype == "object":
        props = schema.get("properties")
        out: dict[str, Any] = {}
        if isinstance(props, dict):
            required = schema.get("required")
            names = list(props)
            if depth >= _MAX_DEPTH and isinstance(required, list):
                names = [n for n in names if n in required]
            for name in names:
                out[name] = value_for_schema(props[name], rng, root, depth + 1)
        elif isinstance(schema.get("required"), list):
            for name in schema["required"]:
                out[str(name)] = generate_words(rng, 1)[0]
        return out
    return generate_words(rng, 1)[0]


def conforms(value: Any, schema: Any, root: dict[str, Any] | None = None) -> bool:
    """Whether ``value`` satisfies ``schema`` (the keywords :func:`value_for_schema` knows).

    A small checker for tests that want to verify generated tool arguments or structured
    output without a JSON-schema library.
    """
    if not isinstance(schema, dict):
        return True
    if root is None:
        root = schema
    schema = _resolve(schema, root)
    if "const" in schema:
        return bool(value == schema["const"])
    if isinstance(schema.get("enum"), list):
        return value in schema["enum"]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return any(conforms(value, s, root) for s in schema[key])
    if isinstance(schema.get("allOf"), list):
        return all(conforms(value, s, root) for s in schema["allOf"])
    stype: Any = schema.get("type")
    if isinstance(stype, list):
        return any(conforms(value, {**schema, "type": t}, root) for t in stype)
    if stype is None:
        stype = "object" if "properties" in schema else None
    stype = str(stype).lower() if stype is not None else None
    if stype == "object":
        if not isinstance(value, dict):
            return False
        props = schema.get("properties") or {}
        if any(r not in value for r in schema.get("required") or []):
            return False
        if schema.get("additionalProperties") is False and set(value) - set(props):
            return False
        return all(conforms(value[k], s, root) for k, s in props.items() if k in value)
    if stype == "array":
        if not isinstance(value, list) or len(value) < schema.get("minItems", 0):
            return False
        if isinstance(schema.get("maxItems"), int) and len(value) > schema["maxItems"]:
            return False
        return all(conforms(v, schema.get("items", {}), root) for v in value)
    if stype == "string":
        return (
            isinstance(value, str)
            and len(value) >= schema.get("minLength", 0)
            and len(value) <= schema.get("maxLength", len(value))
        )
    if stype in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if stype == "integer" and not isinstance(value, int):
            return False
        return bool(schema.get("minimum", value) <= value <= schema.get("maximum", value))
    if stype == "boolean":
        return isinstance(value, bool)
    if stype == "null":
        return value is None
    return True
