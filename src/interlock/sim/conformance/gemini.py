"""Gemini API / Vertex AI requests and answers, checked against what Google publishes.

The artefact is the official **google-genai SDK** (:data:`ORIGIN`): its ``types`` module
is generated from Google's API definitions and holds one pydantic model per wire message,
with camelCase aliases and ``extra='forbid'`` (an unknown field is an error, as it is for
the API's proto-JSON parser). No discovery document for ``generativelanguage`` or
``aiplatform.v1`` is available offline (none ships in a package on this machine), so the
SDK types are the machine-readable spec; what they cannot express comes from the SDK's own
field docstrings and the Gemini API documentation, each noted where it is checked:

* request top level: only the ``GenerateContentRequest`` fields;
* ``contents`` -> ``types.Content`` (roles ``user``/``model``, non-empty parts, one data
  field per part, no empty text), ``systemInstruction`` -> ``types.Content``;
* ``tools`` -> ``types.Tool``; each ``FunctionDeclaration`` name (``^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$``,
  its docstring), ``parameters`` XOR ``parametersJsonSchema`` (docstring: "mutually
  exclusive"), ``parameters`` in the OpenAPI-subset ``Schema`` (see :func:`schema_problems`),
  ``parametersJsonSchema`` a valid JSON Schema describing an object;
* ``toolConfig`` -> ``types.ToolConfig`` (``allowedFunctionNames`` only with mode ANY and
  naming declared functions);
* ``generationConfig`` -> ``types.GenerationConfig``: ``responseSchema`` XOR
  ``responseJsonSchema``, either one needs a JSON ``responseMimeType``; at most 5
  ``stopSequences``; ``candidateCount`` 1-8; ``temperature`` 0-2; ``topP`` 0-1;
  ``logprobs`` 0-20 and only with ``responseLogprobs``; ``thinkingConfig`` per model family
  (:data:`THINKING`: budget ranges of the 2.5 families, ``thinkingLevel`` for 3, none for
  older models; ``thinkingBudget`` and ``thinkingLevel`` not together);
* ``safetySettings`` -> ``types.SafetySetting``;
* Vertex ``:predict`` embeddings: ``gemini-embedding-*`` models take one instance per
  request, ``text-embedding-*`` at most 250 (:func:`predict_problems`).

Answers: :func:`response_problems` checks a ``GenerateContentResponse`` /
``EmbedContentResponse`` body (the simulator's and the test fixtures).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

__all__ = [
    "ORIGIN",
    "THINKING",
    "embed_problems",
    "predict_problems",
    "request_problems",
    "response_problems",
    "schema_problems",
]

_TOP_LEVEL = frozenset(
    {
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "safetySettings",
        "generationConfig",
        "cachedContent",
    }
)
_VERTEX_TOP_LEVEL = _TOP_LEVEL | {"labels", "modelArmorConfig"}
_SCHEMA_TYPES = frozenset({"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"})
# Schema.format docstring: NUMBER float/double, INTEGER int32/int64, STRING email, byte,
# date, date-time, password "and other formats"; "enum" marks an enum (Schema.enum docstring).
_FORMATS = {
    "NUMBER": frozenset({"float", "double"}),
    "INTEGER": frozenset({"int32", "int64", "enum"}),
    "STRING": frozenset({"enum", "date-time", "date", "time", "email", "byte", "password"}),
}
# JSON Schema keywords that the OpenAPI-subset Schema does not have (the Gemini API refuses
# them inside ``parameters`` / ``responseSchema``; full JSON Schema goes in the *JsonSchema
# fields).
_JSON_SCHEMA_ONLY = frozenset(
    {
        "$ref",
        "$defs",
        "definitions",
        "$schema",
        "$id",
        "additionalProperties",
        "ref",
        "defs",
        "oneOf",
        "allOf",
        "not",
        "const",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "patternProperties",
        "prefixItems",
        "unevaluatedProperties",
    }
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")
_PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
_PART_DATA_ALL = (*_PART_DATA, "executableCode", "codeExecutionResult", "toolCall", "toolResponse")
_JSON_MIME = frozenset({"application/json", "text/x.enum"})

# Thinking per model family (Gemini API docs, "Thinking": budget ranges of the 2.5 models,
# thinkingLevel for Gemini 3; earlier models do not think). First match wins.
# (prefix, mode, low, high, can_disable, levels)
THINKING: tuple[tuple[str, str, int, int, bool, tuple[str, ...]], ...] = (
    ("gemini-3-pro", "level", 0, 0, False, ("LOW", "HIGH")),
    ("gemini-3", "level", 0, 0, False, ("MINIMAL", "LOW", "MEDIUM", "HIGH")),
    ("gemini-2.5-pro", "budget", 128, 32768, False, ()),
    ("gemini-2.5-flash-lite", "budget", 512, 24576, True, ()),
    ("gemini-2.5-flash", "budget", 1, 24576, True, ()),
    ("gemini-2.5", "budget", 1, 24576, True, ()),
)
BATCH_MAX_REQUESTS = 100  # batchEmbedContents: at most 100 requests per batch
PREDICT_MAX_INSTANCES = 250  # Vertex text-embedding-* models: up to 250 texts per request


@cache
def _types() -> Any:
    try:
        from google.genai import types
    except ImportError:  # the dev extra is not installed: structural checks only
        return None
    return types


def _origin() -> str:
    try:
        from google.genai import version
    except ImportError:
        return "google-genai (not installed): structural checks only"
    return f"google-genai {version.__version__} types (pydantic, extra='forbid')"


ORIGIN = _origin()


def _pydantic(name: str, value: Any, where: str) -> list[str]:
    types = _types()
    if types is None:
        return []
    model = getattr(types, name)
    try:
        model.model_validate(value)
    except Exception as exc:  # pydantic.ValidationError
        errors = getattr(exc, "errors", None)
        if callable(errors):
            out = []
            for err in errors()[:3]:
                loc = ".".join(str(x) for x in err.get("loc", ()))
                out.append(f"{where}{'.' + loc if loc else ''}: {err.get('msg')}")
            return out
        return [f"{where}: {exc}"]
    return []


def schema_problems(schema: Any, where: str, depth: int = 0) -> list[str]:
    """The OpenAPI-subset ``Schema`` (``parameters``, ``responseSchema``): type names of the
    ``Type`` enum in upper case, ``enum`` only with string values on STRING (or INTEGER
    with ``format: enum``) schemas, ARRAY with ``items``, no JSON-Schema-only keywords,
    ``format`` one the Schema.format docstring lists for the type."""
    if not isinstance(schema, dict):
        return [f"{where}: a schema must be an object"]
    if depth > 40:
        return [f"{where}: schema nested too deeply"]
    out: list[str] = []
    for key in schema:
        if key in _JSON_SCHEMA_ONLY:
            out.append(f'{where}: Unknown name "{key}": Cannot find field.')
    kind = schema.get("type")
    if kind is not None and (not isinstance(kind, str) or kind not in _SCHEMA_TYPES):
        out.append(
            f"{where}.type: Invalid value {kind!r} (TYPE_ENUM): expected one of "
            + ", ".join(sorted(_SCHEMA_TYPES))
        )
    enum = schema.get("enum")
    if enum is not None:
        if not isinstance(enum, list) or not all(isinstance(v, str) for v in enum):
            out.append(f"{where}.enum: enum values must be strings")
        elif kind not in ("STRING", None) and not (
            kind == "INTEGER" and schema.get("format") == "enum"
        ):
            out.append(f"{where}.enum: only allowed for STRING type")
    fmt = schema.get("format")
    if fmt is not None and isinstance(kind, str):
        allowed = _FORMATS.get(kind)
        if allowed is None or fmt not in allowed:
            out.append(f"{where}.format: format {fmt!r} is not supported for type {kind}")
    if kind == "ARRAY" and not isinstance(schema.get("items"), dict):
        out.append(f"{where}.items: missing field (ARRAY needs items)")
    props = schema.get("properties")
    if kind == "OBJECT" and props == {}:
        out.append(f"{where}.properties: should be non-empty for OBJECT type")
    props = schema.get("properties")
    if isinstance(props, dict):
        for name, sub in props.items():
            out.extend(schema_problems(sub, f"{where}.properties[{name}]", depth + 1))
        required = schema.get("required")
        if isinstance(required, list):
            for name in required:
                if name not in props:
                    out.append(f"{where}.required: property {name!r} is not defined")
    items = schema.get("items")
    if isinstance(items, dict):
        out.extend(schema_problems(items, f"{where}.items", depth + 1))
    for k, sub in enumerate(schema.get("anyOf") or ()):
        out.extend(schema_problems(sub, f"{where}.anyOf[{k}]", depth + 1))
    if not out:
        out.extend(_pydantic("Schema", schema, where))
    return out


def _json_schema_problems(schema: Any, where: str, must_be_object: bool) -> list[str]:
    if not isinstance(schema, dict):
        return [f"{where}: must be a JSON Schema object"]
    import jsonschema_rs

    try:
        jsonschema_rs.meta.validate(schema)  # against the 2020-12 metaschema
    except jsonschema_rs.ValidationError as exc:
        return [f"{where}: invalid JSON Schema: {exc.message}"]
    try:
        jsonschema_rs.Draft202012Validator(schema)  # $refs resolve
    except (jsonschema_rs.ReferencingError, jsonschema_rs.ValidationError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [f"{where}: invalid JSON Schema: {first}"]
    if must_be_object and schema.get("type") not in ("object", None):
        return [f"{where}: the schema must describe an object"]
    return []


def _content_problems(content: Any, where: str, system: bool) -> list[str]:
    if not isinstance(content, dict):
        return [f"{where}: must be a Content object"]
    out = _pydantic("Content", content, where)
    if out:
        return out
    role = content.get("role")
    # Content.role docstring: "Must be either 'user' or 'model'... can be left blank or
    # unset" (single-turn requests).
    if not system and role not in (None, "", "user", "model"):
        out.append(f"{where}.role: Please use a valid role: user, model.")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        return [*out, f"{where}.parts: contents.parts must not be empty."]
    for j, part in enumerate(parts):
        p = f"{where}.parts[{j}]"
        data = [k for k in _PART_DATA_ALL if k in part]
        if len(data) != 1:
            out.append(f"{p}: a part must hold exactly one of text, inlineData, fileData, ...")
            continue
        if data[0] == "text" and part["text"] == "":
            out.append(
                f"{p}.text: Unable to submit request because it has an empty text parameter."
            )
        if system and data[0] != "text":
            out.append(f"{p}: systemInstruction takes text parts only")
        if "inlineData" in part:
            inline = part["inlineData"]
            if not inline.get("mimeType") or not inline.get("data"):
                out.append(f"{p}.inlineData: mimeType and data are required")
        if "fileData" in part and not part["fileData"].get("fileUri"):
            out.append(f"{p}.fileData.fileUri: required")
        if "functionCall" in part and not part["functionCall"].get("name"):
            out.append(f"{p}.functionCall.name: Name cannot be empty.")
        if "functionResponse" in part:
            resp = part["functionResponse"]
            if not resp.get("name"):
                out.append(f"{p}.functionResponse.name: Name cannot be empty.")
            if not isinstance(resp.get("response"), dict):
                out.append(f"{p}.functionResponse.response: must be an object")
    return out


def _tool_problems(tools: Any) -> tuple[list[str], set[str]]:
    names: set[str] = set()
    if not isinstance(tools, list):
        return ["tools: must be a list"], names
    out: list[str] = []
    for i, tool in enumerate(tools):
        w = f"tools[{i}]"
        problems = _pydantic("Tool", tool, w)
        if problems:
            out.extend(problems)
            continue
        for k, decl in enumerate(tool.get("functionDeclarations") or ()):
            d = f"{w}.function_declarations[{k}]"
            name = decl.get("name")
            if not isinstance(name, str) or _NAME.fullmatch(name) is None:
                out.append(
                    f"{d}.name: Invalid function name. Must start with a letter or an "
                    "underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), "
                    "colons (:), or dashes (-), with a maximum length of 128."
                )
            else:
                if name in names:
                    out.append(f"{d}.name: Duplicate function declaration name {name!r}")
                names.add(name)
            if "parameters" in decl and "parametersJsonSchema" in decl:
                out.append(f"{d}: parameters and parametersJsonSchema are mutually exclusive")
            if "parameters" in decl:
                out.extend(schema_problems(decl["parameters"], f"{d}.parameters"))
            if "parametersJsonSchema" in decl:
                out.extend(
                    _json_schema_problems(
                        decl["parametersJsonSchema"], f"{d}.parameters_json_schema", True
                    )
                )
    return out, names


def _tool_config_problems(cfg: Any, names: set[str]) -> list[str]:
    out = _pydantic("ToolConfig", cfg, "tool_config")
    if out:
        return out
    fcc = cfg.get("functionCallingConfig") or {}
    mode = str(fcc.get("mode") or "AUTO").upper()
    allowed = fcc.get("allowedFunctionNames")
    if allowed:
        if mode not in ("ANY", "VALIDATED"):
            out.append(
                "tool_config.function_calling_config.allowed_function_names: only allowed "
                "when mode is ANY or VALIDATED"
            )
        for name in allowed:
            if name not in names:
                out.append(
                    "tool_config.function_calling_config.allowed_function_names: "
                    f"{name!r} is not a declared function"
                )
    elif mode != "NONE" and mode in ("ANY", "VALIDATED") and not names:
        out.append("tool_config: function calling mode ANY needs function declarations")
    return out


def _thinking_rule(model: str) -> tuple[str, int, int, bool, tuple[str, ...]] | None:
    name = model.rsplit("/", 1)[-1]
    for prefix, mode, low, high, can_disable, levels in THINKING:
        if name.startswith(prefix):
            return mode, low, high, can_disable, levels
    return None


def _thinking_problems(cfg: Any, model: str) -> list[str]:
    out: list[str] = []
    w = "generation_config.thinking_config"
    budget = cfg.get("thinkingBudget")
    level = cfg.get("thinkingLevel")
    rule = _thinking_rule(model)
    if budget is not None and level is not None:
        out.append(f"{w}: thinking_budget and thinking_level cannot be set together")
    if rule is None:
        if budget not in (None, 0) or level is not None or cfg.get("includeThoughts"):
            out.append(f"{w}: Thinking is not supported for this model ({model}).")
        return out
    mode, low, high, can_disable, levels = rule
    if level is not None:
        if mode != "level":
            out.append(f"{w}.thinking_level: Thinking level is not supported for this model.")
        elif str(level).upper() not in levels:
            out.append(f"{w}.thinking_level: {level} is not supported by {model}")
    if isinstance(budget, int) and budget != -1:
        if budget == 0 and not can_disable:
            out.append(f"{w}.thinking_budget: This model only works in thinking mode.")
        elif budget != 0 and mode == "budget" and not low <= budget <= high:
            out.append(
                f"{w}.thinking_budget: The thinking budget {budget} is invalid. Please choose "
                f"a value between {low} and {high}."
            )
    return out


def _generation_problems(cfg: Any, model: str) -> list[str]:
    out = _pydantic("GenerationConfig", cfg, "generation_config")
    if out:
        return out
    w = "generation_config"
    if "responseSchema" in cfg and "responseJsonSchema" in cfg:
        out.append(f"{w}: response_schema and response_json_schema are mutually exclusive")
    if ("responseSchema" in cfg or "responseJsonSchema" in cfg) and cfg.get(
        "responseMimeType"
    ) not in _JSON_MIME:
        out.append(
            f"{w}.response_mime_type: Unable to submit request because the response schema "
            "requires response_mime_type application/json"
        )
    if "responseSchema" in cfg:
        out.extend(schema_problems(cfg["responseSchema"], f"{w}.response_schema"))
    if "responseJsonSchema" in cfg:
        out.extend(
            _json_schema_problems(cfg["responseJsonSchema"], f"{w}.response_json_schema", False)
        )
    stops = cfg.get("stopSequences")
    if isinstance(stops, list) and len(stops) > 5:
        out.append(f"{w}.stop_sequences: at most 5 stop sequences are allowed")
    count = cfg.get("candidateCount")
    if count is not None and not 1 <= count <= 8:
        out.append(f"{w}.candidate_count: must be in the range [1, 8]")
    temp = cfg.get("temperature")
    if temp is not None and not 0 <= temp <= 2:
        out.append(f"{w}.temperature: must be in the range [0.0, 2.0]")
    top_p = cfg.get("topP")
    if top_p is not None and not 0 <= top_p <= 1:
        out.append(f"{w}.top_p: must be in the range [0.0, 1.0]")
    logprobs = cfg.get("logprobs")
    if logprobs is not None:
        if not 0 <= logprobs <= 20:
            out.append(f"{w}.logprobs: must be in the range [0, 20]")
        if not cfg.get("responseLogprobs"):
            out.append(f"{w}.logprobs: only allowed when response_logprobs is true")
    seed = cfg.get("seed")
    if isinstance(seed, int) and not -(2**31) <= seed < 2**31:
        out.append(f"{w}.seed: Invalid value (TYPE_INT32): {seed}")
    max_out = cfg.get("maxOutputTokens")
    if max_out is not None and max_out < 1:
        out.append(f"{w}.max_output_tokens: must be positive")
    thinking = cfg.get("thinkingConfig")
    if isinstance(thinking, dict):
        out.extend(_thinking_problems(thinking, model))
    return out


def request_problems(body: Any, model: str, vertex: bool = False) -> list[str]:
    """What the Gemini API (or Vertex AI) would refuse in a ``generateContent`` /
    ``streamGenerateContent`` / ``countTokens`` body; empty when it would accept it."""
    if not isinstance(body, dict):
        return ["Invalid JSON payload received. Expected an object."]
    allowed = _VERTEX_TOP_LEVEL if vertex else _TOP_LEVEL
    out = [
        f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.'
        for k in body
        if k not in allowed
    ]
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        out.append("* GenerateContentRequest.contents: contents is not specified")
    else:
        for i, content in enumerate(contents):
            out.extend(_content_problems(content, f"contents[{i}]", system=False))
    if "systemInstruction" in body:
        out.extend(_content_problems(body["systemInstruction"], "system_instruction", True))
    names: set[str] = set()
    if "tools" in body:
        problems, names = _tool_problems(body["tools"])
        out.extend(problems)
    if "toolConfig" in body:
        out.extend(_tool_config_problems(body["toolConfig"], names))
    if "generationConfig" in body:
        out.extend(_generation_problems(body["generationConfig"], model))
    for i, setting in enumerate(body.get("safetySettings") or ()):
        out.extend(_pydantic("SafetySetting", setting, f"safety_settings[{i}]"))
    return out


def embed_problems(body: Any, action: str, vertex: bool) -> list[str]:
    """``embedContent`` / ``batchEmbedContents`` bodies (Gemini API and Vertex)."""
    if not isinstance(body, dict):
        return ["Invalid JSON payload received. Expected an object."]
    if action == "batchEmbedContents":
        reqs = body.get("requests")
        extra = [k for k in body if k != "requests"]
        if not isinstance(reqs, list) or not reqs:
            return ["* BatchEmbedContentsRequest.requests: requests is not specified"]
    else:
        reqs = [body]
        extra = []
    out = [f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.' for k in extra]
    if len(reqs) > BATCH_MAX_REQUESTS:
        out.append(
            f"* BatchEmbedContentsRequest.requests: at most {BATCH_MAX_REQUESTS} requests can "
            "be in one batch"
        )
    known = (
        {"content", "embedContentConfig", "model"}
        if vertex
        else {"model", "content", "taskType", "title", "outputDimensionality"}
    )
    for i, req in enumerate(reqs):
        w = f"requests[{i}]" if action == "batchEmbedContents" else "request"
        if not isinstance(req, dict):
            out.append(f"{w}: must be an object")
            continue
        out.extend(
            f'{w}: Invalid JSON payload received. Unknown name "{k}": Cannot find field.'
            for k in req
            if k not in known
        )
        out.extend(_content_problems(req.get("content"), f"{w}.content", system=True))
        dims = req.get("outputDimensionality")
        if vertex and isinstance(req.get("embedContentConfig"), dict):
            dims = req["embedContentConfig"].get("outputDimensionality")
        if dims is not None and (not isinstance(dims, int) or dims < 1):
            out.append(f"{w}.output_dimensionality: must be a positive integer")
    return out


def predict_problems(body: Any, model: str) -> list[str]:
    """Vertex ``:predict`` for embedding models: ``instances`` of ``{"content": ...}``.
    ``gemini-embedding-*`` models take one instance per request (the google-genai SDK
    sends them ``:embedContent`` / ``:batchEmbedContents`` instead); ``text-embedding-*``
    models up to :data:`PREDICT_MAX_INSTANCES`."""
    if not isinstance(body, dict):
        return ["Invalid JSON payload received. Expected an object."]
    out = [
        f'Invalid JSON payload received. Unknown name "{k}": Cannot find field.'
        for k in body
        if k not in ("instances", "parameters")
    ]
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        return [*out, "instances: the request must have at least one instance"]
    name = model.rsplit("/", 1)[-1]
    limit = 1 if "gemini" in name else PREDICT_MAX_INSTANCES
    if len(instances) > limit:
        out.append(
            f"Unable to submit request because {name} supports at most {limit} "
            f"instance{'s' if limit > 1 else ''} per request; got {len(instances)}."
        )
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict) or not isinstance(inst.get("content"), str):
            out.append(f"instances[{i}].content: must be a string")
        elif not inst["content"]:
            out.append(f"instances[{i}].content: must not be empty")
    params = body.get("parameters")
    if params is not None:
        if not isinstance(params, dict):
            out.append("parameters: must be an object")
        else:
            dims = params.get("outputDimensionality")
            if dims is not None and (not isinstance(dims, int) or dims < 1):
                out.append("parameters.outputDimensionality: must be a positive integer")
    return out


def response_problems(body: Any, kind: str = "generate") -> list[str]:
    """A ``GenerateContentResponse`` (``kind="generate"``) or an embedding answer
    (``"embed"``: ``EmbedContentResponse`` / ``BatchEmbedContentsResponse`` shapes) as the
    SDK types read it."""
    if not isinstance(body, dict):
        return ["response: must be an object"]
    if kind == "generate":
        return _pydantic("GenerateContentResponse", body, "response")
    if "embedding" in body:
        rest = {k: v for k, v in body.items() if k != "embedding"}
        out = _pydantic("ContentEmbedding", body["embedding"], "embedding")
        # Vertex embedContent adds usageMetadata (promptTokenCount) and truncated
        meta = rest.pop("usageMetadata", None)
        if meta is not None:
            out.extend(_pydantic("GenerateContentResponseUsageMetadata", meta, "usageMetadata"))
        rest.pop("truncated", None)
        return out + [f"response: unknown field {k}" for k in rest]
    if "predictions" in body:
        out = []
        for i, pred in enumerate(body["predictions"]):
            emb = pred.get("embeddings") if isinstance(pred, dict) else None
            out.extend(_pydantic("ContentEmbedding", emb, f"predictions[{i}].embeddings"))
        return out
    rest = {k: v for k, v in body.items() if k != "usageMetadata"}
    return _pydantic("EmbedContentResponse", rest, "response")
