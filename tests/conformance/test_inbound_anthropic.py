"""The inbound Anthropic Messages API (/v1/messages, /v1/messages/count_tokens) driven by the
official ``anthropic`` SDK (2.17.0) against a real gateway process, with (a) an Anthropic
deployment and (b) an OpenAI-compatible deployment, both on the simulated provider.

Every answer is read by the SDK itself (its typed ``Message`` / stream events) and the raw
JSON is validated again with ``anthropic.types.Message`` and ``RawMessageStreamEvent``;
errors must surface as the SDK's typed exceptions with Anthropic's error body shape. What
reached the upstream is checked from the simulator's request log: the OpenAI side must get
``max_completion_tokens`` (the OpenAI spec marks ``max_tokens`` deprecated) and never
Anthropic's ``thinking`` object.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from pydantic import TypeAdapter

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

# Alias -> the path its upstream request takes on the simulator.
UPSTREAMS = {"claude": "/v1/messages", "chat": "/v1/chat/completions"}
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


@pytest.fixture(scope="module")
def gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work: Path = tmp_path_factory.mktemp("inbound-anthropic")
    gw = GatewayProcess(sim_config(sim_url, work / "state"), work).start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def client(gateway: GatewayProcess, sim: SimControl) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0) as c:
        yield c


def _key(gateway: GatewayProcess, **fields: Any) -> str:
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    r = httpx.post(f"{gateway.url}/admin/keys", json=fields, headers=admin, timeout=10)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def _create(client: anthropic.Anthropic, **kwargs: Any) -> tuple[Message, httpx.Headers]:
    """messages.create, its raw JSON validated with the SDK's Message type."""
    raw = client.messages.with_raw_response.create(**kwargs)
    data = orjson.loads(raw.http_response.content)
    Message.model_validate(data)
    assert set(data) >= {"id", "type", "role", "model", "content", "stop_reason", "usage"}
    assert data["model"] == kwargs["model"]
    return raw.parse(), raw.headers


def _upstream(sim: SimControl, model: str) -> dict[str, Any]:
    """The body of the last model request the simulator received for this alias."""
    sent = [r for r in sim.requests() if r["path"].startswith(UPSTREAMS[model])]
    assert sent, f"no upstream request on {UPSTREAMS[model]}"
    body: dict[str, Any] = orjson.loads(sent[-1]["body"])
    return body


