"""Bedrock (Converse / ConverseStream) against what AWS publishes: botocore's
``bedrock-runtime`` service model (see ``interlock.sim.conformance.bedrock.ORIGIN``).

* Every case of the canonical matrix, built by :class:`BedrockAdapter` for a Claude, a
  Nova and a Llama model: the outbound body fits the service model's input shape (0
  mismatches) or the adapter answered a 400 naming the parameter; it is sent, SigV4-signed,
  to the simulated provider, whose answer (JSON or event stream) must fit the output
  shapes, and the adapter's translation must fit OpenAI's published schema (the vendored
  OpenAPI document) and parse with the openai SDK's types.
* Spec-shaped Bedrock answers written here (validated against the output shapes first:
  toolUse, reasoningContent, guardrail / content-filter stops, usage with cache tokens by
  TTL, every documented error and the stream's exception events) fed through ``parse``,
  ``stream_decoder`` and ``error``.
* The simulator refuses what the service refuses (400 ``ValidationException``).
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from botocore.eventstream import EventStreamBuffer
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from interlock.errors import (
    InvalidRequest,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from interlock.providers.aws_auth import SigV4Auth
from interlock.providers.base import Target, UpstreamCall
from interlock.providers.bedrock import BedrockAdapter
from interlock.providers.capabilities import rules_for
from interlock.providers.rules.bedrock import BEDROCK_TOOL_ID
from interlock.sim import SimControl
from interlock.sim.conformance import openai as openai_spec
from interlock.sim.conformance.bedrock import (
    ORIGIN,
    conversation_errors,
    service_model,
    tool_use_id_rule,
    validate_error,
    validate_event,
    validate_request,
    validate_response,
)
from interlock.sim.eventstream import encode_event, encode_message
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest
from tests.conformance.matrix import CHAT_CASES, FOREIGN_ID, WEATHER_TOOL, Case
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADAPTER = BedrockAdapter()
AUTH = SigV4Auth("us-east-1", access_key_id="AKIDSIM", secret_access_key="sim-secret")
CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-lite-v1:0"
LLAMA = "meta.llama3-3-70b-instruct-v1:0"
MODELS = (CLAUDE, NOVA, LLAMA)


def request_of(body: JSON) -> GatewayRequest:
    return GatewayRequest(
        endpoint=Endpoint.CHAT,
        model="alias",
        body=body,
        raw=orjson.dumps(body),
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )


def target_of(
    model: str,
    url: str = "https://bedrock-runtime.us-east-1.amazonaws.com",
    *,
    caching: bool = False,
) -> Target:
    return Target(
        name="br",
        provider="bedrock",
        model=model,
        base_url=url,
        region="us-east-1",
        prompt_caching=caching,
    )


def openai_issues(schema: str, obj: Any) -> list[str]:
    return [f"{i.param}: {i.message}" for i in openai_spec.issues(schema, obj)]


def check_answer(body: bytes) -> ChatCompletion:
    data = orjson.loads(body)
    assert openai_issues("CreateChatCompletionResponse", data) == []
    assert data["choices"][0]["message"]["refusal"] is None
    return ChatCompletion.model_validate(data)


def check_chunks(chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert openai_issues("CreateChatCompletionStreamResponse", chunk.obj) == []
        ChatCompletionChunk.model_validate(chunk.obj)


def events_of(raw: bytes) -> list[tuple[str, str, Any]]:
    """(message type, event/exception type, JSON payload) of each event-stream message."""
    buffer = EventStreamBuffer()
    buffer.add_data(raw)
    out: list[tuple[str, str, Any]] = []
    for message in buffer:
        kind = str(message.headers.get(":message-type"))
        name = message.headers.get(":event-type") or message.headers.get(":exception-type")
        out.append((kind, str(name), orjson.loads(message.payload)))
    return out


# ------------------------------------------------------------------ the service model


def test_origin_and_tool_id_rule() -> None:
    assert "botocore 1.44.18" in ORIGIN and "apiVersion 2023-09-30" in ORIGIN
    assert "service-2.json.gz sha256 " in ORIGIN
    # The adapter's ToolUseId rule is the service model's.
    assert tool_use_id_rule() == (BEDROCK_TOOL_ID.max_len, BEDROCK_TOOL_ID.pattern)
    for model in MODELS:
        assert rules_for("bedrock", model).tool_id == BEDROCK_TOOL_ID


GOOD: JSON = {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({**GOOD, "inferenceConfig": {"temperature": 1.6}}, "inferenceConfig.temperature"),
        ({**GOOD, "inferenceConfig": {"topP": -0.1}}, "inferenceConfig.topP"),
        ({**GOOD, "inferenceConfig": {"maxTokens": 0}}, "inferenceConfig.maxTokens"),
        ({**GOOD, "inferenceConfig": {"maxTokens": 1.5}}, "inferenceConfig.maxTokens"),
        ({**GOOD, "inferenceConfig": {"stopSequences": [""]}}, "stopSequences.1.member"),
        ({**GOOD, "temperature": 0.5}, "temperature"),
        ({"messages": [{"role": "bot", "content": [{"text": "x"}]}]}, "messages.1.member.role"),
        ({"messages": [{"role": "user"}]}, "messages.1.member.content"),
        (
            {"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]},
            "content.1.member",
        ),
        ({"messages": [{"role": "user", "content": [{}]}]}, "content.1.member"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"toolResult": {"toolUseId": FOREIGN_ID, "content": [{"text": "x"}]}}
                        ],
                    }
                ]
            },
            "toolResult.toolUseId",
        ),
        (
            {
                **GOOD,
                "toolConfig": {
                    "tools": [{"toolSpec": {"name": "bad name", "inputSchema": {"json": {}}}}]
                },
            },
            "toolSpec.name",
        ),
        ({**GOOD, "toolConfig": {"tools": []}}, "toolConfig.tools"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"image": {"format": "bmp", "source": {"bytes": "AA=="}}}],
                    }
                ]
            },
            "image.format",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"image": {"format": "png", "source": {"bytes": "%%%"}}}],
                    }
                ]
            },
            "source.bytes",
        ),
        ({**GOOD, "outputConfig": {"textFormat": {"type": "json_schema"}}}, "structure"),
        ({**GOOD, "system": [{"text": ""}]}, "system.1.member.text"),
    ],
)
def test_validator_refuses(body: JSON, where: str) -> None:
    errors = validate_request(body, NOVA)
    assert errors and any(where in e for e in errors), errors


def test_validator_accepts_documents_and_model_ids() -> None:
    body = {
        **GOOD,
        "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 1024}},
        "toolConfig": {
            "tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"anything": [1, None]}}}}]
        },
    }
    assert validate_request(body, CLAUDE) == []
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7"
    assert validate_request(GOOD, arn) == []
    assert validate_request(GOOD, "") != []


# ----------------------------------------------------------- the matrix, built and sent


def build(case: Case, model: str) -> tuple[GatewayRequest, UpstreamCall | InvalidRequest]:
    req = request_of(case.body)
    before = orjson.dumps(case.body)
    try:
        call: UpstreamCall | InvalidRequest = ADAPTER.build(req, target_of(model))
    except InvalidRequest as exc:
        call = exc
    assert orjson.dumps(req.body) == before, "the adapter changed the client's body"
    return req, call


@pytest.mark.parametrize("model", MODELS)
def test_matrix_outbound_fits_the_service_model(model: str) -> None:
    mismatches: list[str] = []
    refused: dict[str, str | None] = {}
    for case in CHAT_CASES:
        _, call = build(case, model)
        if isinstance(call, InvalidRequest):
            assert call.status == 400 and call.param, (case.name, call)
            refused[case.name] = call.param
            continue
        body = orjson.loads(call.body)
        mismatches += [
            f"{case.name}: {e}" for e in validate_request(body, model, stream=case.stream)
        ]
        mismatches += [f"{case.name}: {e}" for e in conversation_errors(body, model)]
        assert call.url.endswith("/converse-stream" if case.stream else "/converse")
    assert mismatches == []
    # n > 1 and logprobs would change the answer's meaning: refused, naming the parameter.
    assert refused.get("n_2") == "n" and refused.get("logprobs") == "logprobs"
    # Llama 3.3 on Bedrock takes no images; the others do.
    assert ("image_data_url" in refused) == (model == LLAMA)
    assert set(refused) <= {"n_2", "logprobs", "image_data_url"}, refused


MORE_MODELS = (
    *MODELS,
    "anthropic.claude-3-haiku-20240307-v1:0",
    "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
    "us.amazon.nova-2-lite-v1:0",
    "amazon.nova-micro-v1:0",
    "meta.llama3-8b-instruct-v1:0",
    "us.meta.llama3-2-90b-instruct-v1:0",
    "mistral.mistral-7b-instruct-v0:2",
    "mistral.mistral-large-2407-v1:0",
    "cohere.command-r-plus-v1:0",
    "ai21.jamba-1-5-large-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-5",
)
_USER: JSON = {"role": "user", "content": "Hi"}
EDGE_BODIES: tuple[JSON, ...] = (
    {"messages": [_USER], "max_tokens": 0},
    {"messages": [_USER], "max_completion_tokens": -3},
    {"messages": [{"role": "system", "content": "Only a system prompt"}]},
    {"messages": [{"role": "user", "content": ""}]},
    {"messages": [{"role": "assistant", "content": "I start"}, _USER]},
    {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%"}}
                ],
            }
        ]
    },
    {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AAAA"}}
                ],
            }
        ]
    },
    {"messages": [_USER], "tools": [{"type": "function", "function": {"name": "has space"}}]},
    {"messages": [_USER], "tools": [{"type": "function", "function": {"name": "n" * 65}}]},
    {"messages": [_USER], "functions": [{"name": "f", "parameters": {}}]},
    {"messages": [_USER], "stop": ["", "x"]},
    {"messages": [_USER], "stop": ""},
    {"messages": [_USER], "temperature": -1, "top_p": 3},
    {"messages": [_USER], "top_p": 1.5},
    {"messages": [_USER], "user": "someone with <odd> chars"},
    {"messages": [_USER], "metadata": {"team": "a", "bad key!": "x"}},
    {"messages": [_USER], "reasoning_effort": "minimal"},
    {"messages": [_USER], "reasoning_effort": "xhigh", "max_completion_tokens": 64000},
    {
        "messages": [_USER],
        "reasoning_effort": "low",
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
    },
    {"messages": [_USER], "response_format": {"type": "text"}},
    {"messages": [_USER], "response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
    {
        "messages": [
            _USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "x" * 100,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "x" * 100,
                "content": [{"type": "text", "text": "{}"}],
            },
        ],
        "tool_choice": "none",
        "tools": [WEATHER_TOOL],
    },
    {
        "messages": [
            _USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call.1:ok",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call.1:ok", "content": ""},
        ],
    },
)


@pytest.mark.parametrize("model", MORE_MODELS)
def test_edge_requests_end_valid_or_refused(model: str) -> None:
    """Requests off the matrix: each ends as a body the service model accepts or as a
    400 naming the parameter, never as an outbound request the service would refuse."""
    for body in EDGE_BODIES:
        req = request_of({"model": "m", **body})
        try:
            call = ADAPTER.build(req, target_of(model, caching=True))
        except InvalidRequest as exc:
            assert exc.status == 400 and exc.param, (body, exc)
            continue
        out = orjson.loads(call.body)
        assert validate_request(out, model) == [], (model, body)
        assert conversation_errors(out, model) == [], (model, body)


def outbound(case_name: str, model: str) -> tuple[JSON, tuple[str, ...]]:
    case = next(c for c in CHAT_CASES if c.name == case_name)
    _, call = build(case, model)
    assert isinstance(call, UpstreamCall), call
    return orjson.loads(call.body), call.warnings


def test_matrix_translations() -> None:
    # temperature above inferenceConfig's max: clamped with a warning, every family.
    for model in MODELS:
        body, warnings = outbound("temperature_high", model)
        assert body["inferenceConfig"]["temperature"] == 1
        assert any(w.startswith("temperature clamped to 1") for w in warnings)
    # Claude: temperature kept, topP dropped with a warning; Nova keeps both.
    body, warnings = outbound("temperature_top_p", CLAUDE)
    assert body["inferenceConfig"] == {"temperature": 0.7}
    assert any(w.startswith("top_p dropped") for w in warnings)
    body, warnings = outbound("temperature_top_p", NOVA)
    assert body["inferenceConfig"] == {"temperature": 0.7, "topP": 0.9} and warnings == ()
    # Parallel calls with a foreign (Gemini) id: one normalised id on the call and its result.
    for model in MODELS:
        body, _ = outbound("tool_round_trip", model)
        uses = [b["toolUse"]["toolUseId"] for b in body["messages"][1]["content"]]
        results = [b["toolResult"]["toolUseId"] for b in body["messages"][2]["content"]]
        assert uses == results and uses[1] == "call_abc123" and uses[0] != FOREIGN_ID
        assert BEDROCK_TOOL_ID.accepts(uses[0])
    # Native structured output and strict tools on Claude 4.5; an instruction elsewhere.
    body, warnings = outbound("json_schema", CLAUDE)
    fmt = body["outputConfig"]["textFormat"]
    assert fmt["type"] == "json_schema" and fmt["structure"]["jsonSchema"]["name"] == "city_facts"
    assert orjson.loads(fmt["structure"]["jsonSchema"]["schema"])["required"] == [
        "city",
        "population",
        "landmarks",
    ]
    assert warnings == ()
    body, warnings = outbound("json_schema", NOVA)
    assert "outputConfig" not in body and "JSON Schema" in body["system"][-1]["text"]
    assert any("response_format json_schema" in w for w in warnings)
    body, _ = outbound("rich_tool_schema", CLAUDE)
    assert body["toolConfig"]["tools"][0]["toolSpec"]["strict"] is True
    body, warnings = outbound("rich_tool_schema", NOVA)
    assert "strict" not in body["toolConfig"]["tools"][0]["toolSpec"]
    assert any("strict dropped" in w for w in warnings)
    # Thinking: Claude's budget below maxTokens; Nova v1 and Llama drop it with a warning.
    body, _ = outbound("reasoning_effort", CLAUDE)
    budget = body["additionalModelRequestFields"]["thinking"]["budget_tokens"]
    assert 1024 <= budget < body["inferenceConfig"]["maxTokens"] == 4096
    for model in (NOVA, LLAMA):
        body, warnings = outbound("reasoning_effort", model)
        assert "additionalModelRequestFields" not in body
        assert any(w.startswith("reasoning_effort dropped") for w in warnings)
    # Llama has no stop sequences on Converse, nor forced tool choice.
    body, warnings = outbound("stop_list", LLAMA)
    assert "stopSequences" not in body.get("inferenceConfig", {})
    assert any(w.startswith("stop dropped") for w in warnings)
    body, warnings = outbound("tools_required", LLAMA)
    assert "toolChoice" not in body["toolConfig"] and warnings
    body, _ = outbound("tools_required", CLAUDE)
    assert body["toolConfig"]["toolChoice"] == {"any": {}}
    # user -> requestMetadata; seed and penalties dropped with warnings.
    body, warnings = outbound("user_and_metadata", NOVA)
    assert body["requestMetadata"] == {"user": "u-1"} and warnings == ()
    _, warnings = outbound("penalties", NOVA)
    assert len(warnings) == 2
    _, warnings = outbound("seed", CLAUDE)
    assert warnings == ("seed dropped: not supported by claude-4.5 models",)


def test_thinking_rules() -> None:
    def conv(body: JSON, model: str = CLAUDE) -> tuple[JSON, tuple[str, ...]]:
        call = ADAPTER.build(request_of(body), target_of(model))
        out = orjson.loads(call.body)
        assert validate_request(out, model) == []
        return out, call.warnings

    base: JSON = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    out, warnings = conv({**base, "reasoning_effort": "low", "temperature": 0.2, "top_p": 0.5})
    assert out["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 1024}
    }
    assert "temperature" not in out["inferenceConfig"] and "topP" not in out["inferenceConfig"]
    assert out["inferenceConfig"]["maxTokens"] > 1024  # set above the budget, with a note
    assert any(w.startswith("max_tokens set to") for w in warnings)
    out, warnings = conv({**base, "reasoning_effort": "high", "max_tokens": 500})
    assert "additionalModelRequestFields" not in out and warnings
    out, _ = conv({**base, "reasoning_effort": "medium"}, "us.amazon.nova-2-lite-v1:0")
    assert out["additionalModelRequestFields"] == {
        "reasoningConfig": {"type": "enabled", "maxReasoningEffort": "medium"}
    }
    out, _ = conv({**base, "reasoning_effort": "high"}, "anthropic.claude-3-5-haiku-20241022-v1:0")
    assert "additionalModelRequestFields" not in out


async def post(call: UpstreamCall) -> tuple[int, dict[str, str], bytes]:
    await AUTH.apply(call)
    async with (
        aiohttp.ClientSession() as session,
        session.request(call.method, call.url, headers=call.headers, data=call.body) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


@pytest.mark.parametrize("model", MODELS)
async def test_matrix_through_the_simulator(sim_url: str, model: str) -> None:
    sent = 0
    for case in CHAT_CASES:
        req = request_of(case.body)
        target = target_of(model, sim_url)
        try:
            call = ADAPTER.build(req, target)
        except InvalidRequest:
            continue  # checked above: a 400 naming the parameter
        status, _, raw = await post(call)
        assert status == 200, (case.name, raw[:300])
        sent += 1
        if not case.stream:
            assert validate_response(orjson.loads(raw)) == [], case.name
            done = ADAPTER.parse(req, target, status, raw)
            completion = check_answer(done.body)
            assert done.usage is not None and not done.usage.estimated
            assert completion.usage is not None and completion.usage.prompt_tokens > 0
            if case.name == "json_schema" and model == CLAUDE:
                # Native structured output: the simulator follows outputConfig.textFormat.
                answer = orjson.loads(completion.choices[0].message.content or "")
                assert set(answer) == {"city", "population", "landmarks"}
            continue
        events = events_of(raw)
        assert events[0][1] == "messageStart" and events[-1][1] == "metadata"
        for kind, name, payload in events:
            assert kind == "event"
            assert validate_event(name, payload) == [], (case.name, name, payload)
        decoder = ADAPTER.stream_decoder(req, target)
        chunks = decoder.feed(raw) + decoder.close()
        check_chunks(chunks)
        assert decoder.completed and decoder.usage is not None and not decoder.usage.estimated
        finishes = [c.obj["choices"][0]["finish_reason"] for c in chunks if c.obj["choices"]]
        assert finishes[-1] in ("stop", "tool_calls", "length")
        assert any("usage" in c.obj for c in chunks) == req.include_usage
    assert sent >= len(CHAT_CASES) - 3


USE: JSON = {"toolUse": {"toolUseId": "t1", "name": "f", "input": {}}}
RESULT: JSON = {"toolResult": {"toolUseId": "t1", "content": [{"text": "ok"}]}}
TOOLS: JSON = {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}]}
# Rules the service enforces beyond the shapes (conversation_errors), as raw bodies.
REFUSED_CONVERSATIONS: tuple[tuple[str, JSON, str], ...] = (
    ("temperature+topP", {**GOOD, "inferenceConfig": {"temperature": 0.5, "topP": 0.5}}, CLAUDE),
    ("assistant first", {"messages": [{"role": "assistant", "content": [{"text": "x"}]}]}, NOVA),
    (
        "not alternating",
        {"messages": [GOOD["messages"][0], GOOD["messages"][0]]},
        NOVA,
    ),
    ("blank text", {"messages": [{"role": "user", "content": [{"text": "  "}]}]}, NOVA),
    (
        "tools without toolConfig",
        {
            "messages": [
                GOOD["messages"][0],
                {"role": "assistant", "content": [USE]},
                {"role": "user", "content": [RESULT]},
            ]
        },
        NOVA,
    ),
    (
        "result without use",
        {"messages": [{"role": "user", "content": [RESULT]}], "toolConfig": TOOLS},
        NOVA,
    ),
    (
        "thinking budget",
        {
            **GOOD,
            "additionalModelRequestFields": {
                "thinking": {"type": "enabled", "budget_tokens": 2000}
            },
            "inferenceConfig": {"maxTokens": 1500},
        },
        CLAUDE,
    ),
    (
        "thinking in a tool loop without thinking blocks",
        {
            "messages": [
                GOOD["messages"][0],
                {"role": "assistant", "content": [USE]},
                {"role": "user", "content": [RESULT]},
            ],
            "toolConfig": TOOLS,
            "additionalModelRequestFields": {
                "thinking": {"type": "enabled", "budget_tokens": 1024}
            },
        },
        CLAUDE,
    ),
)


@pytest.mark.parametrize(
    ("body", "model"),
    [(b, m) for _, b, m in REFUSED_CONVERSATIONS],
    ids=[n for n, _, _ in REFUSED_CONVERSATIONS],
)
async def test_simulator_refuses_conversations_the_service_refuses(
    sim_url: str, body: JSON, model: str
) -> None:
    assert validate_request(body, model) == []  # well-shaped: refused for what it says
    assert conversation_errors(body, model)
    call = UpstreamCall(
        "POST",
        f"{sim_url}/model/{model}/converse",
        {"content-type": "application/json"},
        orjson.dumps(body),
    )
    status, headers, raw = await post(call)
    assert status == 400 and headers["x-amzn-ErrorType"].startswith("ValidationException")
    assert orjson.loads(raw)["message"] == conversation_errors(body, model)[0]


def test_adapter_avoids_what_the_service_refuses() -> None:
    """The adapter's answers to the same situations, from OpenAI-shaped requests."""
    opening = [
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "Hi"},
    ]
    call = ADAPTER.build(request_of({"model": "m", "messages": opening}), target_of(NOVA))
    out = orjson.loads(call.body)
    assert out["messages"][0]["role"] == "user" and out["messages"][1]["role"] == "assistant"
    assert conversation_errors(out, NOVA) == [] and call.warnings
    blank = [{"role": "user", "content": "  "}, {"role": "user", "content": "Real question"}]
    out = orjson.loads(
        ADAPTER.build(request_of({"model": "m", "messages": blank}), target_of(NOVA)).body
    )
    assert out["messages"] == [{"role": "user", "content": [{"text": "Real question"}]}]
    loop = next(c for c in CHAT_CASES if c.name == "tool_round_trip").body
    call = ADAPTER.build(
        request_of({**loop, "reasoning_effort": "high", "max_tokens": 8000}),
        target_of("us.anthropic.claude-3-7-sonnet-20250219-v1:0"),
    )
    out = orjson.loads(call.body)
    assert "additionalModelRequestFields" not in out
    assert any(w.startswith("reasoning_effort dropped") for w in call.warnings)
    # Tool history without tools in the request: told as text (Converse refuses toolUse
    # blocks without toolConfig), also for a family that takes no tools at all.
    history = {"model": "m", "messages": loop["messages"]}
    for model in (NOVA, "mistral.mistral-7b-instruct-v0:2"):
        call = ADAPTER.build(request_of(history), target_of(model))
        out = orjson.loads(call.body)
        assert "toolConfig" not in out and b"toolUse" not in call.body
        assert conversation_errors(out, model) == [] and validate_request(out, model) == []
        told = " ".join(b.get("text", "") for t in out["messages"] for b in t["content"])
        assert '(called tool get_weather with {"city":"Paris"})' in told
        assert "(result of get_weather: 4C, rain)" in told
        assert any("sent as text" in w for w in call.warnings)


