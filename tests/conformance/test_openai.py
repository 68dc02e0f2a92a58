"""OpenAI, Azure OpenAI (classic and v1) and OpenAI-compatible upstreams against what OpenAI
publishes: the vendored OpenAPI document (sim/specs/openai/ORIGIN.md: openai/openai-openapi
f85dbe2, info.version 2.3.0) and the official ``openai`` SDK's types (3.63.0).

* Every case of the canonical matrix (chat, embeddings, and legacy completions written
  here), built by :class:`OpenAIAdapter` for several model families per kind: the outbound
  body fits the spec's request schema (0 mismatches) or the adapter answered a 400 naming
  the parameter; it is sent to the simulated provider (which validates it too), and the
  answer (JSON or each stream chunk) must fit the spec's response schemas and parse with
  the SDK's types.
* Spec-shaped answers written here (usage with cached and reasoning tokens, a refusal, a
  content-filter stop, usage events spaced or pretty-printed, every documented error
  status) fed through ``parse``, ``stream_decoder`` and ``error``.
* The simulator refuses what the spec refuses (400 ``invalid_request_error`` naming the
  parameter) and what OpenAI refuses beyond it (tool-call ids over 40 characters).
"""

from __future__ import annotations

import base64
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import openai
import orjson
import pytest
from openai.types import Completion as SDKCompletion
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from interlock.errors import (
    InvalidRequest,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from interlock.providers.base import Target, UpstreamCall
from interlock.providers.capabilities import rules_for
from interlock.providers.openai_compat import OpenAIAdapter, conform_chat
from interlock.providers.rules.openai import OPENAI_TOOL_ID
from interlock.settings import ProviderSettings
from interlock.sim.conformance import openai as spec
from interlock.sim.control import SimControl
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest
from tests.conformance.matrix import CHAT_CASES, EMBEDDING_CASES, FOREIGN_ID, Case
from tests.support.databases import db_rows
from tests.support.gateway import MASTER_KEY, SIM_KEY, GatewayProcess, sim_config


@dataclass(frozen=True)
class Kind:
    """One provider kind as the registry builds it, pointed at the simulator."""

    name: str
    adapter: OpenAIAdapter
    base: str  # appended to the simulator's URL
    api_version: str | None
    headers: dict[str, str]
    chat_models: tuple[str, ...]
    embed_model: str


KINDS = (
    Kind(
        "openai",
        OpenAIAdapter(kind="openai"),
        "/v1",
        None,
        {"authorization": "Bearer sk-test"},
        ("gpt-4.1", "o4-mini", "gpt-5", "gpt-5.1"),
        "text-embedding-3-small",
    ),
    Kind(
        "azure-classic",
        OpenAIAdapter(azure=True),
        "",
        "2024-10-21",
        {"api-key": "azure-key"},
        ("gpt-4o", "o3-mini"),
        "text-embedding-3-large",
    ),
    Kind(
        "azure-v1",
        OpenAIAdapter(azure=True),
        "/openai/v1",
        None,
        {"api-key": "azure-key"},
        ("gpt-4.1-mini", "gpt-5-mini"),
        "text-embedding-3-small",
    ),
    Kind(
        "openai_compatible",
        OpenAIAdapter(kind="openai_compatible"),
        "/v1",
        None,
        {"authorization": "Bearer local"},
        ("meta-llama/Llama-3.1-8B-Instruct", "openai/gpt-oss-20b"),
        "BAAI/bge-m3",
    ),
)

COMPLETION_CASES: tuple[Case, ...] = (
    Case("completion_plain", {"model": "m", "prompt": "Say hi", "max_tokens": 16}),
    Case("completion_batch", {"model": "m", "prompt": ["one", "two"], "n": 1}),
    Case(
        "completion_stream",
        {"model": "m", "prompt": "Say hi", "stream": True, "stop": ["\n"]},
        stream=True,
    ),
)

# Embedding requests beyond the shared matrix: what the openai SDK sends by default
# (base64), token-id input, a user tag.
EMBEDDING_EXTRA: tuple[Case, ...] = (
    Case("base64", {"model": "e", "input": ["a", "b"], "encoding_format": "base64"}),
    Case("token_ids", {"model": "e", "input": [[1, 2, 3], [4, 5]], "encoding_format": "float"}),
    Case("user", {"model": "e", "input": "hello", "user": "u-1"}),
)

CHECKS: Counter[str] = Counter()


def issues(schema: str, obj: Any) -> list[str]:
    CHECKS["spec"] += 1
    return [str(i) for i in spec.issues(schema, obj)]


def request_of(endpoint: Endpoint, body: JSON) -> GatewayRequest:
    return GatewayRequest(
        endpoint=endpoint,
        model="alias",
        body=body,
        raw=orjson.dumps(body),
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )


def target_of(kind: Kind, model: str, url: str = "https://upstream.example") -> Target:
    return Target(
        name="dep",
        provider=kind.name,
        model=model,
        base_url=url + kind.base,
        headers=kind.headers,
        api_version=kind.api_version,
    )


@pytest.fixture(scope="module")
def http(sim_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def _send(http: httpx.Client, call: UpstreamCall) -> httpx.Response:
    return http.request(call.method, call.url, headers=call.headers, content=call.body)


def _stream_events(raw: bytes) -> list[Any]:
    """The JSON of each ``data:`` event of an SSE body (``[DONE]`` as the string)."""
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        lines = [ln[5:].lstrip() for ln in block.split("\n") if ln.startswith("data:")]
        if lines:
            text = "\n".join(lines)
            out.append(text if text == "[DONE]" else orjson.loads(text))
    return out


def _outbound_ok(kind: Kind, model: str, call: UpstreamCall, path: str) -> JSON:
    body = orjson.loads(call.body)
    assert issues(spec.REQUEST_SCHEMAS[path], body) == [], (kind.name, model, body)
    assert "thinking" not in body
    if kind.name == "azure-classic":
        assert f"/openai/deployments/{model}/{path}?api-version=" in call.url
    elif kind.name == "azure-v1":
        assert call.url.endswith(f"/openai/v1/{path}") and "api-version" not in call.url
        assert body["model"] == model
    else:
        assert call.url.endswith(f"/v1/{path}") and body["model"] == model
    if path == "chat/completions":
        if kind.name != "openai_compatible":
            assert "max_tokens" not in body  # deprecated: max_completion_tokens
        for msg in body["messages"]:
            for tc in msg.get("tool_calls") or ():
                assert OPENAI_TOOL_ID.accepts(tc["id"])
            if "tool_call_id" in msg:
                assert OPENAI_TOOL_ID.accepts(msg["tool_call_id"])
    CHECKS[kind.name] += 1
    return dict(body)


def _run_chat(http: httpx.Client, sim_url: str, kind: Kind, model: str, case: Case) -> None:
    req = request_of(Endpoint.CHAT, case.body)
    target = target_of(kind, model, sim_url)
    try:
        call = kind.adapter.build(req, target)
    except InvalidRequest as exc:
        # Refused: only where the case asked for something the model cannot give.
        assert exc.param in case.body, (kind.name, model, case.name, exc)
        CHECKS[kind.name] += 1
        return
    sent = _outbound_ok(kind, model, call, "chat/completions")
    for warning in call.warnings:
        param = warning.split(" ", 1)[0]
        assert param in case.body, (case.name, warning)  # only what the client sent
        assert param not in sent or param == "reasoning_effort"
    resp = _send(http, call)
    assert resp.status_code == 200, (kind.name, model, case.name, resp.text)
    if not case.stream:
        assert issues("CreateChatCompletionResponse", resp.json()) == []
        done = kind.adapter.parse(req, target, 200, resp.content)
        answer = ChatCompletion.model_validate(orjson.loads(done.body))
        assert done.usage is not None and not done.usage.estimated
        assert answer.usage is not None and done.usage.prompt_tokens == answer.usage.prompt_tokens
        assert len(answer.choices) == (case.body.get("n") or 1)
        CHECKS[kind.name] += 2
        return
    for event in _stream_events(resp.content):
        if event != "[DONE]":
            assert issues("CreateChatCompletionStreamResponse", event) == []
    decoder = kind.adapter.stream_decoder(req, target)
    chunks = decoder.feed(resp.content) + decoder.close()
    for chunk in chunks:
        assert issues("CreateChatCompletionStreamResponse", chunk.obj) == []
        ChatCompletionChunk.model_validate(chunk.obj)
    usage_only = [c for c in chunks if not c.obj.get("choices")]
    # The usage chunk reaches the client only if the client asked for it.
    assert len(usage_only) == (1 if req.include_usage else 0), case.name
    assert decoder.usage is not None and decoder.completed
    CHECKS[kind.name] += 3


def _run_plain(
    http: httpx.Client, sim_url: str, kind: Kind, case: Case, endpoint: Endpoint, model: str
) -> None:
    path = {Endpoint.EMBEDDINGS: "embeddings", Endpoint.COMPLETIONS: "completions"}[endpoint]
    req = request_of(endpoint, case.body)
    target = target_of(kind, model, sim_url)
    call = kind.adapter.build(req, target)
    _outbound_ok(kind, model, call, path)
    resp = _send(http, call)
    assert resp.status_code == 200, (kind.name, case.name, resp.text)
    if endpoint is Endpoint.EMBEDDINGS:
        answer = resp.json()
        if case.body.get("encoding_format") == "base64":
            # The spec types an embedding as floats; asked for base64, the API sends the
            # little-endian float32 bytes base64-encoded, which the SDK decodes.
            for item in answer["data"]:
                raw = base64.b64decode(item["embedding"])
                item["embedding"] = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        assert issues("CreateEmbeddingResponse", answer) == []
        done = kind.adapter.parse(req, target, 200, resp.content)
        assert done.usage is not None and not done.usage.estimated
        emb = CreateEmbeddingResponse.model_validate(answer)
        expected = case.body["input"]
        assert len(emb.data) == (len(expected) if isinstance(expected, list) else 1)
        if "dimensions" in case.body:
            assert len(emb.data[0].embedding) == case.body["dimensions"]
    elif case.stream:
        decoder = kind.adapter.stream_decoder(req, target)
        chunks = decoder.feed(resp.content) + decoder.close()
        for chunk in chunks:
            # The spec has no stream schema for legacy completions: chunks are
            # CreateCompletionResponse objects whose finish_reason is null until the last
            # (OpenAI's streams; the SDK parses them with the same type, unvalidated).
            event = orjson.loads(orjson.dumps(chunk.obj))
            for choice in event["choices"]:
                choice["finish_reason"] = choice["finish_reason"] or "stop"
            assert issues("CreateCompletionResponse", event) == []
            SDKCompletion.model_validate(event)
        assert chunks and decoder.usage is not None
    else:
        assert issues("CreateCompletionResponse", resp.json()) == []
        done = kind.adapter.parse(req, target, 200, resp.content)
        SDKCompletion.model_validate(orjson.loads(done.body))
    CHECKS[kind.name] += 2


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_matrix_through_adapter_spec_and_simulator(
    kind: Kind, http: httpx.Client, sim_url: str
) -> None:
    before = CHECKS[kind.name]
    for model in kind.chat_models:
        for case in CHAT_CASES:
            _run_chat(http, sim_url, kind, model, case)
    for case in EMBEDDING_CASES + EMBEDDING_EXTRA:
        _run_plain(http, sim_url, kind, case, Endpoint.EMBEDDINGS, kind.embed_model)
    for case in COMPLETION_CASES:
        _run_plain(http, sim_url, kind, case, Endpoint.COMPLETIONS, "gpt-3.5-turbo-instruct")
    checks = CHECKS[kind.name] - before
    print(f"{kind.name}: {checks} checks, 0 mismatches")
    assert checks >= 3 * len(CHAT_CASES)


# ------------------------------------------------------------------ the capability table


def _conform(kind: str, model: str, **body: Any) -> tuple[JSON, tuple[str, ...]]:
    full = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}
    out, warnings = conform_chat(kind, model, full)
    return (out if out is not None else full), warnings


def test_reasoning_models_translate_drop_and_refuse() -> None:
    body, warnings = _conform("openai", "o3", max_tokens=50, temperature=0.2, top_p=0.5)
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body
    assert "temperature" not in body and "top_p" not in body
    assert sorted(w.split(" ")[0] for w in warnings) == ["temperature", "top_p"]
    with pytest.raises(InvalidRequest) as refused:
        _conform("openai", "o4-mini", logprobs=True)
    assert refused.value.param == "logprobs" and refused.value.code == "unsupported_parameter"
    # o3 / o4-mini / GPT-5 refuse stop sequences; o3-mini takes them.
    body, warnings = _conform("openai", "o4-mini-2025-04-16", stop=["END"])
    assert "stop" not in body and warnings[0].startswith("stop dropped")
    body, warnings = _conform("azure", "o3-mini", stop=["END"])
    assert body["stop"] == ["END"] and warnings == ()
    # Efforts a family does not take move to the nearest one it does.
    body, warnings = _conform("openai", "o3", reasoning_effort="minimal")
    assert body["reasoning_effort"] == "low" and "sent as 'low'" in warnings[0]
    body, _ = _conform("openai", "gpt-5.2", reasoning_effort="max")
    assert body["reasoning_effort"] == "xhigh"
    # GPT-5.1+ take sampling parameters with reasoning_effort none (their default) only.
    body, warnings = _conform("openai", "gpt-5.1", temperature=0.3, logprobs=True)
    assert body["temperature"] == 0.3 and body["logprobs"] is True and warnings == ()
    body, warnings = _conform("azure", "gpt-5.1", temperature=0.3, reasoning_effort="high")
    assert "temperature" not in body and warnings
    # Chat models take every sampling parameter but no reasoning_effort.
    body, warnings = _conform("openai", "gpt-4o", temperature=0.3, reasoning_effort="low")
    assert body["temperature"] == 0.3 and "reasoning_effort" not in body
    assert warnings == ("reasoning_effort dropped: not supported by gpt-4o/4.1 models",)


def test_thinking_extension_never_leaves() -> None:
    for budget, effort in ((1024, "low"), (2048, "low"), (8192, "medium"), (20000, "high")):
        body, _ = _conform("openai", "o3", thinking={"type": "enabled", "budget_tokens": budget})
        assert body["reasoning_effort"] == effort and "thinking" not in body
    body, _ = _conform("openai", "gpt-5.1", thinking={"type": "disabled"})
    assert body["reasoning_effort"] == "none"
    body, warnings = _conform(
        "openai", "gpt-4.1", thinking={"type": "enabled", "budget_tokens": 2000}
    )
    assert "thinking" not in body and "reasoning_effort" not in body
    assert warnings[0].startswith("thinking dropped")
    body, warnings = _conform("openai_compatible", "llama3", thinking={"type": "adaptive"})
    assert "thinking" not in body and warnings
    body, _ = _conform(
        "openai_compatible", "gpt-oss-120b", thinking={"type": "enabled", "budget_tokens": 9000}
    )
    assert body["reasoning_effort"] == "high"
    # The client's effort wins over the extension.
    body, _ = _conform(
        "openai", "o3", reasoning_effort="low", thinking={"type": "enabled", "budget_tokens": 9e3}
    )
    assert body["reasoning_effort"] == "low"


def test_compatible_servers_stay_permissive_and_bodies_are_not_mutated() -> None:
    original = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": FOREIGN_ID,
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": FOREIGN_ID, "content": "ok"},
        ],
        "max_tokens": 10,
        "temperature": 1.7,
        "logprobs": True,
    }
    snapshot = orjson.dumps(original)
    out, warnings = conform_chat("openai_compatible", "qwen2.5", original)
    assert out is not None and warnings == ()  # passed through as sent, ids shortened
    assert out["max_tokens"] == 10 and out["temperature"] == 1.7 and out["logprobs"] is True
    assert len(out["messages"][2]["tool_call_id"]) <= 40
    with pytest.raises(InvalidRequest):
        conform_chat("azure", "o3-mini", original)  # logprobs
    del original["logprobs"]
    snapshot = orjson.dumps(original)
    out, _ = conform_chat("openai", "gpt-4o", original)
    assert out is not None and orjson.dumps(original) == snapshot  # the request's body intact
    ids = [out["messages"][1]["tool_calls"][0]["id"], out["messages"][2]["tool_call_id"]]
    assert ids[0] == ids[1] and len(ids[0]) <= 40 and ids[0] != FOREIGN_ID
    again, _ = conform_chat("azure", "gpt-4o", original)
    assert again is not None and again["messages"][2]["tool_call_id"] == ids[0]  # stable
    # Deprecated with an equivalent: functions -> tools.
    out, _ = conform_chat(
        "openai_compatible",
        "llama",
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "functions": [{"name": "f"}],
            "function_call": {"name": "f"},
        },
    )
    assert out is not None and out["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert issues("CreateChatCompletionRequest", out) == []


def test_families_resolve() -> None:
    assert rules_for("openai", "o3-mini").family == "o-series"
    assert rules_for("openai", "gpt-5-chat-latest").family == "gpt-5-chat"
    assert rules_for("openai", "gpt-5.2-pro").family == "gpt-5.2+"
    assert rules_for("azure", "gpt-4o-2024-11-20").family == "gpt-4o/4.1"
    assert rules_for("openai", "ft:gpt-4o-mini:acme::abc").family == "default"
    assert rules_for("openai_compatible", "gpt-oss-20b").family == "gpt-oss"


# ------------------------------------------------------------------ Azure configuration


def test_azure_v1_config_and_urls() -> None:
    v1 = ProviderSettings(kind="azure", base_url="https://res.openai.azure.com/openai/v1/")
    explicit = ProviderSettings(
        kind="azure", base_url="https://res.openai.azure.com", api_version="v1"
    )
    adapter = OpenAIAdapter(azure=True)
    for p in (v1, explicit):
        assert p.base_url is not None
        t = Target(
            name="d", provider="az", model="gpt-4o", base_url=p.base_url, api_version=p.api_version
        )
        assert (
            adapter.url(Endpoint.CHAT, t)
            == "https://res.openai.azure.com/openai/v1/chat/completions"
        )
    classic = Target(
        name="d", provider="az", model="my-dep", base_url="https://res.openai.azure.com"
    )
    assert adapter.url(Endpoint.EMBEDDINGS, classic) == (
        "https://res.openai.azure.com/openai/deployments/my-dep/embeddings?api-version=2024-10-21"
    )
    with pytest.raises(ValueError, match="takes no api-version"):
        ProviderSettings(
            kind="azure",
            base_url="https://res.openai.azure.com/openai/v1",
            api_version="2024-10-21",
        )
    with pytest.raises(ValueError, match="resource endpoint"):
        ProviderSettings(kind="azure", base_url="https://res.openai.azure.com/openai")


def test_simulator_serves_azure_like_azure(http: httpx.Client, sim_url: str) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    v1 = sim_url + "/openai/v1/chat/completions"
    assert http.post(v1, json=body).status_code == 401
    assert http.post(v1, json=body, headers={"authorization": "Bearer tok"}).status_code == 200
    dated = http.post(v1 + "?api-version=2024-10-21", json=body, headers={"api-key": "k"})
    assert dated.status_code == 400 and "not allowed" in dated.json()["error"]["message"]
    classic = sim_url + "/openai/deployments/gpt-4o/chat/completions"
    assert http.post(classic, json=body, headers={"api-key": "k"}).status_code == 404


# ------------------------------------------------------------------ the simulator refuses


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": "gpt-4o", "messages": []}, "messages", "empty_array"),
        (
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "temperature": 2.5},
            "temperature",
            "above_max_value",
        ),
        (
            {"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]},
            "messages[0].role",
            "invalid_value",
        ),
        (
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "n": "two"},
            "n",
            "invalid_type",
        ),
        (
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 21},
            "top_logprobs",
            "above_max_value",
        ),
        (
            {
                "model": "gpt-4o",
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": FOREIGN_ID,
                                "type": "function",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": FOREIGN_ID, "content": "y"},
                ],
            },
            "messages[1].tool_calls[0].id",
            "string_above_max_length",
        ),
    ],
)
def test_simulator_refuses_what_openai_refuses(
    http: httpx.Client, sim_url: str, body: JSON, param: str, code: str
) -> None:
    resp = http.post(sim_url + "/v1/chat/completions", json=body)
    assert resp.status_code == 400
    error = resp.json()
    assert issues("ErrorResponse", error) == []
    assert error["error"]["type"] == "invalid_request_error"
    assert (error["error"]["param"], error["error"]["code"]) == (param, code)


