"""Bedrock Converse / ConverseStream, checked against botocore's ``bedrock-runtime``
service model (``botocore/data/bedrock-runtime/2023-09-30/service-2.json``, loaded with
:class:`botocore.loaders.Loader`; the version used is :data:`ORIGIN`).

botocore's own ``ParamValidator`` checks required members, types, ``min`` and enums but
skips ``max`` and ``pattern``; the service checks all of them, so this walks the shapes
itself:

* structures: required members, unknown members refused (the service's JSON
  deserializer refuses extraneous keys), unions with exactly one member set;
* strings: ``min``/``max`` length, ``enum``, ``pattern`` (matched against the whole value,
  as the service's validation does);
* integers / longs / floats / doubles: type and ``min``/``max`` (``temperature`` <= 1,
  ``topP`` 0-1, ``maxTokens`` >= 1); booleans; blobs (base64 in JSON, ``min`` on the
  decoded bytes); lists and maps (``min``/``max`` counts); documents (any JSON).

Errors read the way the service writes them (``1 validation error detected: Value ...
at 'inferenceConfig.temperature' failed to satisfy constraint: ...``). The same walk
checks what the service returns: ``ConverseResponse`` and each ConverseStream event shape
(:func:`validate_event`), so the simulator's answers and test fixtures can be checked too.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from functools import cache
from pathlib import Path
from typing import Any

import botocore
from botocore.loaders import Loader

__all__ = [
    "ORIGIN",
    "STREAM_EVENTS",
    "conversation_errors",
    "service_model",
    "tool_use_id_rule",
    "validate_error",
    "validate_event",
    "validate_request",
    "validate_response",
    "validation_message",
]

SERVICE = "bedrock-runtime"


@cache
def service_model() -> dict[str, Any]:
    model: dict[str, Any] = Loader().load_service_model(SERVICE, "service-2")
    return model


def _origin() -> str:
    meta = service_model()["metadata"]
    _, path = Loader().load_data_with_path(f"{SERVICE}/{meta['apiVersion']}/service-2")
    digest = ""
    for suffix in (".json.gz", ".json"):
        candidate = Path(path + suffix)
        if candidate.is_file():
            sha = hashlib.sha256(candidate.read_bytes()).hexdigest()
            digest = f", {candidate.name} sha256 {sha}"
            break
    return (
        f"botocore {botocore.__version__} {SERVICE} service model, "
        f"apiVersion {meta['apiVersion']}{digest}"
    )


ORIGIN = _origin()
_SHAPES: dict[str, Any] = service_model()["shapes"]
STREAM_EVENTS: dict[str, str] = {
    name: member["shape"] for name, member in _SHAPES["ConverseStreamOutput"]["members"].items()
}


def tool_use_id_rule() -> tuple[int, str]:
    """``ToolUseId``'s (max length, pattern) as the service model states them."""
    shape = _SHAPES["ToolUseId"]
    return int(shape["max"]), str(shape["pattern"])


