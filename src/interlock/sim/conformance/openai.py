"""Validation against OpenAI's published OpenAPI specification (vendored, see
``sim/specs/openai/ORIGIN.md`` for its origin and version).

The simulated provider checks every request it receives with :func:`request_issues` and
refuses what the spec refuses, as OpenAI does (400 ``invalid_request_error`` naming the
parameter); the conformance tests (tests/conformance/test_openai.py) check outbound
requests and answers with the same validators.

The 3.4 MB document is read once; a validator per schema is compiled on first use with
the whole document as its root, so every ``$ref`` into ``#/components/schemas`` resolves.
The document says OpenAPI 3.1 (JSON Schema 2020-12) but still marks optional fields
``nullable: true`` (the 3.0 keyword, which 2020-12 ignores): OpenAI accepts ``null`` there,
so each such schema is rewritten once, at load, to also allow ``null``. Nothing else is
changed. Unknown top-level request keys are not refused: the request schemas do not set
``additionalProperties`` (and OpenAI ignores unknown keys).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema_rs
import orjson

__all__ = [
    "REQUEST_SCHEMAS",
    "RESPONSE_SCHEMAS",
    "SpecIssue",
    "issues",
    "request_issues",
    "spec",
]

# Request body schema per API path (relative to /v1), as the spec's paths name them.
REQUEST_SCHEMAS = {
    "chat/completions": "CreateChatCompletionRequest",
    "completions": "CreateCompletionRequest",
    "embeddings": "CreateEmbeddingRequest",
}
# Answer schemas: a whole answer, one stream chunk, an error body.
RESPONSE_SCHEMAS = {
    "chat": "CreateChatCompletionResponse",
    "chat.chunk": "CreateChatCompletionStreamResponse",
    "completion": "CreateCompletionResponse",
    "embeddings": "CreateEmbeddingResponse",
    "error": "ErrorResponse",
}

_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class SpecIssue:
    """One place an instance breaks the spec: ``param`` in OpenAI's own notation
    (``messages[0].role``), ``code`` like OpenAI's (``invalid_type``, ``invalid_value``,
    ``missing_required_parameter``...)."""

    param: str | None
    message: str
    code: str

    def __str__(self) -> str:
        return f"{self.param or '$'}: {self.message}"


def _allow_null(node: Any) -> Any:
    """The document with each ``nullable: true`` schema also accepting ``null``."""
    if isinstance(node, list):
        return [_allow_null(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _allow_null(v) for k, v in node.items()}
    if out.pop("nullable", None) is not True:
        return out
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    elif isinstance(kind, list):
        if "null" not in kind:
            out["type"] = [*kind, "null"]
    elif isinstance(out.get("anyOf"), list):
        out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    elif isinstance(out.get("oneOf"), list):
        out["oneOf"] = [*out["oneOf"], {"type": "null"}]
    elif "$ref" in out:
        ref = out.pop("$ref")
        out["anyOf"] = [{"$ref": ref}, {"type": "null"}]
    return out


@cache
def spec() -> dict[str, Any]:
    """The vendored document (``nullable`` rewritten), loaded once."""
    raw = resources.files("interlock.sim").joinpath("specs/openai/openapi.json").read_bytes()
    loaded = orjson.loads(raw)
    if not isinstance(loaded, dict):
        raise RuntimeError("the vendored OpenAI spec is not a JSON object")
    return dict(_allow_null(loaded))


_validators: dict[str, Any] = {}


def _validator(schema: str) -> Any:
    found = _validators.get(schema)
    if found is not None:
        return found
    with _lock:
        found = _validators.get(schema)
        if found is None:
            doc = spec()
            if schema not in doc["components"]["schemas"]:
                raise KeyError(f"the OpenAI spec has no schema {schema!r}")
            root = {**doc, "$ref": f"#/components/schemas/{schema}"}
            found = jsonschema_rs.Draft202012Validator(root)
            _validators[schema] = found
    return found


def _param(path: list[str | int]) -> str | None:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


_CODES = {
    "Type": "invalid_type",
    "Required": "missing_required_parameter",
    "MinItems": "empty_array",
    "Maximum": "above_max_value",
    "ExclusiveMaximum": "above_max_value",
    "Minimum": "below_min_value",
    "ExclusiveMinimum": "below_min_value",
    "MaxItems": "array_above_max_length",
    "MaxLength": "string_above_max_length",
    "MinLength": "string_below_min_length",
}


def _best(err: Any) -> Any:
    """The error that explains an ``anyOf``/``oneOf`` failure: inside the branch that
    matched the instance's type (a number above a maximum, not "not null"), deepest first."""
    for _ in range(32):
        context = getattr(err.kind, "context", None)
        if type(err.kind).__name__ not in ("AnyOf", "OneOfNotValid") or not context:
            return err
        depth = len(err.instance_path)

        def rank(group: list[Any], depth: int = depth) -> tuple[int, int, int]:
            # A branch of another type, or whose discriminator (``type``/``role``) differs.
            type_miss = any(
                (type(e.kind).__name__ == "Type" and len(e.instance_path) == depth)
                or (
                    type(e.kind).__name__ in ("Constant", "Enum")
                    and len(e.instance_path) in (depth, depth + 1)
                )
                for e in group
            )
            deepest = max((len(e.instance_path) for e in group), default=0)
            return (1 if type_miss else 0, -deepest, len(group))

        groups = [g for g in context if g]
        if not groups:
            return err
        group = min(groups, key=rank)
        err = max(group, key=lambda e: len(e.instance_path))
    return err


def _issue(err: Any) -> SpecIssue:
    err = _best(err)
    path = list(err.instance_path)
    kind = type(err.kind).__name__
    if kind == "Required":
        prop = getattr(err.kind, "property", None)
        if isinstance(prop, str):
            path.append(prop)
    param = _param(path)
    code = _CODES.get(kind, "invalid_value")
    where = f"'{param}'" if param else "the request body"
    if kind == "Required":
        message = f"Missing required parameter: {where}."
    elif kind == "Type":
        message = f"Invalid type for {where}: {err.message}."
    else:
        message = f"Invalid value for {where}: {err.message}."
    return SpecIssue(param, message, code)


def issues(schema: str, instance: Any, *, limit: int = 5) -> list[SpecIssue]:
    """Where ``instance`` breaks the spec's ``schema`` (a components/schemas name); empty
    when it conforms. The deepest issues come first: they name the parameter at fault
    (an ``anyOf`` over message kinds fails at the message, its cause deeper down)."""
    validator = _validator(schema)
    if validator.is_valid(instance):
        return []
    found = [_issue(e) for e in validator.iter_errors(instance)]
    found.sort(key=lambda i: -(i.param or "").count(".") - (i.param or "").count("["))
    return found[:limit]


def request_issues(path: str, body: Any) -> list[SpecIssue]:
    """The spec's verdict on a request body for ``path`` (``chat/completions``,
    ``completions`` or ``embeddings``)."""
    return issues(REQUEST_SCHEMAS[path], body)