def test_simulator_accepts_unknown_top_level_keys_and_nulls(
    http: httpx.Client, sim_url: str
) -> None:
    # The spec's request schema does not set additionalProperties, and its "nullable"
    # fields take null.
    body = {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "x"}],
        "max_completion_tokens": None,
        "temperature": None,
        "vendor_extension": {"a": 1},
    }
    assert http.post(sim_url + "/v1/chat/completions", json=body).status_code == 200
    emb = http.post(sim_url + "/v1/embeddings", json={"model": "e", "input": []})
    assert emb.status_code == 400 and emb.json()["error"]["param"] == "input"


# ------------------------------------------------------------------ spec-shaped answers

OPENAI = KINDS[0]
ANSWER: JSON = {
    "id": "chatcmpl-abc",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "o3-2025-04-16",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Paris.",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 256,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
}


def _parse(answer: JSON) -> tuple[ChatCompletion, Any]:
    assert issues("CreateChatCompletionResponse", answer) == []
    req = request_of(Endpoint.CHAT, {"model": "m", "messages": [{"role": "user", "content": "q"}]})
    done = OPENAI.adapter.parse(req, target_of(OPENAI, "o3"), 200, orjson.dumps(answer))
    return ChatCompletion.model_validate(orjson.loads(done.body)), done.usage