def _png() -> str:
    """A real 1x1 PNG, base64."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    png += chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


def _sent_max_tokens(body: dict[str, Any], model: str) -> int:
    if model == "chat":
        # The spec's name; an openai_compatible upstream gets the same cap as max_tokens
        # too (self-hosted servers may read only that one), never a different value.
        value: int = body["max_completion_tokens"]
        assert body.get("max_tokens", value) == value
        return value
    assert "max_completion_tokens" not in body
    value = body["max_tokens"]
    return value


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_plain_message(client: anthropic.Anthropic, sim: SimControl, model: str) -> None:
    msg, headers = _create(
        client, model=model, max_tokens=20, messages=[{"role": "user", "content": "Hello there"}]
    )
    assert msg.content and msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason in ("end_turn", "max_tokens")
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg.usage.cache_creation is not None  # the TTL split is always given
    assert headers["x-interlock-deployment"]
    assert _sent_max_tokens(_upstream(sim, model), model) == 20


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_system_param_and_system_role(
    client: anthropic.Anthropic, sim: SimControl, model: str
) -> None:
    msg, _ = _create(
        client,
        model=model,
        max_tokens=20,
        system=[{"type": "text", "text": "You are terse."}],
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "system", "content": "From now on answer in French."},
            {"role": "user", "content": "And now?"},
        ],
    )
    assert msg.content
    sent = orjson.dumps(_upstream(sim, model)).decode()
    assert "You are terse." in sent and "From now on answer in French." in sent
    if model == "chat":
        roles = [m["role"] for m in _upstream(sim, model)["messages"]]
        assert roles == ["system", "user", "assistant", "system", "user"]


TOOLS: list[Any] = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_tools_and_tool_results(client: anthropic.Anthropic, sim: SimControl, model: str) -> None:
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    first, _ = _create(
        client,
        model=model,
        max_tokens=60,
        tools=TOOLS,
        tool_choice={"type": "any"},
        messages=ask,
    )
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather" and isinstance(use.input, dict)
    history: list[Any] = [
        *ask,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C, rain"}],
        },
    ]
    second, _ = _create(client, model=model, max_tokens=40, tools=TOOLS, messages=history)
    assert any(b.type == "text" for b in second.content)
    sent = _upstream(sim, model)
    if model == "chat":
        tool_msg = next(m for m in sent["messages"] if m["role"] == "tool")
        assert tool_msg == {"role": "tool", "tool_call_id": use.id, "content": "18C, rain"}
    else:
        result = sent["messages"][-1]["content"][0]
        assert result["type"] == "tool_result" and result["content"] == "18C, rain"


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_image(client: anthropic.Anthropic, sim: SimControl, model: str) -> None:
    data = _png()
    msg, _ = _create(
        client,
        model=model,
        max_tokens=20,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": data},
                    },
                ],
            }
        ],
    )
    assert msg.content
    parts = _upstream(sim, model)["messages"][-1]["content"]
    if model == "chat":
        assert {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}} in parts
    else:
        image = next(p for p in parts if p["type"] == "image")
        assert image["source"] == {"type": "base64", "media_type": "image/png", "data": data}


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_stream_event_sequence(client: anthropic.Anthropic, sim: SimControl, model: str) -> None:
    kwargs: dict[str, Any] = {"model": model, "max_tokens": 30,
                              "messages": [{"role": "user", "content": "Tell me a story"}]}  # fmt: skip
    plain, _ = _create(client, **kwargs)
    kinds: list[str] = []
    with client.messages.create(stream=True, extra_body={"top_k": 5}, **kwargs) as stream:
        for event in stream:
            EVENTS.validate_python(event.model_dump())  # what the SDK parsed, re-checked
            kinds.append(event.type)
        assert "top_k dropped" in stream.response.headers["x-interlock-warnings"]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds[1] == "content_block_start" and "content_block_stop" in kinds
    with client.messages.stream(**kwargs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "".join(b.text for b in plain.content if b.type == "text")
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.stop_reason == plain.stop_reason


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_thinking(client: anthropic.Anthropic, sim: SimControl, model: str) -> None:
    msg, _ = _create(
        client,
        model=model,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Think, then answer: 2+2?"}],
    )
    assert any(b.type == "text" for b in msg.content)
    # Thinking blocks, when the upstream returns any, come first and carry a signature.
    kinds = [b.type for b in msg.content]
    assert kinds == sorted(kinds, key=lambda k: k not in ("thinking", "redacted_thinking"))
    sent = _upstream(sim, model)
    if model == "claude":
        # Forwarded natively (the model's rules may turn a manual budget into adaptive).
        assert sent["thinking"]["type"] in ("enabled", "adaptive")
    else:
        assert "thinking" not in sent  # an OpenAI-kind upstream never gets Anthropic's object


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_max_tokens_zero_warms_without_output(
    client: anthropic.Anthropic, sim: SimControl, model: str
) -> None:
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": 0,
        "system": [
            {
                "type": "text",
                "text": "A long, stable prefix. " * 20,
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "messages": [{"role": "user", "content": "warm"}],
    }
    msg, headers = _create(client, **kwargs)
    assert msg.content == [] and msg.stop_reason == "max_tokens"
    assert msg.usage.input_tokens + (msg.usage.cache_creation_input_tokens or 0) > 0
    assert "max_tokens 0" in headers["x-interlock-warnings"]
    assert _sent_max_tokens(_upstream(sim, model), model) == 1
    with client.messages.stream(**kwargs) as stream:
        assert "".join(stream.text_stream) == ""
        final = stream.get_final_message()
    assert final.content == [] and final.stop_reason == "max_tokens"


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_count_tokens(client: anthropic.Anthropic, sim: SimControl, model: str) -> None:
    kwargs: dict[str, Any] = {
        "model": model,
        "system": "You are a weather bot.",
        "tools": TOOLS,
        "messages": [{"role": "user", "content": "How warm is Lisbon today, roughly?"}],
    }
    raw = client.messages.with_raw_response.count_tokens(**kwargs)
    data = orjson.loads(raw.http_response.content)
    assert set(data) == {"input_tokens"}
    counted = MessageTokensCount.model_validate(data).input_tokens
    assert counted > 0
    calls = [r["path"] for r in sim.requests()]
    if model == "claude":
        assert raw.headers["x-interlock-token-count"] == "exact"
        assert calls == ["/v1/messages/count_tokens"]
        # The deployment's own count: the same as the prompt it bills for that request.
        msg, _ = _create(client, max_tokens=5, **kwargs)
        assert counted == msg.usage.input_tokens
    else:
        assert raw.headers["x-interlock-token-count"] == "estimate"
        assert calls == []  # counted by the gateway's tokenizer; no model call
    assert sim.ledger()["totals"]["requests"] == (1 if model == "claude" else 0)


def _error_body(err: anthropic.APIStatusError, kind: str) -> None:
    body = err.response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_errors_are_typed(client: anthropic.Anthropic, gateway: GatewayProcess) -> None:
    one = [{"role": "user", "content": "x"}]
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="claude", max_tokens=5, messages=one,
                               extra_body={"frequency_penalty": 1})  # fmt: skip
    _error_body(bad.value, "invalid_request_error")
    assert "frequency_penalty" in bad.value.response.json()["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.count_tokens(model="chat", messages=one, extra_body={"max_tokens": 5})
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="no-such-model", max_tokens=5, messages=one)
    _error_body(missing.value, "not_found_error")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="no-such-model", messages=one)

    with anthropic.Anthropic(base_url=gateway.url, api_key="wrong", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as auth:
            wrong.messages.create(model="claude", max_tokens=5, messages=one)
        _error_body(auth.value, "authentication_error")
        with pytest.raises(anthropic.AuthenticationError):
            wrong.messages.count_tokens(model="claude", messages=one)

    only_chat = _key(gateway, models=["chat"])
    with anthropic.Anthropic(base_url=gateway.url, api_key=only_chat, max_retries=0) as scoped:
        with pytest.raises(anthropic.PermissionDeniedError) as denied:
            scoped.messages.create(model="claude", max_tokens=5, messages=one)
        _error_body(denied.value, "permission_error")
        with pytest.raises(anthropic.PermissionDeniedError):
            scoped.messages.count_tokens(model="claude", messages=one)

    slow = _key(gateway, rate_limits={"rpm": 1})
    with anthropic.Anthropic(base_url=gateway.url, api_key=slow, max_retries=0) as limited:
        limited.messages.count_tokens(model="chat", messages=one)  # counts as a request
        with pytest.raises(anthropic.RateLimitError) as rate:
            limited.messages.create(model="chat", max_tokens=5, messages=one)
        _error_body(rate.value, "rate_limit_error")
        assert rate.value.response.headers.get("retry-after")


def test_upstream_overload_surfaces_typed(client: anthropic.Anthropic, sim: SimControl) -> None:
    sim.set_faults([{"type": "status", "status": 529}])
    with pytest.raises(anthropic.APIStatusError) as info:
        client.messages.create(
            model="claude", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code >= 500
    _error_body(info.value, info.value.response.json()["error"]["type"])


def test_thinking_blocks_from_anthropic_reach_the_client(client: anthropic.Anthropic) -> None:
    kwargs: dict[str, Any] = {
        "model": "claude",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Think, then answer: 2+2?"}],
    }
    msg, _ = _create(client, **kwargs)
    thinking = [b for b in msg.content if b.type == "thinking"]
    assert thinking and all(b.signature for b in thinking)
    with client.messages.stream(**kwargs) as stream:
        final = stream.get_final_message()
    streamed = [b for b in final.content if b.type == "thinking"]
    assert streamed and all(b.signature for b in streamed)


@pytest.mark.parametrize("model", list(UPSTREAMS))
def test_tool_loop_with_thinking_replays_signed_blocks(
    client: anthropic.Anthropic, sim: SimControl, model: str
) -> None:
    """A tool loop with thinking on: the client replays the assistant turn as received
    (signed thinking first, then tool_use); Anthropic needs the thinking block back, an
    OpenAI-format upstream must not get Anthropic's thinking object."""
    think: dict[str, Any] = {"type": "enabled", "budget_tokens": 1024}
    ask = [{"role": "user", "content": "Weather in Paris? Think first."}]
    first, _ = _create(client, model="claude", max_tokens=2048, thinking=think, messages=ask)
    signed = [b.model_dump() for b in first.content if b.type == "thinking"]
    assert signed and signed[0]["signature"]
    turn = [*signed, {"type": "tool_use", "id": "toolu_01loop", "name": "get_weather",
                      "input": {"city": "Paris"}}]  # fmt: skip
    history: list[Any] = [
        *ask,
        {"role": "assistant", "content": turn},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01loop", "content": "18C"}]},
    ]  # fmt: skip
    msg, _ = _create(
        client, model=model, max_tokens=2048, thinking=think, tools=TOOLS, messages=history
    )
    assert msg.content
    sent = _upstream(sim, model)
    assistant = next(m for m in sent["messages"] if m["role"] == "assistant")
    if model == "claude":
        assert assistant["content"][0] == signed[0]
    else:
        assert "thinking" not in sent and assistant["tool_calls"][0]["id"] == "toolu_01loop"


def test_count_tokens_estimates_what_anthropic_refuses_raw(
    client: anthropic.Anthropic, sim: SimControl
) -> None:
    """A history with a foreign tool id (Gemini's carry '+', '/', '='): /v1/messages
    normalises it for Anthropic, count_tokens forwards the client's body as sent and
    Anthropic refuses it, so the gateway estimates instead and says why."""
    foreign = "CiQB" + "a+b/c=" * 4
    history: list[Any] = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": foreign, "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": foreign, "content": "18C"}]},
    ]  # fmt: skip
    raw = client.messages.with_raw_response.count_tokens(
        model="claude", tools=TOOLS, messages=history
    )
    assert raw.parse().input_tokens > 0
    assert raw.headers["x-interlock-token-count"] == "estimate"
    assert "count_tokens estimated" in raw.headers["x-interlock-warnings"]
    msg, _ = _create(client, model="claude", max_tokens=20, tools=TOOLS, messages=history)
    assert msg.content
