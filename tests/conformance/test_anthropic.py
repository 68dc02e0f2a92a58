"""Anthropic Messages against what Anthropic publishes: the official ``anthropic`` SDK
(2.17.0; its request TypedDicts vendored as JSON Schema, see
``src/interlock/sim/specs/anthropic/ORIGIN.md``; its ``Message`` / ``RawMessageStreamEvent``
/ ``ErrorResponse`` models for answers).

* Every case of the canonical matrix, built by :class:`AnthropicAdapter` for one model of
  each Claude family: the outbound body passes the SDK's request types, closed, and the
  API's rules for the family (0 mismatches), or the adapter answered a 400 naming the
  parameter; whatever it left out is named in a warning. The body is sent to the
  simulated provider (which refuses what Anthropic refuses); its answers, plain and
  streamed, are SDK-valid, and the adapter's translation fits OpenAI's published schema
  and the openai SDK's types.
* Spec-shaped Anthropic answers written here (validated with the SDK's models first):
  thinking / redacted thinking / tool_use blocks, refusal, usage with the cache-write TTL
  split and thinking tokens, every documented error status and the overloaded_error
  stream event, fed through ``parse``, ``stream_decoder`` and ``error``.
"""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from anthropic.lib._parse._transform import transform_schema
from anthropic.types import Message
from anthropic.types.message_count_tokens_params import MessageCountTokensParams
from anthropic.types.message_create_params import MessageCreateParamsBase
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter

from interlock.errors import (
    InvalidRequest,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from interlock.providers.anthropic import AnthropicAdapter, strict_schema
from interlock.providers.base import Target, UpstreamCall
from interlock.providers.capabilities import rules_for
from interlock.providers.rules.anthropic import ANTHROPIC_TOOL_ID
from interlock.sim import SimControl
from interlock.sim.conformance import openai as openai_spec
from interlock.sim.conformance.anthropic import (
    COUNT_SCHEMA_FILE,
    SCHEMA_FILE,
    SDK_VERSION,
    answer_issues,
    error_issues,
    event_issues,
    request_issues,
    vendored_schema,
)
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest
from tests.conformance.matrix import (
    CHAT_CASES,
    FOREIGN_ID,
    JSON_SCHEMA_FORMAT,
    RICH_TOOL,
    WEATHER_TOOL,
    Case,
)

ADAPTER = AnthropicAdapter()
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
CURRENT = "claude-opus-4-7"  # no sampling parameters, adaptive thinking only
SONNET_46 = "claude-sonnet-4-6"  # temperature or top_p, adaptive thinking + effort
OPUS_45 = "claude-opus-4-5-20251101"  # budget thinking + effort
SONNET_45 = "claude-sonnet-4-5-20250929"  # budget thinking, no effort
SONNET_37 = "claude-3-7-sonnet-20250219"  # all sampling, budget thinking, no native JSON
HAIKU_35 = "claude-3-5-haiku-20241022"  # no thinking at all
NEWEST = "claude-mythos-5-1"  # from the SDK's model list: the catch-all family
MODELS = (CURRENT, SONNET_46, OPUS_45, SONNET_45, SONNET_37, HAIKU_35, NEWEST)
SPECS = Path(__file__).parents[2] / "src" / "interlock" / "sim" / "specs" / "anthropic"


def request_of(body: JSON) -> GatewayRequest:
    return GatewayRequest(
        endpoint=Endpoint.CHAT,
        model="alias",
        body=body,
        raw=orjson.dumps(body),
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )


def target_of(model: str, url: str = "https://api.anthropic.com", **extra: Any) -> Target:
    return Target(
        name="claude", provider="anthropic", model=model, base_url=url, headers=HEADERS, **extra
    )


def build(body: JSON, model: str) -> tuple[JSON, tuple[str, ...]]:
    call = ADAPTER.build(request_of(body), target_of(model))
    out: JSON = orjson.loads(call.body)
    return out, call.warnings


def openai_issues(schema: str, obj: Any) -> list[str]:
    return [f"{i.param}: {i.message}" for i in openai_spec.issues(schema, obj)]


def check_answer(body: bytes) -> ChatCompletion:
    data = orjson.loads(body)
    assert openai_issues("CreateChatCompletionResponse", data) == []
    return ChatCompletion.model_validate(data)


def check_chunks(chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert openai_issues("CreateChatCompletionStreamResponse", chunk.obj) == []
        ChatCompletionChunk.model_validate(chunk.obj)


def sse(events: list[JSON]) -> bytes:
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events
    )


def sse_events(raw: bytes) -> list[JSON]:
    return [orjson.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: ")]


# ------------------------------------------------------------------ the published artefacts


def unordered(node: Any) -> Any:
    """``enum`` lists sorted: pydantic writes a Literal's values in no fixed order."""
    if isinstance(node, dict):
        return {
            k: sorted(v, key=repr) if k == "enum" and isinstance(v, list) else unordered(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [unordered(v) for v in node]
    return node


def test_vendored_schema_is_the_installed_sdk_s() -> None:
    """The vendored request schema is the SDK's own (regenerated here) and its hash is the
    one ORIGIN.md records."""
    assert anthropic.__version__ == SDK_VERSION
    for name, kind in (
        (SCHEMA_FILE, MessageCreateParamsBase),
        (COUNT_SCHEMA_FILE, MessageCountTokensParams),
    ):
        generated = orjson.loads(orjson.dumps(TypeAdapter(kind).json_schema()))
        assert unordered(vendored_schema(name)) == unordered(generated), name
        digest = hashlib.sha256((SPECS / name).read_bytes()).hexdigest()
        assert digest in (SPECS / "ORIGIN.md").read_text(), name


def test_what_the_sdk_request_type_holds() -> None:
    """Recorded finding: SDK 2.17.0's MessageCreateParams has no sampling parameters; it
    has thinking, output_config (effort + format) and strict tools."""
    keys = set(MessageCreateParamsBase.__annotations__)
    assert not keys & {"temperature", "top_p", "top_k"}
    assert {"thinking", "output_config", "max_tokens", "messages", "model"} <= keys
    props = vendored_schema()["$defs"]
    assert set(props["OutputConfigParam"]["properties"]) >= {"effort", "format"}
    assert "strict" in props["ToolParam"]["properties"]


def test_tool_id_rule_and_normalisation() -> None:
    assert ANTHROPIC_TOOL_ID.accepts("toolu_01D7FLrfh4GYq7yT1ULFeyMV")
    assert ANTHROPIC_TOOL_ID.accepts("call_abc123")
    assert not ANTHROPIC_TOOL_ID.accepts(FOREIGN_ID)
    for model in MODELS:
        assert rules_for("anthropic", model).tool_id == ANTHROPIC_TOOL_ID


def test_strict_schema_is_the_sdk_transform() -> None:
    """strict_schema is the SDK's transform_schema (plus type lists, which the SDK's has
    no branch for)."""
    samples = [
        JSON_SCHEMA_FORMAT["json_schema"]["schema"],
        WEATHER_TOOL["function"]["parameters"],
        {
            "type": "object",
            "$defs": {"P": {"type": "object", "properties": {"n": {"type": "integer"}}}},
            "properties": {
                "p": {"$ref": "#/$defs/P", "description": "a p"},
                "s": {"type": "string", "format": "email", "minLength": 2},
                "x": {"type": "string", "format": "binary"},
                "a": {"type": "array", "items": {"type": "number", "minimum": 0}, "minItems": 3},
                "o": {"oneOf": [{"type": "string"}, {"type": "null"}]},
                "e": {"enum": [1, 2, 3]},
            },
        },
    ]
    for schema in samples:
        assert strict_schema(copy.deepcopy(schema)) == transform_schema(copy.deepcopy(schema))
    rich = strict_schema(RICH_TOOL["function"]["parameters"])
    age = rich["$defs"]["Traveller"]["properties"]["age"]
    assert age["anyOf"][0]["type"] == "integer" and age["anyOf"][1] == {"type": "null"}


# ------------------------------------------------------------------ the matrix, outbound

# Canonical keys and where their translation shows in the Messages body.
_TRANSLATED = {
    "messages": "messages",
    "model": "model",
    "max_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "stop": "stop_sequences",
    "tools": "tools",
    "tool_choice": "tool_choice",
    "parallel_tool_calls": "tool_choice",
    "user": "metadata",
    "temperature": "temperature",
    "top_p": "top_p",
    "reasoning_effort": "thinking",
    "response_format": "output_config",
}
_CONTROL = {"stream", "stream_options"}


def account(case: Case, model: str, out: JSON, warnings: tuple[str, ...]) -> list[str]:
    """Every canonical key of the case is translated, or named in a warning."""
    missing: list[str] = []
    for key, value in case.body.items():
        if key in _CONTROL or (key == "n" and value == 1):
            continue
        if key == "tool_choice" and value == "auto":
            continue
        if key == "response_format" and "system" in out:
            # the prompt instruction: only with a warning
            if not any("response_format" in w for w in warnings):
                missing.append(key)
            continue
        where = _TRANSLATED.get(key)
        if where is not None and where in out:
            continue
        if any(w.startswith(key) or f" {key}" in w for w in warnings):
            continue
        if key == "reasoning_effort" and "output_config" in out:
            continue
        missing.append(f"{model}: {key}")
    return missing


@pytest.mark.parametrize("model", MODELS)
def test_matrix_outbound_conforms(model: str) -> None:
    mismatches: list[str] = []
    built = 0
    for case in CHAT_CASES:
        before = copy.deepcopy(case.body)
        req = request_of(case.body)
        try:
            call = ADAPTER.build(req, target_of(model))
        except InvalidRequest as exc:
            # A 400 naming a parameter the case really sent.
            assert exc.param is not None and exc.param.split("[")[0] in case.body, case.name
            continue
        assert req.body == before, f"{case.name}: the adapter changed req.body"
        out = orjson.loads(call.body)
        built += 1
        mismatches += [f"{model} {case.name}: {i}" for i in request_issues(out)]
        mismatches += account(case, model, out, call.warnings)
        # The same with the deployment's own cache breakpoints.
        cached = ADAPTER.build(req, target_of(model, prompt_caching=True))
        assert req.body == before, f"{case.name}: the adapter changed req.body"
        marked = orjson.loads(cached.body)
        assert b'"cache_control"' in cached.body or len(out["messages"]) < 2, case.name
        mismatches += [f"{model} {case.name} (cached): {i}" for i in request_issues(marked)]
    assert mismatches == []
    assert built >= len(CHAT_CASES) - 3  # n=2, logprobs: refused


def test_refusals_name_the_parameter() -> None:
    by_name = {c.name: c for c in CHAT_CASES}
    for name, param in (("n_2", "n"), ("logprobs", "logprobs")):
        with pytest.raises(InvalidRequest) as info:
            build(by_name[name].body, CURRENT)
        assert info.value.param == param and info.value.code == "unsupported_parameter"


def test_sampling_per_family() -> None:
    pair = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    out, warnings = build({**pair, "temperature": 0.7, "top_p": 0.9}, SONNET_45)
    assert out["temperature"] == 0.7 and "top_p" not in out
    assert any(w.startswith("top_p dropped") for w in warnings)
    out, warnings = build({**pair, "temperature": 0.7, "top_p": 0.9}, SONNET_37)
    assert out["temperature"] == 0.7 and out["top_p"] == 0.9 and warnings == ()
    out, warnings = build({**pair, "temperature": 1.6}, HAIKU_35)
    assert out["temperature"] == 1.0 and any("temperature clamped to 1" in w for w in warnings)
    out, warnings = build({**pair, "temperature": 0, "top_p": 0.5}, CURRENT)
    assert "temperature" not in out and "top_p" not in out
    assert {w.split(" ")[0] for w in warnings} == {"temperature", "top_p"}


def test_reasoning_effort_per_family() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    # Budget family: high = 16384 tokens, capped below the client's max_completion_tokens.
    out, warnings = build({**base, "reasoning_effort": "high", "max_tokens": 8000}, SONNET_45)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 7999}
    assert out["max_tokens"] == 8000 and "output_config" not in out
    assert any("budget capped at 7999" in w for w in warnings)
    # No max set: the default answer room plus the budget.
    out, warnings = build({**base, "reasoning_effort": "medium"}, SONNET_45)
    assert out["thinking"]["budget_tokens"] == 4096 and out["max_tokens"] == 4096 + 4096
    # A max below the minimum budget: raised, with a warning.
    out, warnings = build({**base, "reasoning_effort": "low", "max_tokens": 500}, SONNET_37)
    assert out["thinking"]["budget_tokens"] == 1024 and out["max_tokens"] == 1524
    assert any("max_tokens raised to 1524" in w for w in warnings)
    # Effort families: adaptive thinking and the nearest effort level.
    out, _ = build({**base, "reasoning_effort": "xhigh"}, SONNET_46)
    assert out["thinking"] == {"type": "adaptive"} and out["output_config"] == {"effort": "high"}
    out, _ = build({**base, "reasoning_effort": "xhigh"}, CURRENT)
    assert out["output_config"] == {"effort": "xhigh"}
    out, _ = build({**base, "reasoning_effort": "minimal", "max_tokens": 4000}, OPUS_45)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert out["output_config"] == {"effort": "low"}
    out, warnings = build({**base, "reasoning_effort": "high"}, HAIKU_35)
    assert "thinking" not in out and any("reasoning_effort dropped" in w for w in warnings)
    out, _ = build({**base, "reasoning_effort": "none"}, CURRENT)
    assert "thinking" not in out
    # Thinking and a forced tool: Anthropic refuses the pair, thinking goes.
    forced = {**base, "tools": [WEATHER_TOOL], "tool_choice": "required"}
    out, warnings = build({**forced, "reasoning_effort": "high"}, CURRENT)
    assert "thinking" not in out and out["tool_choice"] == {"type": "any"}
    # Thinking takes no temperature change.
    out, warnings = build({**base, "reasoning_effort": "low", "temperature": 0.2}, SONNET_45)
    assert "temperature" not in out and any("temperature dropped" in w for w in warnings)
    assert request_issues(out) == []


def test_native_thinking_object_is_forwarded() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 9000}
    native = {"type": "enabled", "budget_tokens": 2048}
    out, warnings = build({**base, "thinking": native}, SONNET_45)
    assert out["thinking"] == native and warnings == ()
    out, warnings = build({**base, "thinking": native}, CURRENT)
    assert out["thinking"] == {"type": "adaptive"} and warnings
    out, _ = build({**base, "thinking": {"type": "adaptive", "display": "omitted"}}, CURRENT)
    assert out["thinking"] == {"type": "adaptive", "display": "omitted"}
    assert request_issues(out) == []
    # output_config.effort from the inbound Messages API arrives as reasoning_effort.
    both = {**base, "thinking": {"type": "adaptive"}, "reasoning_effort": "max"}
    out, warnings = build(both, CURRENT)
    assert out["thinking"] == {"type": "adaptive"} and out["output_config"] == {"effort": "max"}
    assert warnings == () and request_issues(out) == []
    out, _ = build(both, SONNET_46)
    assert out["output_config"] == {"effort": "max"}
    out, warnings = build({**both, "thinking": native}, SONNET_45)
    assert out["thinking"] == native and "output_config" not in out
    assert any(w.startswith("reasoning_effort dropped") for w in warnings)
    with pytest.raises(InvalidRequest) as info:
        build({**base, "thinking": "on"}, CURRENT)
    assert info.value.param == "thinking"


def keys_in(node: Any) -> set[str]:
    """Every key of every object in ``node`` except the names under ``properties``."""
    if isinstance(node, list):
        return set().union(*(keys_in(v) for v in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    out = set(node)
    for key, value in node.items():
        if key in ("properties", "$defs"):
            out |= set().union(*(keys_in(v) for v in value.values())) if value else set()
        else:
            out |= keys_in(value)
    return out


def test_structured_output_and_strict_tools() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    out, warnings = build({**base, "response_format": JSON_SCHEMA_FORMAT}, SONNET_45)
    assert out["output_config"]["format"]["type"] == "json_schema"
    assert out["output_config"]["format"]["schema"]["additionalProperties"] is False
    assert "system" not in out and warnings == ()
    out, warnings = build({**base, "response_format": JSON_SCHEMA_FORMAT}, SONNET_37)
    assert "output_config" not in out and "JSON Schema" in out["system"]
    assert any("response_format json_schema" in w for w in warnings)
    out, warnings = build({**base, "tools": [RICH_TOOL]}, CURRENT)
    tool = out["tools"][0]
    assert tool["strict"] is True and tool["input_schema"]["additionalProperties"] is False
    # Keywords strict schemas do not take are in descriptions now, not keywords.
    assert not keys_in(tool["input_schema"]) & {"minLength", "minimum", "exclusiveMinimum"}
    assert request_issues(out) == []
    out, warnings = build({**base, "tools": [RICH_TOOL]}, HAIKU_35)
    assert "strict" not in out["tools"][0]
    assert any("tools[0].function.strict dropped" in w for w in warnings)
    # Unsent to the API as is: the raw rich schema with strict (the simulator's check).
    raw = {
        "model": CURRENT,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
        "tools": [
            {
                "name": "t",
                "strict": True,
                "input_schema": RICH_TOOL["function"]["parameters"],
            }
        ],
    }
    assert any("minLength" in i or "minimum" in i for i in request_issues(raw))


def test_foreign_tool_ids_are_normalised_and_paired() -> None:
    case = next(c for c in CHAT_CASES if c.name == "tool_round_trip")
    for model in (CURRENT, HAIKU_35):
        out, _ = build(case.body, model)
        uses = [b for b in out["messages"][1]["content"] if b["type"] == "tool_use"]
        results = [b for b in out["messages"][2]["content"] if b["type"] == "tool_result"]
        assert [u["id"] for u in uses] == [r["tool_use_id"] for r in results]
        assert uses[1]["id"] == "call_abc123"
        assert uses[0]["id"] != FOREIGN_ID and re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", uses[0]["id"])
        again, _ = build(case.body, model)
        assert again["messages"][1]["content"][0]["id"] == uses[0]["id"]  # stable


def test_stop_sequences_and_max_tokens_zero() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    out, warnings = build({**base, "stop": ["\n\n", "END"]}, CURRENT)
    assert out["stop_sequences"] == ["END"] and any("whitespace" in w for w in warnings)
    out, _ = build({**base, "max_tokens": 0}, CURRENT)
    assert out["max_tokens"] == 0 and request_issues(out) == []


# ------------------------------------------------------------------ through the simulator


async def post(call: UpstreamCall) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(call.method, call.url, headers=call.headers, data=call.body) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


@pytest.mark.parametrize("model", (CURRENT, SONNET_45, SONNET_37))
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
            assert answer_issues(orjson.loads(raw)) == [], case.name
            done = ADAPTER.parse(req, target, status, raw)
            completion = check_answer(done.body)
            assert done.usage is not None and not done.usage.estimated
            assert completion.usage is not None and completion.usage.prompt_tokens > 0
            if case.name == "json_schema" and model != SONNET_37:
                answer = orjson.loads(completion.choices[0].message.content or "")
                assert set(answer) == {"city", "population", "landmarks"}
            if case.name == "reasoning_effort" and model != HAIKU_35:
                # thinking came back: counted, not relayed as text
                assert done.usage.reasoning_tokens > 0
                message = orjson.loads(raw)
                thought = next(b["thinking"] for b in message["content"] if b["type"] == "thinking")
                assert thought not in (completion.choices[0].message.content or "")
            continue
        events = sse_events(raw)
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
        for event in events:
            assert event_issues(event) == [], (case.name, event)
        decoder = ADAPTER.stream_decoder(req, target)
        chunks = decoder.feed(raw) + decoder.close()
        check_chunks(chunks)
        assert decoder.completed and not decoder.usage.estimated
        finishes = [c.obj["choices"][0]["finish_reason"] for c in chunks if c.obj["choices"]]
        assert finishes[-1] in ("stop", "tool_calls", "length")
        assert any("usage" in c.obj for c in chunks) == req.include_usage
    assert sent >= len(CHAT_CASES) - 2


def messages_body(model: str, **extra: Any) -> JSON:
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Hello"}],
        **extra,
    }


@pytest.mark.parametrize(
    "body",
    [
        messages_body(CURRENT, temperature=0.5),
        messages_body(SONNET_45, temperature=0.5, top_p=0.9),
        messages_body(SONNET_45, thinking={"type": "enabled", "budget_tokens": 64}),
        messages_body(CURRENT, thinking={"type": "enabled", "budget_tokens": 2048}),
        messages_body(HAIKU_35, output_config={"format": {"type": "json_schema", "schema": {}}}),
        messages_body(CURRENT, extra_key=True),
        messages_body(CURRENT, stop_sequences=["\n\n"]),
        messages_body(
            CURRENT,
            messages=[
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "a+b=", "name": "f", "input": {}}],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a+b="}]},
            ],
        ),
        messages_body(
            CURRENT,
            messages=[
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
                },
                {"role": "user", "content": "no result"},
            ],
        ),
        messages_body(CURRENT, max_tokens=-1),
    ],
)
async def test_simulator_refuses_what_anthropic_refuses(sim_url: str, body: JSON) -> None:
    call = UpstreamCall(
        "POST",
        f"{sim_url}/v1/messages",
        {"content-type": "application/json", **HEADERS},
        orjson.dumps(body),
    )
    status, headers, raw = await post(call)
    assert status == 400, raw
    data = orjson.loads(raw)
    assert error_issues(data) == []
    assert data["error"]["type"] == "invalid_request_error"
    assert data["request_id"] == headers["request-id"]
    assert isinstance(ADAPTER.error(status, headers, raw), UpstreamBadRequest)