def test_usage_with_cached_and_reasoning_tokens() -> None:
    answer, usage = _parse(ANSWER)
    assert (usage.prompt_tokens, usage.completion_tokens) == (1200, 300)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (1024, 256)
    assert not usage.estimated
    assert answer.usage is not None and answer.usage.completion_tokens_details is not None
    assert answer.usage.completion_tokens_details.reasoning_tokens == 256


def test_refusal_and_content_filter_pass_through() -> None:
    refusal = orjson.loads(orjson.dumps(ANSWER))
    refusal["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
    answer, _ = _parse(refusal)
    assert answer.choices[0].message.refusal == "I can't help with that."
    filtered = orjson.loads(orjson.dumps(ANSWER))
    filtered["choices"][0]["finish_reason"] = "content_filter"
    filtered["choices"][0]["message"]["content"] = None
    answer, _ = _parse(filtered)
    assert answer.choices[0].finish_reason == "content_filter"


def _chunk(
    delta: JSON, finish: str | None = None, usage: Any = None, with_usage: bool = True
) -> JSON:
    out: JSON = {
        "id": "chatcmpl-s",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if with_usage:
        out["usage"] = usage
    return out


USAGE_EVENT: JSON = {
    "id": "chatcmpl-s",
    "object": "chat.completion.chunk",
    "created": 1741569952,
    "model": "gpt-4o",
    "choices": [],
    "usage": {
        "prompt_tokens": 40,
        "completion_tokens": 7,
        "total_tokens": 47,
        "prompt_tokens_details": {"cached_tokens": 32},
        "completion_tokens_details": {"reasoning_tokens": 3},
    },
}


def _sse(events: list[JSON], style: str) -> bytes:
    out = b""
    for event in events:
        if style == "compact":
            text = orjson.dumps(event).decode()
        elif style == "spaced":  # what json.dumps writes: "usage": {
            import json

            text = json.dumps(event)
        else:  # pretty-printed: one data line per JSON line
            text = orjson.dumps(event, option=orjson.OPT_INDENT_2).decode()
        out += b"".join(f"data: {line}\n".encode() for line in text.split("\n")) + b"\n"
    return out + b"data: [DONE]\n\n"


@pytest.mark.parametrize("style", ["compact", "spaced", "pretty"])
@pytest.mark.parametrize("client_asked", [False, True])
def test_stream_usage_found_by_parsing(style: str, client_asked: bool) -> None:
    events = [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"content": "Hi there, usage is fine"}),
        _chunk({}, "stop"),
        USAGE_EVENT,
    ]
    for event in events:
        assert issues("CreateChatCompletionStreamResponse", event) == []
    body: JSON = {"model": "m", "messages": [{"role": "user", "content": "q"}], "stream": True}
    if client_asked:
        body["stream_options"] = {"include_usage": True}
    req = request_of(Endpoint.CHAT, body)
    call = OPENAI.adapter.build(req, target_of(OPENAI, "gpt-4o"))
    assert orjson.loads(call.body)["stream_options"] == {"include_usage": True}
    decoder = OPENAI.adapter.stream_decoder(req, target_of(OPENAI, "gpt-4o"))
    raw = _sse(events, style)
    chunks: list[Chunk] = []
    for i in range(0, len(raw), 7):  # split anywhere
        chunks += decoder.feed(raw[i : i + 7])
    chunks += decoder.close()
    usage = decoder.usage
    assert usage is not None and not usage.estimated
    assert (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        usage.reasoning_tokens,
    ) == (
        40,
        7,
        32,
        3,
    )
    usage_only = [c for c in chunks if not c.obj.get("choices")]
    assert len(usage_only) == (1 if client_asked else 0)
    assert decoder.partial_usage(False) == usage
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.obj)
        # What the client's stream carries: each event on one data: line.
        assert chunk.raw is None or b"\n" not in chunk.raw