@cache
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _fmt(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


class _Walk:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, path: str, value: Any, constraint: str) -> None:
        where = path or "<root>"
        self.errors.append(
            f"Value '{_fmt(value)}' at '{where}' failed to satisfy constraint: {constraint}"
        )

    def check(self, shape_name: str, value: Any, path: str) -> None:
        shape = _SHAPES[shape_name]
        kind = shape["type"]
        if kind == "structure":
            if shape.get("document"):
                return  # Document: any JSON value
            self.structure(shape, value, path)
        elif kind == "list":
            if not isinstance(value, list):
                self.fail(path, value, "Member must be a list")
                return
            self.count(shape, value, path)
            for i, item in enumerate(value):
                self.check(shape["member"]["shape"], item, f"{path}.{i + 1}.member")
        elif kind == "map":
            if not isinstance(value, dict):
                self.fail(path, value, "Member must be a map")
                return
            self.count(shape, value, path)
            for key, item in value.items():
                self.check(shape["key"]["shape"], key, f"{path}.key")
                self.check(shape["value"]["shape"], item, f"{path}.{key}")
        elif kind == "string":
            self.string(shape, value, path)
        elif kind in ("integer", "long"):
            if not isinstance(value, int) or isinstance(value, bool):
                self.fail(path, value, "Member must be an integer")
                return
            self.bounds(shape, value, path)
        elif kind in ("float", "double"):
            if not isinstance(value, int | float) or isinstance(value, bool):
                self.fail(path, value, "Member must be a number")
                return
            self.bounds(shape, value, path)
        elif kind == "boolean":
            if not isinstance(value, bool):
                self.fail(path, value, "Member must be a boolean")
        elif kind == "blob":
            self.blob(shape, value, path)
        elif kind == "timestamp":
            if not isinstance(value, int | float | str) or isinstance(value, bool):
                self.fail(path, value, "Member must be a timestamp")
        else:  # pragma: no cover - a shape type the model does not use today
            self.fail(path, value, f"unknown shape type {kind}")

    def structure(self, shape: dict[str, Any], value: Any, path: str) -> None:
        if not isinstance(value, dict):
            self.fail(path, value, "Member must be a structure")
            return
        members: dict[str, Any] = shape["members"]
        prefix = f"{path}." if path else ""
        for key in value:
            if key not in members:
                self.fail(f"{prefix}{key}", value[key], "Member is not a known member")
        present = [k for k in members if k in value and value[k] is not None]
        if shape.get("union") and len(present) != 1:
            self.fail(path, value, f"Member must have exactly one of {sorted(members)} set")
        for key in shape.get("required", ()):
            if value.get(key) is None:
                self.fail(f"{prefix}{key}", None, "Member must not be null")
        for key in present:
            self.check(members[key]["shape"], value[key], f"{prefix}{key}")

    def count(self, shape: dict[str, Any], value: list[Any] | dict[str, Any], path: str) -> None:
        if "min" in shape and len(value) < shape["min"]:
            self.fail(
                path, value, f"Member must have length greater than or equal to {shape['min']}"
            )
        if "max" in shape and len(value) > shape["max"]:
            self.fail(path, value, f"Member must have length less than or equal to {shape['max']}")

    def string(self, shape: dict[str, Any], value: Any, path: str) -> None:
        if not isinstance(value, str):
            self.fail(path, value, "Member must be a string")
            return
        if "enum" in shape and value not in shape["enum"]:
            self.fail(path, value, f"Member must satisfy enum value set: {shape['enum']}")
        self.count(shape, value, path)  # type: ignore[arg-type]
        pattern = shape.get("pattern")
        if pattern and _pattern(pattern).fullmatch(value) is None:
            self.fail(path, value, f"Member must satisfy regular expression pattern: {pattern}")

    def bounds(self, shape: dict[str, Any], value: float, path: str) -> None:
        if "min" in shape and value < shape["min"]:
            self.fail(
                path, value, f"Member must have value greater than or equal to {shape['min']}"
            )
        if "max" in shape and value > shape["max"]:
            self.fail(path, value, f"Member must have value less than or equal to {shape['max']}")

    def blob(self, shape: dict[str, Any], value: Any, path: str) -> None:
        if not isinstance(value, str):
            self.fail(path, value, "Member must be base64-encoded bytes")
            return
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            self.fail(path, value, "Member must be base64-encoded bytes")
            return
        if "min" in shape and len(raw) < shape["min"]:
            self.fail(
                path, value, f"Member must have length greater than or equal to {shape['min']}"
            )
        if "max" in shape and len(raw) > shape["max"]:
            self.fail(path, value, f"Member must have length less than or equal to {shape['max']}")


def _body_members(shape_name: str) -> dict[str, Any]:
    """The structure with its URI/header members taken out (they are not in the body)."""
    shape = _SHAPES[shape_name]
    members = {k: v for k, v in shape["members"].items() if "location" not in v}
    required = [k for k in shape.get("required", ()) if k in members]
    return {**shape, "members": members, "required": required}