async def test_simulator_refuses_what_the_service_refuses(sim_url: str) -> None:
    base = f"{sim_url}/model/{NOVA}/converse"
    for body in (
        {**GOOD, "inferenceConfig": {"temperature": 1.5}},
        {**GOOD, "extra": True},
        {"messages": [{"role": "user", "content": [{"text": "a", "image": {}}]}]},
    ):
        call = UpstreamCall("POST", base, {"content-type": "application/json"}, orjson.dumps(body))
        status, headers, raw = await post(call)
        assert status == 400
        etype = headers["x-amzn-ErrorType"]
        assert etype.startswith("ValidationException")
        data = orjson.loads(raw)
        assert validate_error(etype, status, data) == []
        assert re.match(r"\d+ validation errors? detected: Value '", data["message"]), data
        assert isinstance(ADAPTER.error(status, headers, raw), UpstreamBadRequest)


async def test_simulator_prompt_cache(sim_url: str) -> None:
    prefix = "Cached instructions about the tides of the northern sea. " * 40
    body = {
        "system": [{"text": prefix}, {"cachePoint": {"type": "default", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": [{"text": "One question"}]}],
    }
    url = f"{sim_url}/model/{CLAUDE}/converse"
    usages = []
    for _ in range(2):
        call = UpstreamCall("POST", url, {"content-type": "application/json"}, orjson.dumps(body))
        status, _, raw = await post(call)
        assert status == 200, raw
        data = orjson.loads(raw)
        assert validate_response(data) == []
        usages.append(data["usage"])
        done = ADAPTER.parse(request_of({"messages": []}), target_of(CLAUDE), status, raw)
        assert done.usage is not None
        u = data["usage"]
        assert done.usage.prompt_tokens == (
            u["inputTokens"] + u["cacheReadInputTokens"] + u["cacheWriteInputTokens"]
        )
    first, second = usages
    assert first["cacheWriteInputTokens"] > 100 and first["cacheReadInputTokens"] == 0
    assert first["cacheDetails"] == [{"ttl": "1h", "inputTokens": first["cacheWriteInputTokens"]}]
    assert second["cacheReadInputTokens"] == first["cacheWriteInputTokens"]
    assert second["cacheWriteInputTokens"] == 0 and "cacheDetails" not in second
    total = first["inputTokens"] + first["cacheWriteInputTokens"]
    assert second["inputTokens"] + second["cacheReadInputTokens"] == total


LONG_SYSTEM = "Standing instructions for the harbour master's assistant. " * 60
CACHED_CHAT: JSON = {
    "model": "m",
    "messages": [
        {"role": "system", "content": LONG_SYSTEM},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Second question"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {"name": "tide", "parameters": {"type": "object", "properties": {}}},
        }
    ],
}


def cache_point_places(body: JSON) -> list[str]:
    places = [f"tools.{i}" for i, t in enumerate(body["toolConfig"]["tools"]) if "cachePoint" in t]
    places += [f"system.{i}" for i, b in enumerate(body.get("system", [])) if "cachePoint" in b]
    for m, turn in enumerate(body["messages"]):
        places += [f"messages.{m}.{i}" for i, b in enumerate(turn["content"]) if "cachePoint" in b]
    return places


async def test_prompt_caching_deployment(sim_url: str) -> None:
    req = request_of(CACHED_CHAT)
    target = target_of(CLAUDE, sim_url, caching=True)
    call = ADAPTER.build(req, target)
    body = orjson.loads(call.body)
    assert validate_request(body, CLAUDE) == []
    # After the tools, the system prompt and the turn before the newest user message.
    assert cache_point_places(body) == ["tools.1", "system.1", "messages.1.1"]
    assert call.warnings == ()
    # Nova caches system and messages, not tools; Llama has no prompt caching (no markers).
    nova = orjson.loads(ADAPTER.build(req, target_of(NOVA, caching=True)).body)
    assert cache_point_places(nova) == ["system.1", "messages.1.1"]
    llama = ADAPTER.build(req, target_of(LLAMA, caching=True))
    assert cache_point_places(orjson.loads(llama.body)) == [] and llama.warnings == ()
    # Without the deployment setting: no markers.
    plain = orjson.loads(ADAPTER.build(req, target_of(CLAUDE)).body)
    assert cache_point_places(plain) == []
    # Sent twice: the second answer reads what the first wrote, priced apart.
    usages = []
    for _ in range(2):
        call = ADAPTER.build(req, target)
        status, _, raw = await post(call)
        assert status == 200, raw
        assert validate_response(orjson.loads(raw)) == []
        done = ADAPTER.parse(req, target, status, raw)
        check_answer(done.body)
        assert done.usage is not None
        usages.append(done.usage)
    first, second = usages
    assert first.cache_write_tokens > 0 and first.cached_tokens == 0
    assert second.cached_tokens == first.cache_write_tokens and second.cache_write_tokens == 0
    assert first.prompt_tokens == second.prompt_tokens


def test_client_cache_control() -> None:
    hour = {"type": "ephemeral", "ttl": "1h"}
    body: JSON = {
        "model": "m",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "S", "cache_control": hour}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "A", "cache_control": {"type": "ephemeral"}},
                    {"type": "text", "text": "B"},
                ],
            },
        ],
    }
    call = ADAPTER.build(request_of(body), target_of(NOVA, caching=True))
    out = orjson.loads(call.body)
    assert validate_request(out, NOVA) == []
    assert out["system"] == [{"text": "S"}, {"cachePoint": {"type": "default", "ttl": "1h"}}]
    assert out["messages"][0]["content"] == [
        {"text": "A"},
        {"cachePoint": {"type": "default"}},
        {"text": "B"},
    ]
    # A family without prompt caching: the checkpoints go, with a warning.
    call = ADAPTER.build(request_of(body), target_of(LLAMA))
    out = orjson.loads(call.body)
    assert validate_request(out, LLAMA) == [] and "cachePoint" not in call.body.decode()
    assert any(w.startswith("cache_control dropped") for w in call.warnings)
    # More than Bedrock's 4 checkpoints: the first 4 are kept.
    many = [
        {"type": "text", "text": f"p{i}", "cache_control": {"type": "ephemeral"}} for i in range(6)
    ]
    call = ADAPTER.build(
        request_of({"model": "m", "messages": [{"role": "user", "content": many}]}),
        target_of(CLAUDE),
    )
    assert call.body.count(b"cachePoint") == 4 and call.warnings