# Each documented error status (OpenAI's error codes guide) with its ErrorResponse body.
ERRORS = [
    (400, "invalid_request_error", "context_length_exceeded", UpstreamBadRequest),
    (401, "invalid_request_error", "invalid_api_key", UpstreamUnavailable),
    (403, "permission_error", "unsupported_country_region_territory", UpstreamUnavailable),
    (404, "invalid_request_error", "model_not_found", UpstreamBadRequest),
    (409, "invalid_request_error", None, UpstreamUnavailable),
    (422, "invalid_request_error", None, UpstreamBadRequest),
    (429, "requests", "rate_limit_exceeded", UpstreamRateLimited),
    (429, "insufficient_quota", "insufficient_quota", UpstreamRateLimited),
    (500, "server_error", None, UpstreamUnavailable),
    (503, "server_error", None, UpstreamUnavailable),
]


@pytest.mark.parametrize(("status", "etype", "code", "expected"), ERRORS)
def test_documented_errors_map(
    status: int, etype: str, code: str | None, expected: type[UpstreamError]
) -> None:
    body = {
        "error": {"message": f"upstream says {status}", "type": etype, "param": None, "code": code}
    }
    assert issues("ErrorResponse", body) == []
    err = OPENAI.adapter.error(status, {"retry-after": "2"}, orjson.dumps(body))
    assert type(err) is expected and err.upstream_status == status
    if status == 400:
        assert err.code == "context_length_exceeded"
    if status == 429:
        assert isinstance(err, UpstreamRateLimited) and err.retry_after == 2.0
    if status in (401, 403):
        assert "credentials" in str(err)  # never the client's 401
    else:
        assert f"upstream says {status}" in str(err)


