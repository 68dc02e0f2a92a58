"""The OpenAPI document for the routes in :mod:`interlock.api.router`.

A test checks that every route here exists in the router and vice versa, and the
request schemas list the same required fields that :mod:`interlock.api.validate` enforces.
"""

from __future__ import annotations

from typing import Any

import orjson

from interlock import __version__
from interlock.api.http import Ctx
from interlock.gateway import Gateway

_ERR = {"$ref": "#/components/schemas/Error"}


def _resp(desc: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    body = schema or {"type": "object"}
    return {"description": desc, "content": {"application/json": {"schema": body}}}


def _errors(*codes: int, schema: dict[str, Any] = _ERR) -> dict[str, Any]:
    text = {
        400: "Invalid request (the error's param names the field)",
        401: "Missing or invalid API key",
        403: "The key may not do this",
        404: "Unknown model or object",
        408: "The request body arrived too slowly",
        413: "Body too large",
        415: "Content-Type is not application/json",
        429: "Rate limited or over budget (Retry-After says when to retry)",
        502: "The upstream provider failed",
        503: "Not served now: degraded, circuit open, budget state unavailable, draining (Retry-After)",
        504: "The upstream provider timed out (upstream_timeout), or the request's own deadline ran out (deadline_exceeded)",
    }
    return {str(c): _resp(text[c], schema) for c in codes}


_SEC: list[dict[str, list[str]]] = [{"bearer": []}]
_CHAT_CODES = (400, 401, 403, 404, 408, 413, 415, 429, 502, 503, 504)
_CHAT_ERRORS = _errors(*_CHAT_CODES)
# /v1/messages answers errors in Anthropic's shape, as the anthropic SDK expects.
_MESSAGES_ERRORS = _errors(*_CHAT_CODES, schema={"$ref": "#/components/schemas/AnthropicError"})


def _op(summary: str, *, body: dict[str, Any] | None = None, ok: dict[str, Any], errors: dict[str, Any],
        secure: bool = True, ok_status: str = "200") -> dict[str, Any]:  # fmt: skip
    op: dict[str, Any] = {"summary": summary, "responses": {ok_status: ok, **errors}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if secure:
        op["security"] = _SEC
    return op


def _object(
    properties: dict[str, Any], *required: str, closed: bool = False, **keywords: Any
) -> dict[str, Any]:
    """An object schema: ``required`` must be present; ``closed``: no other field allowed
    (the route refuses unknown fields); ``keywords``: any other JSON Schema keyword."""
    schema: dict[str, Any] = {"type": "object"}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return {**schema, "properties": properties, **keywords}


def _tagged(kind: str, *required: str, **properties: Any) -> dict[str, Any]:
    """A content part or block: ``{"type": kind, ...}``, with ``type`` and ``required``."""
    return _object({"type": {"const": kind}, **properties}, "type", *required)


# Request schemas: what the validators (api/validate.py, messages_format.py, jobs, batches,
# budget_spec.py, auth) accept, field by field, so that schemathesis's negative cases
# break exactly one rule at a time and its positive cases reach the upstream. Objects stay
# open (unknown fields are forwarded to providers) unless the route refuses them.
_STR = {"type": "string"}
_NONEMPTY = {"type": "string", "minLength": 1}
_BOOL = {"type": "boolean"}
_INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
_MODEL = {"type": "string", "minLength": 1, "maxLength": 256}
_MAX_TOKENS = {"type": "integer", "minimum": 1, "maximum": 1_000_000}
_TOKEN_IDS = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
}
# The same text part in both formats (OpenAI content parts, Anthropic content blocks).
_TEXT_PART = _tagged("text", "text", text=_STR)
_CONTENT_PART = {
    "oneOf": [
        _TEXT_PART,
        _tagged(
            "image_url",
            "image_url",
            image_url=_object({"url": _STR, "detail": {"enum": ["auto", "low", "high"]}}, "url"),
        ),
        _tagged(
            "input_audio",
            "input_audio",
            input_audio=_object(
                {"data": _STR, "format": {"enum": ["wav", "mp3"]}}, "data", "format"
            ),
        ),
        _tagged("refusal", "refusal", refusal=_STR),
    ]
}
_TOOL_CALL = _object(
    {
        "id": _STR,
        "type": {"const": "function"},
        "function": _object({"name": _STR, "arguments": _STR}, "name", "arguments"),
    },
    "id",
    "type",
    "function",
)
_MESSAGE = _object(
    {
        "role": {"enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {
            "anyOf": [_STR, {"type": "array", "items": _CONTENT_PART}]
        },  # null: assistant only
        "name": _STR,
        "tool_call_id": _STR,
        "tool_calls": {"type": "array", "items": _TOOL_CALL},
    },
    "role",
    "content",
)
_TOOL = _tagged(
    "function",
    "function",
    function=_object(
        {
            "name": _NONEMPTY,
            "description": _STR,
            "parameters": {"type": "object"},
            "strict": _BOOL,
        },
        "name",
    ),
)
_STOP = {"oneOf": [_STR, {"type": "array", "items": _STR, "maxItems": 4}]}
_SAMPLING = {
    "max_tokens": _MAX_TOKENS,
    "max_completion_tokens": _MAX_TOKENS,
    "n": {"type": "integer", "minimum": 1, "maximum": 8},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
    "stop": _STOP,
    "seed": _INT64,
    "user": _STR,
    "stream": _BOOL,
    "stream_options": _object({"include_usage": _BOOL}),
    "metadata": _object(
        {
            "tags": {
                "type": "array",
                "maxItems": 16,
                "items": {"type": "string", "pattern": "^[A-Za-z0-9_.:/-]{1,64}$"},
            }
        }
    ),
}
_CHAT_REQ = _object(
    {
        "model": _MODEL,
        "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
        **_SAMPLING,
        "tools": {"type": "array", "items": _TOOL},
        "tool_choice": {
            "anyOf": [
                {"enum": ["none", "auto", "required"]},
                _tagged("function", "function", function=_object({"name": _STR}, "name")),
            ]
        },
        "parallel_tool_calls": _BOOL,
        "response_format": _object({"type": {"enum": ["text", "json_object"]}}, "type"),
        "logprobs": _BOOL,
        "top_logprobs": {"type": "integer", "minimum": 0, "maximum": 20},
        "reasoning_effort": _STR,
    },
    "model",
    "messages",
)
_COMPLETION_REQ = _object(
    {
        "model": _MODEL,
        "prompt": {
            "anyOf": [
                _STR,
                {"type": "array", "minItems": 1, "items": _STR},
                _TOKEN_IDS,
                {"type": "array", "minItems": 1, "items": _TOKEN_IDS},
            ]
        },
        **_SAMPLING,
        "best_of": {"type": "integer", "minimum": 1, "maximum": 20},
        "logprobs": {"type": "integer", "minimum": 0, "maximum": 5},
        "echo": _BOOL,
        "suffix": _STR,
    },
    "model",
    "prompt",
)
_EMBED_REQ = _object(
    {
        "model": _MODEL,
        "input": {
            "anyOf": [
                _NONEMPTY,
                {"type": "array", "minItems": 1, "maxItems": 2048, "items": _NONEMPTY},
                {**_TOKEN_IDS, "maxItems": 2048},
                {"type": "array", "minItems": 1, "maxItems": 2048, "items": _TOKEN_IDS},
            ]
        },
        "encoding_format": {"enum": ["float", "base64"]},
        "dimensions": {"type": "integer", "minimum": 1, "maximum": 65536},
        "user": _STR,
    },
    "model",
    "input",
)
_IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"]
_ANTHROPIC_BLOCK = {
    "oneOf": [
        _TEXT_PART,
        _tagged(
            "image",
            "source",
            source=_tagged(
                "base64", "media_type", "data", media_type={"enum": _IMAGE_TYPES}, data=_STR
            ),
        ),
        _tagged("tool_use", "id", "name", "input", id=_STR, name=_STR, input={"type": "object"}),
        _tagged(
            "tool_result",
            "tool_use_id",
            tool_use_id=_STR,
            content={"anyOf": [_STR, {"type": "array", "items": _TEXT_PART}]},
            is_error=_BOOL,
        ),
    ]
}
_THINKING = {
    "oneOf": [
        _object(
            {
                "type": {"const": "enabled"},
                "budget_tokens": {"type": "integer", "minimum": 1024},
                "display": {"enum": ["summarized", "omitted"]},
            },
            "type",
            "budget_tokens",
            closed=True,
        ),
        _object(
            {"type": {"const": "adaptive"}, "display": {"enum": ["summarized", "omitted"]}},
            "type",
            closed=True,
        ),
        _object({"type": {"enum": ["disabled", "between_tools"]}}, "type", closed=True),
    ]
}
_CACHE_CONTROL = _object({"type": {"const": "ephemeral"}, "ttl": {"enum": ["5m", "1h"]}}, "type")
# The anthropic SDK's MessageCreateParams (2.17.0) and MessageCountTokensParams; unknown
# fields are refused (messages_format.py), so these objects are closed.
_MESSAGES_COMMON = {
    "model": _MODEL,
    "messages": {
        "type": "array",
        "minItems": 1,
        "items": _object(
            {
                "role": {"enum": ["user", "assistant", "system"]},
                "content": {"anyOf": [_STR, {"type": "array", "items": _ANTHROPIC_BLOCK}]},
            },
            "role",
            "content",
            closed=True,
        ),
    },
    "system": {"anyOf": [_STR, {"type": "array", "items": _TEXT_PART}]},
    "tools": {
        "type": "array",
        "items": _object(
            {
                "name": _NONEMPTY,
                "description": _STR,
                "input_schema": {"type": "object"},
                "strict": _BOOL,
            },
            "name",
            "input_schema",
        ),
    },
    "thinking": _THINKING,
    "output_config": _object(
        {
            "effort": {"enum": ["low", "medium", "high", "xhigh", "max"]},
            "format": _object(
                {"type": {"const": "json_schema"}, "schema": {"type": "object"}},
                "type",
                "schema",
            ),
        },
        closed=True,
    ),
    "cache_control": _CACHE_CONTROL,
    "speed": {"enum": ["standard", "fast"]},
    "user_profile_id": _STR,
    "workspace_id": _STR,
}
_MESSAGES_FIELDS = {
    **_MESSAGES_COMMON,
    # 0: prompt-cache warming (the prompt reaches the provider, nothing is returned).
    "max_tokens": {**_MAX_TOKENS, "minimum": 0},
    "stream": _BOOL,
    "temperature": {"type": "number", "minimum": 0, "maximum": 1},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "top_k": {"type": "integer", "minimum": 0},
    "stop_sequences": {"type": "array", "items": _STR},
    "metadata": _object({"user_id": _STR, "tags": {"type": "array", "items": _STR}}, closed=True),
    "service_tier": {"enum": ["auto", "standard_only"]},
    "inference_geo": _STR,
}
_MESSAGES_REQ = _object(_MESSAGES_FIELDS, "model", "max_tokens", "messages", closed=True)
# A job's messages body: no cache warming there (a batch has nothing to warm).
_MESSAGES_JOB_REQ = _object(
    {**_MESSAGES_FIELDS, "max_tokens": _MAX_TOKENS}, "model", "max_tokens", "messages", closed=True
)
_COUNT_TOKENS_REQ = _object(_MESSAGES_COMMON, "model", "messages", closed=True)
_TOKEN_COUNT_OK = {
    "description": "The prompt's input tokens (x-interlock-token-count: exact | estimate)",
    "content": {
        "application/json": {
            "schema": _object(
                {"input_tokens": {"type": "integer", "minimum": 0}}, "input_tokens", closed=True
            )
        }
    },
}
_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
_NAMES = {"type": "array", "maxItems": 100, "items": _NONEMPTY}
_RATE_LIMITS = _object(
    {
        "rpm": {"type": "integer", "minimum": 1, "maximum": 10**9},
        "tpm": {"type": "integer", "minimum": 1, "maximum": 10**12},
        "max_concurrency": {"type": "integer", "minimum": 1, "maximum": 10**6},
        "priority": {"type": "integer", "minimum": 0, "maximum": 9},
        "max_wait_s": {"type": "number", "minimum": 0, "maximum": 60},
    },
    closed=True,
)
# Money: at most a billion US dollars (storage/budgets.py MAX_USD), as a number or a string.
_USD = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": 1e9},
        {"type": "string", "pattern": "^[0-9]{1,10}(\\.[0-9]{1,10})?$"},
    ]
}
_BUDGET_REQ = _object(
    {
        "scope": {"enum": ["key", "user", "team", "tag", "global"]},
        "subject": _NAME,
        "window": {"enum": ["daily", "weekly", "monthly", "lifetime"]},
        "limit_usd": _USD,
        "budget_usd": _USD,
        "timezone": {"type": "string", "examples": ["UTC", "Europe/Berlin"]},
    },
    closed=True,
)
_KEY_FIELDS = {
    "name": _NAME,
    "user": _NAME,
    "team": _NAME,
    "tags": _NAMES,
    "models": _NAMES,
    "metadata": {"type": "object"},
    "rate_limits": _RATE_LIMITS,
}
_KEY_REQ = _object(
    {**_KEY_FIELDS, "admin": _BOOL, "budgets": {"type": "array", "items": _BUDGET_REQ}},
    closed=True,
)
_KEY_PATCH = _object(_KEY_FIELDS, closed=True)
_KEY = {"$ref": "#/components/schemas/Key"}
_STREAMING = {
    "description": "The answer (JSON), or Server-Sent Events when stream is true",
    "content": {
        "application/json": {"schema": {"type": "object"}},
        # Each Server-Sent Event (OpenAPI 3.1: `schema` describes one event of the stream).
        "text/event-stream": {
            "schema": _object(
                {
                    "data": _STR,
                    "event": _STR,
                    "id": _STR,
                    "retry": {"type": "integer", "minimum": 0},
                },
                "data",
            )
        },
    },
}
_ADMIN_ERR = _errors(401, 403, 404)
_JOB_REQ = _object(
    {
        "endpoint": {
            "enum": ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages"]
        },
        "body": {"anyOf": [_CHAT_REQ, _COMPLETION_REQ, _EMBED_REQ, _MESSAGES_JOB_REQ]},
        "callback_url": {"type": "string", "format": "uri"},
        "priority": {
            "oneOf": [
                {"enum": ["high", "normal", "low"]},
                {"type": "integer", "minimum": -100, "maximum": 100},
            ]
        },
        # An ISO-8601 time, epoch seconds, or seconds from now; at most 366 days ahead.
        "deadline": {
            "oneOf": [
                {"type": "string", "format": "date-time"},
                {"type": "number", "exclusiveMinimum": 0, "maximum": 31_622_400},
                {"type": "number", "minimum": 1e9, "maximum": 1e11},
            ]
        },
        "metadata": {"type": "object", "maxProperties": 16},
    },
    "endpoint",
    "body",
    closed=True,
)
_JOB = {"$ref": "#/components/schemas/Job"}
_FILE = {"$ref": "#/components/schemas/File"}
_BATCH = {"$ref": "#/components/schemas/Batch"}
_BATCH_REQ = _object(
    {
        "input_file_id": _NONEMPTY,
        "endpoint": {"enum": ["/v1/chat/completions", "/v1/embeddings", "/v1/completions"]},
        "completion_window": {"const": "24h"},
        "metadata": {
            "anyOf": [
                {
                    "type": "object",
                    "maxProperties": 16,
                    "propertyNames": {"maxLength": 64},
                    "additionalProperties": {"type": "string", "maxLength": 512},
                },
                {"type": "null"},
            ]
        },
    },
    "input_file_id",
    "endpoint",
    "completion_window",
    closed=True,
)