# ------------------------------------------------- spec-shaped answers, fed back


def converse_answer(content: list[JSON], stop: str, usage: JSON) -> bytes:
    data = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop,
        "usage": usage,
        "metrics": {"latencyMs": 321},
    }
    assert validate_response(data) == [], data
    return orjson.dumps(data)


def test_answer_tool_use_reasoning_and_cache_usage() -> None:
    raw = converse_answer(
        [
            {"reasoningContent": {"reasoningText": {"text": "Paris first.", "signature": "c2ln"}}},
            {"reasoningContent": {"redactedContent": "cmVkYWN0ZWQ="}},
            {"text": "Checking both."},
            {"toolUse": {"toolUseId": "tooluse_A1", "name": "get_weather", "input": {"city": "P"}}},
            {"toolUse": {"toolUseId": "tooluse_B2", "name": "get_weather", "input": {"city": "O"}}},
        ],
        "tool_use",
        {
            "inputTokens": 20,
            "outputTokens": 30,
            "totalTokens": 1250,
            "cacheReadInputTokens": 700,
            "cacheWriteInputTokens": 500,
            "cacheDetails": [{"ttl": "1h", "inputTokens": 300}, {"ttl": "5m", "inputTokens": 200}],
        },
    )
    req = request_of({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    done = ADAPTER.parse(req, target_of(CLAUDE), 200, raw)
    completion = check_answer(done.body)
    message = completion.choices[0].message
    assert message.content == "Checking both." and "Paris first" not in (message.content or "")
    assert [c.id for c in message.tool_calls or []] == ["tooluse_A1", "tooluse_B2"]
    assert completion.choices[0].finish_reason == "tool_calls"
    u = done.usage
    assert u is not None
    assert (u.prompt_tokens, u.cached_tokens) == (1220, 700)
    assert (u.cache_write_tokens, u.cache_write_1h_tokens) == (200, 300)
    assert u.completion_tokens == 30 and u.total_tokens == 1250
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 700


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_answer_stop_reasons(stop: str, finish: str) -> None:
    raw = converse_answer(
        [{"text": "Sorry, the model cannot answer this."}],
        stop,
        {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12},
    )
    req = request_of({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    completion = check_answer(ADAPTER.parse(req, target_of(NOVA), 200, raw).body)
    assert completion.choices[0].finish_reason == finish


def test_every_stop_reason_maps_to_an_openai_finish_reason() -> None:
    reasons = service_model()["shapes"]["StopReason"]["enum"]
    finish = {"stop", "length", "tool_calls", "content_filter", "function_call"}
    req = request_of({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    for reason in reasons:
        raw = converse_answer(
            [{"text": "x"}], reason, {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}
        )
        got = check_answer(ADAPTER.parse(req, target_of(NOVA), 200, raw).body)
        assert got.choices[0].finish_reason in finish, reason


def event_bytes(events: list[tuple[str, JSON]]) -> bytes:
    out = b""
    for name, payload in events:
        assert validate_event(name, payload) == [], (name, payload)
        out += encode_event(name, payload)
    return out


def test_stream_reasoning_tools_and_cache_usage() -> None:
    raw = event_bytes(
        [
            ("messageStart", {"role": "assistant", "p": "abcdef"}),
            (
                "contentBlockDelta",
                {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm."}}},
            ),
            (
                "contentBlockDelta",
                {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "c2ln"}}},
            ),
            ("contentBlockStop", {"contentBlockIndex": 0}),
            ("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"text": "On it."}}),
            ("contentBlockStop", {"contentBlockIndex": 1}),
            (
                "contentBlockStart",
                {
                    "contentBlockIndex": 2,
                    "start": {"toolUse": {"toolUseId": "tooluse_X", "name": "get_weather"}},
                },
            ),
            (
                "contentBlockDelta",
                {"contentBlockIndex": 2, "delta": {"toolUse": {"input": '{"city":"Oslo"}'}}},
            ),
            ("contentBlockStop", {"contentBlockIndex": 2}),
            ("messageStop", {"stopReason": "tool_use"}),
            (
                "metadata",
                {
                    "usage": {
                        "inputTokens": 10,
                        "outputTokens": 9,
                        "totalTokens": 119,
                        "cacheReadInputTokens": 60,
                        "cacheWriteInputTokens": 40,
                        "cacheDetails": [{"ttl": "5m", "inputTokens": 40}],
                    },
                    "metrics": {"latencyMs": 99},
                },
            ),
        ]
    )
    req = request_of(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    decoder = ADAPTER.stream_decoder(req, target_of(CLAUDE))
    chunks: list[Chunk] = []
    for i in range(0, len(raw), 37):  # split across messages
        chunks += decoder.feed(raw[i : i + 37])
    chunks += decoder.close()
    check_chunks(chunks)
    deltas = [c.obj["choices"][0]["delta"] for c in chunks if c.obj["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == "On it."
    assert "Hmm." not in "".join(d.get("content") or "" for d in deltas)
    calls = [t for d in deltas for t in d.get("tool_calls") or ()]
    assert calls[0]["id"] == "tooluse_X"
    assert [c.obj["choices"][0]["finish_reason"] for c in chunks if c.obj["choices"]][-1] == (
        "tool_calls"
    )
    usage = chunks[-1].obj["usage"]
    assert usage["prompt_tokens"] == 110
    assert usage["prompt_tokens_details"] == {"cached_tokens": 60}
    assert decoder.usage is not None and decoder.usage.cache_write_tokens == 40


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("modelStreamErrorException", UpstreamUnavailable),
        ("throttlingException", UpstreamRateLimited),
        ("internalServerException", UpstreamUnavailable),
        ("serviceUnavailableException", UpstreamUnavailable),
        ("validationException", UpstreamBadRequest),
    ],
)
def test_stream_exception_events(name: str, error: type[UpstreamError]) -> None:
    payload: JSON = {"message": "The model stream failed."}
    if name == "modelStreamErrorException":
        payload |= {"originalStatusCode": 500, "originalMessage": "upstream model error"}
    assert validate_event(name, payload) == []
    raw = event_bytes([("messageStart", {"role": "assistant"})]) + encode_message(
        {
            ":exception-type": name,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        orjson.dumps(payload),
    )
    req = request_of({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    decoder = ADAPTER.stream_decoder(req, target_of(NOVA))
    with pytest.raises(error):
        decoder.feed(raw)


@pytest.mark.parametrize(
    ("etype", "status", "error"),
    [
        ("ValidationException", 400, UpstreamBadRequest),
        ("AccessDeniedException", 403, UpstreamUnavailable),
        ("ResourceNotFoundException", 404, UpstreamBadRequest),
        ("ModelTimeoutException", 408, UpstreamTimeout),
        ("ModelErrorException", 424, UpstreamUnavailable),
        ("ThrottlingException", 429, UpstreamRateLimited),
        ("ModelNotReadyException", 429, UpstreamUnavailable),
        ("InternalServerException", 500, UpstreamUnavailable),
        ("ServiceUnavailableException", 503, UpstreamUnavailable),
    ],
)
def test_documented_errors(etype: str, status: int, error: type[UpstreamError]) -> None:
    body = {"message": "Something about the request."}
    assert validate_error(etype, status, body) == []
    headers = {"x-amzn-ErrorType": f"{etype}:http://internal.amazon.com/coral/com.amazon.bedrock/"}
    err = ADAPTER.error(status, headers, orjson.dumps(body))
    assert isinstance(err, error), err
    # Without the header, the body's __type says the same (as some proxies forward it).
    bare = ADAPTER.error(status, {}, orjson.dumps({**body, "__type": f"com.amazon#{etype}"}))
    assert type(bare) is type(err)


def test_every_documented_error_is_covered() -> None:
    documented = {e["shape"] for e in service_model()["operations"]["Converse"]["errors"]}
    covered = {
        "ValidationException",
        "AccessDeniedException",
        "ResourceNotFoundException",
        "ModelTimeoutException",
        "ModelErrorException",
        "ThrottlingException",
        "ModelNotReadyException",
        "InternalServerException",
        "ServiceUnavailableException",
    }
    assert documented == covered


# ------------------------------------------------------------- through the gateway


def test_gateway_applies_the_rules_and_says_so(
    sim_url: str, sim: SimControl, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The gateway's Bedrock deployment (Claude 3 Haiku) over HTTP: the client's
    temperature 1.6 + top_p reach Bedrock as temperature 1 alone, the foreign tool id as a
    ToolUseId Bedrock accepts, and the answer says what changed (x-interlock-warnings)."""
    work = tmp_path_factory.mktemp("gw-bedrock")
    gateway = GatewayProcess(sim_config(sim_url, work / "state"), work).start()
    try:
        with httpx.Client(
            base_url=gateway.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30
        ) as client:
            body = {
                "model": "bedrock",
                "messages": next(c for c in CHAT_CASES if c.name == "tool_round_trip").body[
                    "messages"
                ],
                "tools": [WEATHER_TOOL],
                "temperature": 1.6,
                "top_p": 0.5,
                "seed": 3,
            }
            resp = client.post("/v1/chat/completions", json=body)
            assert resp.status_code == 200, resp.text
            check_answer(resp.content)
            warnings = resp.headers["x-interlock-warnings"]
            assert "top_p dropped" in warnings and "seed dropped" in warnings
            sent = orjson.loads(sim.requests()[-1]["body"])
            assert validate_request(sent, "anthropic.claude-3-haiku-20240307-v1:0") == []
            assert sent["inferenceConfig"] == {"temperature": 1}
            ids = [b["toolUse"]["toolUseId"] for b in sent["messages"][1]["content"]]
            assert BEDROCK_TOOL_ID.accepts(ids[0]) and ids[1] == "call_abc123"
            refused = client.post("/v1/chat/completions", json={**body, "logprobs": True})
            assert refused.status_code == 400
            error = refused.json()["error"]
            assert error["code"] == "unsupported_parameter" and error["param"] == "logprobs"
    finally:
        gateway.stop()