def test_spec_origin_recorded() -> None:
    doc = spec.spec()
    assert (doc["openapi"], doc["info"]["version"]) == ("3.1.0", "2.3.0")
    from importlib import resources

    origin = resources.files("interlock.sim").joinpath("specs/openai/ORIGIN.md").read_text()
    assert "f85dbe223d40e1a31cba812ab2d755c7e98a92a3" in origin


# ------------------------------------------------------------- through the gateway


class _SpacedUpstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that writes its JSON the way json.dumps does
    (``"usage": {``) or pretty-printed over several data: lines (model ``pretty``)."""

    bodies: ClassVar[list[JSON]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = orjson.loads(self.rfile.read(int(self.headers["content-length"])))
        self.bodies.append(body)
        pretty = body["model"] == "pretty"
        events = [
            _chunk({"role": "assistant", "content": ""}, with_usage=False),
            _chunk({"content": "usage of trains"}, with_usage=False),
            _chunk({}, "stop", with_usage=False),
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(USAGE_EVENT)
        raw = _sse(events, "pretty" if pretty else "spaced")
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def _ledger(state: Path, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(rows := db_rows(state, "SELECT * FROM ledger ORDER BY created_at")) < n:
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)
    return rows


def test_gateway_streams_azure_v1_and_reasoning_rules(
    sim_url: str, sim: SimControl, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Over HTTP, through a gateway process: usage read from spaced and pretty-printed
    streams (billed as reported, the usage chunk the gateway asked for kept from clients
    that did not), Azure's v1 API, and an o-series deployment's rules with their warnings."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _SpacedUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    work = tmp_path_factory.mktemp("gw-openai")
    cfg = sim_config(sim_url, work / "state")
    cfg["providers"].update(
        {
            "spaced": {
                "kind": "openai_compatible",
                "base_url": f"http://127.0.0.1:{upstream.server_address[1]}/v1",
            },
            "sim-openai": {"kind": "openai", "base_url": f"{sim_url}/v1", "api_key": SIM_KEY},
            "sim-azure-v1": {
                "kind": "azure",
                "base_url": f"{sim_url}/openai/v1",
                "api_key": SIM_KEY,
            },
        }
    )
    cfg["deployments"].update(
        {
            "spaced": {"provider": "spaced", "model": "spaced"},
            "pretty": {"provider": "spaced", "model": "pretty"},
            "o3": {"provider": "sim-openai", "model": "o3-mini"},
            "azure-v1": {"provider": "sim-azure-v1", "model": "gpt-4o"},
        }
    )
    cfg["models"].update(
        {name: {"deployments": [name]} for name in ("spaced", "pretty", "o3", "azure-v1")}
    )
    gateway = GatewayProcess(cfg, work).start()
    try:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0)
        for model in ("spaced", "pretty"):
            for asked in (False, True):
                extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if asked else {}
                chunks = list(
                    client.chat.completions.create(
                        model=model,
                        messages=[{"role": "user", "content": "hi"}],
                        stream=True,
                        **extra,
                    )
                )
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                assert text == "usage of trains"
                usage_chunks = [c for c in chunks if not c.choices]
                assert len(usage_chunks) == (1 if asked else 0), (model, asked)
                if asked:
                    assert usage_chunks[0].usage is not None
                    assert usage_chunks[0].usage.prompt_tokens == 40
        rows = _ledger(work / "state", 4)
        tokens = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
        assert [tuple(r[k] for k in tokens) for r in rows] == [(40, 7, 32, 3)] * 4
        assert not any(r["usage_estimated"] for r in rows)
        assert all(b["stream_options"] == {"include_usage": True} for b in _SpacedUpstream.bodies)

        # Azure's v1 API: /openai/v1/chat/completions, the deployment as model, no api-version.
        sim.reset()
        answer = client.chat.completions.create(
            model="azure-v1", messages=[{"role": "user", "content": "hi"}], max_tokens=20
        )
        assert answer.choices[0].message.content
        seen = sim.requests()[-1]
        assert seen["path"] == "/openai/v1/chat/completions" and not seen["query"]
        sent = orjson.loads(seen["body"])
        assert sent["model"] == "gpt-4o" and sent["max_completion_tokens"] == 20
        assert issues("CreateChatCompletionRequest", sent) == []

        # An o-series deployment: sampling knobs dropped and said so, logprobs refused.
        raw = client.chat.completions.with_raw_response.create(
            model="o3",
            messages=[{"role": "user", "content": "hi"}],
            temperature=0.2,
            max_tokens=30,
            extra_body={"thinking": {"type": "enabled", "budget_tokens": 4000}},
        )
        assert "temperature dropped" in raw.headers["x-interlock-warnings"]
        sent = orjson.loads(sim.requests()[-1]["body"])
        assert "temperature" not in sent and "thinking" not in sent
        assert (sent["max_completion_tokens"], sent["reasoning_effort"]) == (30, "medium")
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(
                model="o3", messages=[{"role": "user", "content": "hi"}], logprobs=True
            )
        error = refused.value.body
        assert isinstance(error, dict)
        assert (error["code"], error["param"]) == ("unsupported_parameter", "logprobs")
    finally:
        gateway.stop()
        upstream.shutdown()


def test_compatible_servers_get_the_cap_under_both_names() -> None:
    """A self-hosted server that only reads max_tokens (llama.cpp, TGI, older vLLM) must
    still stop at a cap given as max_completion_tokens (the inbound Messages API sends that
    name): the budget's reservation assumes the cap holds."""
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}],
            "max_completion_tokens": 64}  # fmt: skip
    out, warnings = conform_chat("openai_compatible", "llama-3", body)
    assert out is not None and warnings == ()
    assert out["max_tokens"] == 64 and out["max_completion_tokens"] == 64
    assert "max_tokens" not in body  # the request's own body is untouched
    assert issues("CreateChatCompletionRequest", out) == []
    both = {**body, "max_tokens": 32}  # the client's own choice stays
    out, _ = conform_chat("openai_compatible", "llama-3", both)
    assert out is None or out["max_tokens"] == 32