def validate_request(body: Any, model_id: str, *, stream: bool = False) -> list[str]:
    """Every constraint ``body`` (the JSON body of a Converse / ConverseStream call to
    ``/model/{model_id}/...``) breaks; empty when the service would accept it."""
    name = "ConverseStreamRequest" if stream else "ConverseRequest"
    walk = _Walk()
    walk.check(_SHAPES[name]["members"]["modelId"]["shape"], model_id, "modelId")
    walk.structure(_body_members(name), body, "")
    return walk.errors


# Claude models that refuse temperature and top_p together (Anthropic's models overview:
# Claude Sonnet 4.5, Haiku 4.5, Opus 4.1 and later).
_CLAUDE_ONE_SAMPLER = re.compile(
    r".*anthropic\.claude-(sonnet-4-5|haiku-4-5|opus-4-1|opus-4-5|[a-z]+-4-6).*"
)


def _blocks(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else []


def conversation_errors(body: Any, model_id: str) -> list[str]:
    """Rules the service enforces beyond the shapes, each as Bedrock words its
    ValidationException (the Converse API reference and the Bedrock user guide's tool-use,
    extended-thinking and troubleshooting pages): a conversation starts with a user turn
    and alternates; text blocks are not blank; ``toolUse`` / ``toolResult`` blocks need
    ``toolConfig`` and each result answers a ``toolUse`` of the turn before; Claude
    thinking needs a budget of at least 1024 below ``maxTokens``, temperature 1 and, in a
    tool loop, the previous turn's thinking; newer Claude models take temperature or topP,
    not both."""
    if not isinstance(body, dict):
        return []
    messages = body.get("messages")
    messages = messages if isinstance(messages, list) else []
    out: list[str] = []
    if not messages:
        out.append("The messages field is required and must contain at least one message.")
    elif not isinstance(messages[0], dict) or messages[0].get("role") != "user":
        out.append(
            "A conversation must start with a user message. "
            "Try again with a conversation that starts with a user message."
        )
    for i in range(1, len(messages)):
        prev, cur = messages[i - 1], messages[i]
        if isinstance(prev, dict) and isinstance(cur, dict) and prev.get("role") == cur.get("role"):
            out.append(
                "A conversation must alternate between user and assistant roles. "
                "Make sure the conversation alternates between user and assistant roles "
                "and try again."
            )
            break
    uses_tools = False
    for i, message in enumerate(messages):
        for j, block in enumerate(_blocks(message)):
            if not isinstance(block, dict):
                continue
            text = block.get("text")
            if isinstance(text, str) and not text.strip():
                out.append(
                    f"The text field in the ContentBlock object at messages.{i}.content.{j} "
                    "is blank. Add text to the text field, and try again."
                )
            if "toolUse" in block or "toolResult" in block:
                uses_tools = True
        results = [
            b["toolResult"].get("toolUseId")
            for b in _blocks(message)
            if isinstance(b, dict) and isinstance(b.get("toolResult"), dict)
        ]
        if results:
            before = _blocks(messages[i - 1]) if i else []
            asked = {
                b["toolUse"].get("toolUseId")
                for b in before
                if isinstance(b, dict) and isinstance(b.get("toolUse"), dict)
            }
            if len(results) > len(asked):
                out.append(
                    f"The number of toolResult blocks at messages.{i}.content exceeds the "
                    "number of toolUse blocks of previous turn."
                )
            elif any(r not in asked for r in results):
                out.append(
                    f"The toolUseId of a toolResult block at messages.{i}.content does not "
                    "match a toolUse block of the previous turn."
                )
    if uses_tools and not isinstance(body.get("toolConfig"), dict):
        out.append(
            "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        )
    inference = body.get("inferenceConfig")
    inference = inference if isinstance(inference, dict) else {}
    if "anthropic.claude" in model_id:
        if (
            _CLAUDE_ONE_SAMPLER.fullmatch(model_id)
            and inference.get("temperature") is not None
            and inference.get("topP") is not None
        ):
            out.append(
                "The model returned the following errors: `temperature` and `top_p` cannot "
                "both be specified for this model. Please use only one."
            )
        extra = body.get("additionalModelRequestFields")
        thinking = extra.get("thinking") if isinstance(extra, dict) else None
        if isinstance(thinking, dict) and thinking.get("type") == "enabled":
            out += _thinking_errors(thinking, inference, messages)
    return out


def _thinking_errors(
    thinking: dict[str, Any], inference: dict[str, Any], messages: list[Any]
) -> list[str]:
    out: list[str] = []
    budget = thinking.get("budget_tokens")
    max_tokens = inference.get("maxTokens")
    if not isinstance(budget, int) or budget < 1024:
        out.append(
            "The model returned the following errors: thinking.enabled.budget_tokens: "
            "Input should be greater than or equal to 1024"
        )
    elif isinstance(max_tokens, int) and max_tokens <= budget:
        out.append(
            "The model returned the following errors: `max_tokens` must be greater than "
            "`thinking.budget_tokens`."
        )
    temperature = inference.get("temperature")
    if temperature is not None and temperature != 1:
        out.append(
            "The model returned the following errors: `temperature` may only be set to 1 "
            "when thinking is enabled."
        )
    if len(messages) >= 2:
        last, prev = messages[-1], messages[-2]
        in_loop = any(isinstance(b, dict) and "toolResult" in b for b in _blocks(last))
        first = _blocks(prev)[:1]
        starts_thinking = (
            bool(first) and isinstance(first[0], dict) and "reasoningContent" in first[0]
        )
        if in_loop and not starts_thinking:
            out.append(
                "The model returned the following errors: Expected `thinking` or "
                "`redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a "
                "final `assistant` message must start with a thinking block."
            )
    return out


def validate_response(body: Any) -> list[str]:
    """Every way ``body`` departs from ``ConverseResponse``."""
    walk = _Walk()
    walk.check("ConverseResponse", body, "")
    return walk.errors


def validate_event(event_type: str, payload: Any) -> list[str]:
    """One ConverseStream message: ``event_type`` (its ``:event-type`` or
    ``:exception-type`` header) must be a member of ``ConverseStreamOutput`` and its
    JSON payload must fit that member's shape."""
    shape = STREAM_EVENTS.get(event_type)
    if isinstance(payload, dict) and isinstance(payload.get("p"), str):
        # Bedrock pads stream events with a "p" string (it hides the payload's length);
        # it is transport, not a member, and SDKs skip it.
        payload = {k: v for k, v in payload.items() if k != "p"}
    if shape is None:
        return [f"'{event_type}' is not a ConverseStreamOutput member ({sorted(STREAM_EVENTS)})"]
    walk = _Walk()
    walk.check(shape, payload, event_type)
    return walk.errors


def validate_error(error_type: str, status: int, body: Any) -> list[str]:
    """A documented error answer: ``error_type`` (``x-amzn-ErrorType``, without the
    ``:http://...`` suffix) is one of Converse's errors, ``status`` its HTTP status, and
    ``body`` fits its shape."""
    name = error_type.split(":", 1)[0]
    errors = {e["shape"] for e in service_model()["operations"]["Converse"]["errors"]}
    if name not in errors:
        return [f"{name} is not one of Converse's errors ({sorted(errors)})"]
    shape = _SHAPES[name]
    out: list[str] = []
    if shape["error"]["httpStatusCode"] != status:
        out.append(f"{name} has status {shape['error']['httpStatusCode']}, not {status}")
    walk = _Walk()
    walk.check(name, body, "")
    return out + walk.errors


def validation_message(errors: list[str]) -> str:
    """The service's ValidationException message for ``errors``."""
    n = len(errors)
    head = f"{n} validation error{'s' if n != 1 else ''} detected: "
    return head + "; ".join(errors)