def _param(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


def build() -> dict[str, Any]:
    param = _param
    paths: dict[str, Any] = {
        "/v1/chat/completions": {"post": _op("Chat completion", body=_CHAT_REQ, ok=_STREAMING, errors=_CHAT_ERRORS)},
        "/v1/completions": {"post": _op("Text completion (OpenAI-compatible upstreams)", body=_COMPLETION_REQ, ok=_STREAMING, errors=_CHAT_ERRORS)},
        "/v1/embeddings": {"post": _op("Embeddings", body=_EMBED_REQ, ok=_resp("Embeddings list"), errors=_CHAT_ERRORS)},
        "/v1/models": {"get": _op("Models this key may use", ok=_resp("Model list"), errors=_errors(401))},
        "/v1/models/{model}": {"get": {**_op("One model", ok=_resp("Model"), errors=_errors(401, 404)), "parameters": param("model")}},
        "/v1/messages": {"post": _op("Anthropic Messages API (any provider behind it)", body=_MESSAGES_REQ, ok=_STREAMING, errors=_MESSAGES_ERRORS)},
        "/v1/messages/count_tokens": {"post": _op("Anthropic token counting (exact from an Anthropic deployment, else an estimate)", body=_COUNT_TOKENS_REQ, ok=_TOKEN_COUNT_OK, errors=_MESSAGES_ERRORS)},
        "/admin/keys": {
            "get": _op("List virtual keys", ok=_resp("Keys"), errors=_ADMIN_ERR),
            "post": _op("Create a virtual key (the secret is in 'key', shown once)", body=_KEY_REQ, ok=_resp("The new key", _KEY), errors=_errors(400, 401, 403), ok_status="201"),
        },
        "/admin/keys/{key_id}": {
            "parameters": param("key_id"),
            "get": _op("One key", ok=_resp("Key", _KEY), errors=_ADMIN_ERR),
            "patch": _op("Update a key", body=_KEY_PATCH, ok=_resp("Key", _KEY), errors=_errors(400, 401, 403, 404)),
            "delete": _op("Revoke a key", ok=_resp("Key", _KEY), errors=_ADMIN_ERR),
        },
        "/admin/keys/{key_id}/revoke": {"parameters": param("key_id"), "post": _op("Revoke a key", ok=_resp("Key", _KEY), errors=_ADMIN_ERR)},
        "/admin/deployments": {"get": _op("Deployment health: circuit, cooldown, in-flight, latency", ok=_resp("Deployments"), errors=_ADMIN_ERR)},
        "/admin/deployments/{deployment}/reset": {"parameters": param("deployment"), "post": _op("Close the breaker and clear the cooldown of a deployment", ok=_resp("Deployment"), errors=_ADMIN_ERR)},
        "/admin/degradation": {
            "get": _op("Degradation level, mode and signals", ok=_resp("Degradation"), errors=_errors(401, 403)),
            "put": _op("Force a level ({\"level\": \"cached\"}) or hand back control ({\"level\": \"auto\"})", body={"type": "object", "required": ["level"], "properties": {"level": {"enum": ["auto", "full", "limited", "cached", "minimal"]}}}, ok=_resp("Degradation"), errors=_errors(400, 401, 403)),
        },
        "/admin/budgets": {
            "get": _op("Budgets with spend, reserved, remaining, burn rate and projected exhaustion", ok=_resp("Budgets"), errors=_errors(401, 403)),
            "post": _op("Create a budget", body=_BUDGET_REQ, ok=_resp("Budget"), errors=_errors(400, 401, 403), ok_status="201"),
        },
        "/admin/alerts": {"get": _op("Alerts: firing and recently resolved (latency, error rate, queue depth, daily spend), the rules, and budget threshold alerts; ?state=firing|resolved", ok=_resp("Alerts"), errors=_errors(401, 403))},
        "/admin/budgets/alerts": {"get": _op("Budget threshold alerts (50/80/100% of limit, 120/150% of budget)", ok=_resp("Alerts"), errors=_errors(401, 403))},
        "/admin/budgets/{budget_id}": {
            "parameters": param("budget_id"),
            "get": _op("One budget's status", ok=_resp("Budget"), errors=_ADMIN_ERR),
            "delete": _op("Delete a budget (not those from the config file)", ok=_resp("Deleted"), errors=_errors(400, 401, 403, 404)),
        },
        "/v1/cache/{namespace}/{key}": {
            "parameters": param("namespace") + param("key"),
            "put": _op("Store a value (UTF-8 body; ?ttl=seconds, default cache.app.default_ttl_s, at most cache.app.max_ttl_s) in the caller's tenant; 429 cache_quota_exceeded past cache.app.max_bytes_per_tenant", body={"type": "string"}, ok=_resp("Stored"), errors=_errors(400, 401, 413, 429, 503)),
            "get": _op("Read a value of the caller's tenant", ok={"description": "The stored bytes, with the content type they were stored with (any JSON when that was JSON)", "content": {"*/*": {"schema": {}}}}, errors=_errors(400, 401, 404, 429, 503)),
            "delete": _op("Delete a value", ok=_resp("Deleted"), errors=_errors(400, 401, 429, 503)),
        },
        "/v1/jobs": {
            "post": _op("Submit a job: a request run later by a worker (202 once stored; Idempotency-Key header)", body=_JOB_REQ, ok=_resp("The queued job", _JOB), errors=_errors(400, 401, 403, 404, 413, 415, 429), ok_status="202"),
            "get": _op("The caller's jobs, newest first (?status=, ?limit=, ?after=)", ok=_resp("Job list"), errors=_errors(400, 401)),
        },
        "/v1/jobs/{job_id}": {
            "parameters": param("job_id"),
            "get": _op("One job of the caller: status, attempts, result or error, cost", ok=_resp("Job", _JOB), errors=_errors(401, 404)),
            "delete": _op("Cancel a job that has not finished (returns the job)", ok=_resp("Job", _JOB), errors=_errors(401, 404)),
        },
        "/admin/jobs/dead": {"get": _op("Dead-lettered jobs, newest first (?limit=)", ok=_resp("Job list"), errors=_errors(400, 401, 403))},
        "/admin/jobs/{job_id}/requeue": {"parameters": param("job_id"), "post": _op("Send a dead letter back to the queue", ok=_resp("Job", _JOB), errors=_errors(400, 401, 403, 404))},
        "/admin/jobs/webhook-secret": {"get": _op("The secret job webhooks are signed with", ok=_resp("Secret"), errors=_errors(401, 403))},
        "/v1/files": {
            "post": {**_op("Upload a batch input file (multipart: purpose=batch, file=JSONL), checked line by line", ok=_resp("File", _FILE), errors=_errors(400, 401, 413, 415)), "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object", "required": ["purpose", "file"], "additionalProperties": False, "properties": {"purpose": {"const": "batch"}, "file": {"type": "string", "format": "binary"}}}}}}},
            "get": _op("The caller's files, newest first (?purpose=, ?limit=, ?after=, ?order=)", ok=_resp("File list"), errors=_errors(400, 401)),
        },
        "/v1/files/{file_id}": {
            "parameters": param("file_id"),
            "get": _op("One file of the caller", ok=_resp("File", _FILE), errors=_errors(401, 404)),
            "delete": _op("Delete a file of the caller", ok=_resp("Deleted"), errors=_errors(401, 404)),
        },
        "/v1/files/{file_id}/content": {"parameters": param("file_id"), "get": _op("A file's bytes (JSONL)", ok={"description": "The file", "content": {"application/jsonl": {"schema": {"type": "string"}}}}, errors=_errors(401, 404))},
        "/v1/batches": {
            "post": _op("Create a batch from an uploaded file; its lines run as low-priority jobs", body=_BATCH_REQ, ok=_resp("Batch", _BATCH), errors=_errors(400, 401, 404, 413, 415)),
            "get": _op("The caller's batches, newest first (?limit=, ?after=)", ok=_resp("Batch list"), errors=_errors(400, 401)),
        },
        "/v1/batches/{batch_id}": {"parameters": param("batch_id"), "get": _op("One batch of the caller: status, request_counts, output and error file ids", ok=_resp("Batch", _BATCH), errors=_errors(401, 404))},
        "/v1/batches/{batch_id}/cancel": {"parameters": param("batch_id"), "post": _op("Cancel a batch (cancelling, then cancelled with what already ran)", ok=_resp("Batch", _BATCH), errors=_errors(401, 404))},
        "/healthz": {"get": _op("Liveness", ok=_resp("Alive"), errors={}, secure=False)},
        "/readyz": {"get": _op("Readiness: config loaded, storage reachable", ok=_resp("Ready"), errors={"503": _resp("Not ready")}, secure=False)},
        "/metrics": {"get": _op("Prometheus metrics (with telemetry.metrics_token set: only to 'Authorization: Bearer <token>')", ok={"description": "Prometheus text", "content": {"text/plain": {"schema": {"type": "string"}}}}, errors=_errors(401), secure=False)},
        "/dashboard": {"get": _op("The live dashboard page (a login form for an admin key; see docs/dashboard.md)", ok={"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}, errors={}, secure=False)},
        "/dashboard/static/{asset}": {"parameters": param("asset"), "get": _op("A file of the dashboard page (its script, styles and the vendored uPlot)", ok={"description": "The file", "content": {"*/*": {"schema": {"type": "string"}}}}, errors=_errors(404), secure=False)},
        "/admin/dashboard/data": {"get": _op("One dashboard sample: cumulative traffic counters, latency buckets, spend today, budgets, queue, circuits, degradation (process-wide)", ok=_resp("Dashboard sample"), errors=_errors(401, 403))},
        "/openapi.json": {"get": _op("This document", ok=_resp("OpenAPI 3.1"), errors={}, secure=False)},
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "Interlock", "version": __version__},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["message", "type", "code"],
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "param": {"type": ["string", "null"]},
                                "code": {"type": ["string", "null"]},
                            },
                        }
                    },
                },
                "AnthropicError": {
                    "type": "object",
                    "required": ["type", "error"],
                    "properties": {
                        "type": {"const": "error"},
                        "error": {"type": "object", "required": ["type", "message"], "properties": {"type": {"type": "string"}, "message": {"type": "string"}}},
                    },
                },
                "Job": {"type": "object", "required": ["id", "object", "status", "status_url"], "properties": {"id": {"type": "string"}, "object": {"const": "job"}, "status": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]}, "status_url": {"type": "string"}, "attempts": {"type": "integer"}, "runs": {"type": "integer"}, "request_id": {"type": ["string", "null"]}, "result": {"type": ["object", "null"]}, "error": {"type": ["object", "null"]}, "cost_usd": {"type": ["string", "null"]}}},
                "File": {"type": "object", "required": ["id", "object", "bytes", "created_at", "filename", "purpose"], "properties": {"id": {"type": "string"}, "object": {"const": "file"}, "bytes": {"type": "integer"}, "created_at": {"type": "integer"}, "filename": {"type": "string"}, "purpose": {"enum": ["batch", "batch_output"]}, "status": {"type": "string"}}},
                "Batch": {"type": "object", "required": ["id", "object", "endpoint", "input_file_id", "completion_window", "status", "created_at", "request_counts"], "properties": {"id": {"type": "string"}, "object": {"const": "batch"}, "endpoint": {"type": "string"}, "input_file_id": {"type": "string"}, "completion_window": {"type": "string"}, "status": {"enum": ["validating", "in_progress", "finalizing", "completed", "failed", "expired", "cancelling", "cancelled"]}, "output_file_id": {"type": ["string", "null"]}, "error_file_id": {"type": ["string", "null"]}, "errors": {"type": ["object", "null"]}, "request_counts": {"type": "object", "properties": {"total": {"type": "integer"}, "completed": {"type": "integer"}, "failed": {"type": "integer"}}}, "metadata": {"type": ["object", "null"]}}},
                "Key": {"type": "object", "required": ["id", "revoked"], "properties": {"id": {"type": "string"}, "key": {"type": "string"}, "revoked": {"type": "boolean"}}},
            },
        },
    }  # fmt: skip


_DOC: bytes | None = None


async def serve(ctx: Ctx, gw: Gateway) -> None:
    global _DOC
    if _DOC is None:
        _DOC = orjson.dumps(build())
    await ctx.respond(200, _DOC)