def test_base_model_names_the_rules_and_price_of_a_free_form_deployment() -> None:
    """An Azure deployment is named by the operator: ``base_model`` says what it serves, so
    the reasoning model's rules apply and its table price is found."""
    from interlock.settings import DeploymentSettings
    from interlock.spend.prices import PriceTable, UnknownPricePolicy, resolve_price

    body = {"model": "reasoner", "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 50, "temperature": 0.3}  # fmt: skip
    req = GatewayRequest(Endpoint.CHAT, "reasoner", body, orjson.dumps(body))
    adapter = OpenAIAdapter(azure=True)
    base = {"name": "d", "provider": "az", "model": "prod-reasoner",
            "base_url": "https://res.openai.azure.com", "api_version": "2024-10-21"}  # fmt: skip
    free = adapter.build(req, Target(**base))  # type: ignore[arg-type]
    named = adapter.build(req, Target(**base, base_model="o3-mini"))  # type: ignore[arg-type]
    sent = orjson.loads(named.body)
    assert "temperature" not in sent and sent["max_completion_tokens"] == 50
    assert any("temperature" in w for w in named.warnings)
    assert orjson.loads(free.body)["temperature"] == 0.3  # unknown name: permissive rules
    table, block = PriceTable.load(), UnknownPricePolicy("block")
    dep = DeploymentSettings(provider="az", model="prod-reasoner", base_model="o3-mini")
    assert resolve_price(dep, "azure", table, block).table_id == "o3-mini"
    plain = DeploymentSettings(provider="az", model="prod-reasoner")
    assert resolve_price(plain, "azure", table, block).blocked  # unknown: the policy"