async def test_simulator_prompt_cache_and_ttl_split(sim_url: str) -> None:
    """Breakpoints with both TTLs: the first request writes (split by TTL), the second
    reads; the adapter carries both into Usage (prompt = input + read + writes)."""
    long_tools = [
        {**WEATHER_TOOL, "function": {**WEATHER_TOOL["function"], "description": "wind " * 4000}}
    ]
    body = {
        "model": "m",
        "tools": long_tools,
        "messages": [
            {"role": "system", "content": "Rules. " * 1500},
            {"role": "user", "content": "Weather in Oslo?"},
        ],
    }
    req = request_of(body)
    target = target_of(CURRENT, sim_url)
    call = ADAPTER.build(req, target)
    out = orjson.loads(call.body)
    out["tools"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    out["system"] = [
        {"type": "text", "text": out["system"], "cache_control": {"type": "ephemeral"}}
    ]
    assert request_issues(out) == []
    call.body = orjson.dumps(out)
    usages = []
    for _ in range(2):
        status, _, raw = await post(call)
        assert status == 200, raw
        message = orjson.loads(raw)
        assert answer_issues(message) == []
        usages.append((message["usage"], ADAPTER.parse(req, target, status, raw).usage))
    (first, u1), (second, u2) = usages
    split = first["cache_creation"]
    assert split["ephemeral_1h_input_tokens"] > 0 and split["ephemeral_5m_input_tokens"] > 0
    assert first["cache_creation_input_tokens"] == sum(split.values())
    assert first["cache_read_input_tokens"] == 0
    assert u1 is not None and u1.cache_write_1h_tokens == split["ephemeral_1h_input_tokens"]
    assert u1.cache_write_tokens == split["ephemeral_5m_input_tokens"]
    assert u1.prompt_tokens == first["input_tokens"] + first["cache_creation_input_tokens"]
    assert second["cache_read_input_tokens"] == first["cache_creation_input_tokens"]
    assert second["cache_creation_input_tokens"] == 0
    assert u2 is not None and u2.cached_tokens == second["cache_read_input_tokens"]
    assert u2.prompt_tokens == u1.prompt_tokens
    # The same through a stream: message_start carries the split.
    out["stream"] = True
    call.body = orjson.dumps(out)
    sreq = request_of({**body, "stream": True, "stream_options": {"include_usage": True}})
    status, _, raw = await post(call)
    decoder = ADAPTER.stream_decoder(sreq, target)
    chunks = decoder.feed(raw) + decoder.close()
    check_chunks(chunks)
    assert decoder.usage.cached_tokens == second["cache_read_input_tokens"]
    assert decoder.usage.prompt_tokens == u1.prompt_tokens


async def test_prompt_caching_deployment_and_warming(sim_url: str) -> None:
    """prompt_caching: the adapter's own markers pass the simulator; max_tokens 0 warms."""
    body = {
        "model": "m",
        "max_tokens": 0,
        "messages": [
            {"role": "system", "content": "Policy. " * 1500},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
    }
    req = request_of(body)
    target = target_of(SONNET_45, sim_url, prompt_caching=True)
    call = ADAPTER.build(req, target)
    assert request_issues(orjson.loads(call.body)) == []
    status, _, raw = await post(call)
    assert status == 200, raw
    message = orjson.loads(raw)
    assert answer_issues(message) == [] and message["usage"]["output_tokens"] == 0
    usage = ADAPTER.parse(req, target, status, raw).usage
    assert usage is not None and usage.cache_write_tokens > 0 and usage.completion_tokens == 0


# ------------------------------------------------------------------ spec-shaped answers

MESSAGE: JSON = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-opus-4-7",
    "content": [
        {"type": "thinking", "thinking": "Paris first.", "signature": "EqQBCgIYAhIM"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Oslo"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 21,
        "cache_creation_input_tokens": 3000,
        "cache_read_input_tokens": 1000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
        "output_tokens": 90,
        "output_tokens_details": {"thinking_tokens": 40},
        "service_tier": "standard",
    },
}


def test_answer_thinking_tools_and_cache_usage() -> None:
    assert answer_issues(MESSAGE) == []
    Message.model_validate(MESSAGE)
    req = request_of({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    done = ADAPTER.parse(req, target_of(CURRENT), 200, orjson.dumps(MESSAGE))
    completion = check_answer(done.body)
    message = completion.choices[0].message
    assert message.content == "Checking both." and message.refusal is None
    # Thinking is not content: the canonical extension carries it, signed.
    raw = orjson.loads(done.body)["choices"][0]["message"]
    assert raw["reasoning_content"] == "Paris first."
    assert raw["thinking_blocks"] == MESSAGE["content"][:2]
    assert [c.id for c in message.tool_calls or []] == ["toolu_01A", "toolu_01B"]
    assert completion.choices[0].finish_reason == "tool_calls"
    u = done.usage
    assert u is not None
    assert (u.prompt_tokens, u.cached_tokens) == (21 + 3000 + 1000, 1000)
    assert (u.cache_write_tokens, u.cache_write_1h_tokens) == (1000, 2000)
    assert (u.completion_tokens, u.reasoning_tokens) == (90, 40)
    assert completion.usage is not None
    assert completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.reasoning_tokens == 40


def test_answer_refusal() -> None:
    refused = {
        **MESSAGE,
        "content": [],
        "stop_reason": "refusal",
        "stop_details": {"type": "refusal", "category": "cyber", "explanation": "Not that."},
        "usage": {"input_tokens": 10, "output_tokens": 2},
    }
    assert answer_issues(refused) == []
    req = request_of({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    completion = check_answer(
        ADAPTER.parse(req, target_of(CURRENT), 200, orjson.dumps(refused)).body
    )
    assert completion.choices[0].finish_reason == "content_filter"
    assert completion.choices[0].message.refusal == "Not that."
    # No split given: every write is a 5-minute one.
    usage = ADAPTER.parse(
        req,
        target_of(CURRENT),
        200,
        orjson.dumps(
            {
                **MESSAGE,
                "usage": {"input_tokens": 5, "output_tokens": 1, "cache_creation_input_tokens": 7},
            }
        ),
    ).usage
    assert usage is not None and (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (7, 0)


STREAM: list[JSON] = [
    {
        "type": "message_start",
        "message": {
            **MESSAGE,
            "content": [],
            "stop_reason": None,
            "usage": {**MESSAGE["usage"], "output_tokens": 1, "output_tokens_details": None},
        },
    },
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },
    {"type": "ping"},
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Hm."},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "EqQB"},
    },
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Sure."}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "content_block_start",
        "index": 2,
        "content_block": {
            "type": "tool_use",
            "id": "toolu_01A",
            "name": "get_weather",
            "input": {},
        },
    },
    {
        "type": "content_block_delta",
        "index": 2,
        "delta": {"type": "input_json_delta", "partial_json": '{"city": "Paris"}'},
    },
    {"type": "content_block_stop", "index": 2},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 21,
            "cache_creation_input_tokens": 3000,
            "cache_read_input_tokens": 1000,
            "output_tokens": 90,
            "output_tokens_details": {"thinking_tokens": 40},
        },
    },
    {"type": "message_stop"},
]


def test_stream_thinking_tools_and_cache_usage() -> None:
    for event in STREAM:
        assert event_issues(event) == [], event
    req = request_of(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    decoder = ADAPTER.stream_decoder(req, target_of(CURRENT))
    chunks = decoder.feed(sse(STREAM)) + decoder.close()
    check_chunks(chunks)
    text = "".join(
        c.obj["choices"][0]["delta"].get("content") or "" for c in chunks if c.obj["choices"]
    )
    assert text == "Sure."  # the thinking is not content...
    thought = [c.obj["choices"][0]["delta"] for c in chunks if c.obj["choices"]]
    assert {"reasoning_content": "Hm."} in thought  # ...but the canonical extension
    signed = {"type": "thinking", "thinking": "", "signature": "EqQB"}
    assert {"thinking_blocks": [signed]} in thought
    u = decoder.usage
    assert (u.prompt_tokens, u.cached_tokens) == (4021, 1000)
    assert (u.cache_write_tokens, u.cache_write_1h_tokens) == (1000, 2000)
    assert (u.completion_tokens, u.reasoning_tokens) == (90, 40)
    final = chunks[-1].obj["usage"]
    assert final["completion_tokens_details"]["reasoning_tokens"] == 40


def test_stream_overloaded_error_event() -> None:
    event = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert event_issues(event) == []
    req = request_of({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    decoder = ADAPTER.stream_decoder(req, target_of(CURRENT))
    decoder.feed(sse(STREAM[:4]))
    with pytest.raises(UpstreamUnavailable):
        decoder.feed(sse([event]))


# Each status Anthropic documents (API errors page) with its error type, as the SDK's
# ErrorObject union names them (2.17.0 has no request_too_large type: a 413 body is an
# invalid_request_error).
DOCUMENTED_ERRORS: list[tuple[int, str, type[UpstreamError]]] = [
    (400, "invalid_request_error", UpstreamBadRequest),
    (401, "authentication_error", UpstreamUnavailable),
    (402, "billing_error", UpstreamUnavailable),
    (403, "permission_error", UpstreamUnavailable),
    (404, "not_found_error", UpstreamBadRequest),
    (413, "invalid_request_error", UpstreamBadRequest),
    (429, "rate_limit_error", UpstreamRateLimited),
    (500, "api_error", UpstreamUnavailable),
    (504, "timeout_error", UpstreamUnavailable),
    (529, "overloaded_error", UpstreamUnavailable),
]


@pytest.mark.parametrize(("status", "etype", "expected"), DOCUMENTED_ERRORS)
def test_documented_errors(status: int, etype: str, expected: type[UpstreamError]) -> None:
    body = {
        "type": "error",
        "error": {"type": etype, "message": f"{etype} happened"},
        "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy",
    }
    assert error_issues(body) == []
    err = ADAPTER.error(status, {"retry-after": "3"}, orjson.dumps(body))
    assert type(err) is expected
    assert f"{etype} happened" in str(err) or status in (401, 403)
    if status in (429, 529):
        assert err.retry_after == 3.0


# ------------------------------------------------------------------ thinking in tool loops


def test_tool_loop_without_signed_thinking_cannot_think() -> None:
    """Anthropic refuses thinking when the assistant turn being answered has tool calls
    but no thinking block (another provider's turn, say): thinking is turned off, with a
    warning; the same turn carrying its signed thinking_blocks thinks."""
    case = next(c for c in CHAT_CASES if c.name == "tool_round_trip")
    body = {**case.body, "reasoning_effort": "medium"}
    for model in (CURRENT, SONNET_45):
        out, warnings = build(body, model)
        assert "thinking" not in out and any("thinking off" in w for w in warnings)
        assert out["max_tokens"] == 4096  # not raised for a budget that is not used
        assert not any("max_tokens" in w for w in warnings)
        assert request_issues(out) == []
    # What the adapter avoided: the simulator refuses it as Anthropic does.
    out, _ = build(body, CURRENT)
    refused = request_issues({**out, "thinking": {"type": "adaptive"}})
    assert any("Expected `thinking`" in i for i in refused)
    signed = {"type": "thinking", "thinking": "Two cities.", "signature": "EqQBCgIYAhIM"}
    messages = copy.deepcopy(case.body["messages"])
    messages[1]["thinking_blocks"] = [signed, {"type": "thinking", "thinking": "x"}]
    messages[1]["reasoning_content"] = "Two cities."
    out, warnings = build({**body, "messages": messages}, CURRENT)
    assert out["thinking"] == {"type": "adaptive"}
    assert out["messages"][1]["content"][0] == signed  # the unsigned one is not replayed
    assert out["messages"][1]["content"][1]["type"] == "tool_use"
    assert request_issues(out) == []
    # A family without thinking gets no thinking blocks in its history.
    out, _ = build({**body, "messages": messages}, HAIKU_35)
    assert all(b["type"] != "thinking" for b in out["messages"][1]["content"])


async def test_thinking_tool_loop_through_the_simulator(sim_url: str) -> None:
    """Call with thinking and tools; the answer's tool call comes with a signed thinking
    block (the canonical extension); the client sends the assistant message back with the
    tool result and the next request, thinking still on, is accepted."""
    first = {
        "model": "m",
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "reasoning_effort": "low",
    }
    target = target_of(CURRENT, sim_url)
    req = request_of(first)
    call = ADAPTER.build(req, target)
    status, _, raw = await post(call)
    assert status == 200, raw
    answer = orjson.loads(ADAPTER.parse(req, target, status, raw).body)["choices"][0]
    assert answer["finish_reason"] == "tool_calls"
    message = answer["message"]
    assert message["thinking_blocks"][0]["signature"]
    tool_call = message["tool_calls"][0]
    second = {
        **first,
        "messages": [
            *first["messages"],
            message,
            {"role": "tool", "tool_call_id": tool_call["id"], "content": "18C"},
        ],
    }
    req2 = request_of(second)
    call2 = ADAPTER.build(req2, target)
    sent = orjson.loads(call2.body)
    assert sent["thinking"] == {"type": "adaptive"} and not call2.warnings
    assert sent["messages"][1]["content"][0]["type"] == "thinking"
    status, _, raw = await post(call2)
    assert status == 200, raw
    check_answer(ADAPTER.parse(req2, target, status, raw).body)
    # Streamed, the signature arrives as a thinking_blocks delta.
    streamed = request_of({**first, "stream": True})
    status, _, raw = await post(ADAPTER.build(streamed, target))
    decoder = ADAPTER.stream_decoder(streamed, target)
    chunks = decoder.feed(raw) + decoder.close()
    check_chunks(chunks)
    deltas = [c.obj["choices"][0]["delta"] for c in chunks if c.obj["choices"]]
    assert any(d.get("thinking_blocks", [{}])[0].get("signature") for d in deltas)


def test_modalities_dropped_with_a_warning() -> None:
    out, warnings = build(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "modalities": ["text"]},
        CURRENT,
    )
    assert "modalities" not in out and any(w.startswith("modalities dropped") for w in warnings)


def test_max_tokens_within_the_model_s_output() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    out, warnings = build({**base, "max_tokens": 100000}, HAIKU_35)
    assert out["max_tokens"] == 8192 and any("max_tokens lowered to 8192" in w for w in warnings)
    out, warnings = build({**base, "max_tokens": 100000}, CURRENT)
    assert out["max_tokens"] == 100000 and warnings == ()
    out, _ = build({**base, "reasoning_effort": "xhigh"}, "claude-opus-4-1-20250805")
    assert out["max_tokens"] == 32000 and out["thinking"]["budget_tokens"] == 31999
    assert request_issues(out) == []
    too_many = {**out, "max_tokens": 32001, "thinking": {"type": "enabled", "budget_tokens": 2000}}
    assert any("maximum allowed number of output tokens" in i for i in request_issues(too_many))


def test_stream_refusal() -> None:
    events = [
        STREAM[0],
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": "refusal",
                "stop_sequence": None,
                "stop_details": {"type": "refusal", "category": "bio", "explanation": None},
            },
            "usage": {"output_tokens": 3},
        },
        {"type": "message_stop"},
    ]
    for event in events:
        assert event_issues(event) == [], event
    req = request_of({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    decoder = ADAPTER.stream_decoder(req, target_of(CURRENT))
    chunks = decoder.feed(sse(events)) + decoder.close()
    check_chunks(chunks)
    last = chunks[-1].obj["choices"][0]
    assert last["finish_reason"] == "content_filter"
    assert last["delta"]["refusal"] == "The model declined to answer (policy category: bio)."


def test_cut_stream_keeps_the_cache_writes() -> None:
    """A stream cut before message_delta: the estimate keeps message_start's prompt side,
    cache reads and both kinds of writes."""
    req = request_of({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True})
    decoder = ADAPTER.stream_decoder(req, target_of(CURRENT))
    decoder.feed(sse(STREAM[:8]))
    with pytest.raises(UpstreamError):
        decoder.close()
    u = decoder.usage
    assert u.estimated and (u.prompt_tokens, u.cached_tokens) == (4021, 1000)
    assert (u.cache_write_tokens, u.cache_write_1h_tokens) == (1000, 2000)
    assert u.completion_tokens >= 1


async def test_simulator_count_tokens_follows_the_sdk(sim_url: str) -> None:
    """POST /v1/messages/count_tokens takes MessageCountTokensParams (no max_tokens)."""
    headers = {"content-type": "application/json", **HEADERS}
    good = {"model": CURRENT, "messages": [{"role": "user", "content": "Hello there"}]}
    url = f"{sim_url}/v1/messages/count_tokens"
    status, _, raw = await post(UpstreamCall("POST", url, headers, orjson.dumps(good)))
    assert status == 200 and orjson.loads(raw)["input_tokens"] > 0
    for bad in ({**good, "max_tokens": 10}, {**good, "temperature": 0.5}):
        status, _, raw = await post(UpstreamCall("POST", url, headers, orjson.dumps(bad)))
        assert status == 400, bad
        assert error_issues(orjson.loads(raw)) == []


def test_message_names_dropped_with_a_warning() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x", "name": "ann"}]}
    out, warnings = build(body, CURRENT)
    assert "name" not in out["messages"][0]
    assert any(w.startswith("messages[].name dropped") for w in warnings)


async def test_simulator_reset_empties_the_prompt_cache(sim_url: str) -> None:
    body = {
        "model": CURRENT,
        "max_tokens": 8,
        "system": [
            {"type": "text", "text": "Reset rules. " * 1500, "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [{"role": "user", "content": "hi"}],
    }
    call = UpstreamCall(
        "POST", f"{sim_url}/v1/messages", {"content-type": "application/json", **HEADERS},
        orjson.dumps(body),
    )  # fmt: skip
    reads = []
    for reset in (False, True, False):
        if reset:
            SimControl(sim_url).reset()
        status, _, raw = await post(call)
        assert status == 200, raw
        reads.append(orjson.loads(raw)["usage"]["cache_read_input_tokens"])
    assert reads[1] == 0 and reads[2] > 0  # after the reset: written again, then read
