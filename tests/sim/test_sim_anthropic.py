"""Anthropic Messages wire format over real HTTP, raw and through the anthropic SDK."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import orjson

from interlock.sim import SimControl
from interlock.sim.schema import conforms

REQ: dict[str, Any] = {
    "model": "sim-large",
    "max_tokens": 64,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {"role": "user", "content": "Is the line clear?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                {"type": "text", "text": "And now?"},
            ],
        },
    ],
}


def sse_events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ")
        out.append((lines[0][7:], orjson.loads(lines[1][6:])))
    return out


def test_messages_plain(http: httpx.Client, anthropic_headers: dict[str, str]) -> None:
    r = http.post("/v1/messages", json=REQ, headers=anthropic_headers)
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    assert body["content"][0]["type"] == "text" and len(body["content"][0]["text"].split()) == 16
    # system 3 + "Is the line clear?" 5 + "Checking." 2 + "And now?" 3, + 3 per message + 3
    assert body["usage"]["input_tokens"] == 3 + 5 + 2 + 3 + 4 * 3 + 3
    assert body["usage"]["output_tokens"] == 16


def test_messages_stream_event_sequence(
    http: httpx.Client, anthropic_headers: dict[str, str]
) -> None:
    plain = http.post("/v1/messages", json=REQ, headers=anthropic_headers).json()
    r = http.post("/v1/messages", json={**REQ, "stream": True}, headers=anthropic_headers)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert all(name == data["type"] for name, data in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] == plain["usage"]["input_tokens"]
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == plain["content"][0]["text"]
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"
    assert events[-2][1]["usage"]["output_tokens"] == 16


def test_messages_max_tokens_and_stop_sequences(
    http: httpx.Client, anthropic_headers: dict[str, str]
) -> None:
    capped = http.post(
        "/v1/messages", json={**REQ, "max_tokens": 3}, headers=anthropic_headers
    ).json()
    assert capped["stop_reason"] == "max_tokens" and capped["usage"]["output_tokens"] == 3
    full = http.post("/v1/messages", json=REQ, headers=anthropic_headers).json()
    text = full["content"][0]["text"]
    stop = " " + text.split()[2]
    stopped = http.post(
        "/v1/messages", json={**REQ, "stop_sequences": [stop]}, headers=anthropic_headers
    ).json()
    assert stopped["stop_reason"] == "stop_sequence" and stopped["stop_sequence"] == stop
    assert text.startswith(stopped["content"][0]["text"])


def test_messages_tools(
    http: httpx.Client,
    anthropic_headers: dict[str, str],
    weather_schema: dict[str, Any],
) -> None:
    req = {
        **REQ,
        "tools": [{"name": "get_weather", "description": "w", "input_schema": weather_schema}],
        "tool_choice": {"type": "tool", "name": "get_weather"},
    }
    body = http.post("/v1/messages", json=req, headers=anthropic_headers).json()
    assert body["stop_reason"] == "tool_use"
    block = body["content"][0]
    assert block["type"] == "tool_use" and block["name"] == "get_weather"
    assert block["id"].startswith("toolu_") and conforms(block["input"], weather_schema)
    events = sse_events(
        http.post("/v1/messages", json={**req, "stream": True}, headers=anthropic_headers).text
    )
    assert events[1][1]["content_block"]["type"] == "tool_use"
    partial = "".join(d["delta"]["partial_json"] for n, d in events if n == "content_block_delta")
    assert orjson.loads(partial) == block["input"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    follow = {
        **req,
        "messages": [
            *REQ["messages"],
            {"role": "assistant", "content": [block]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": block["id"], "content": "sunny"}
                ],
            },
        ],
    }
    answer = http.post("/v1/messages", json=follow, headers=anthropic_headers).json()
    assert answer["stop_reason"] == "end_turn" and answer["content"][0]["type"] == "text"


def test_messages_auth_and_validation(http: httpx.Client) -> None:
    r = http.post("/v1/messages", json=REQ, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401
    assert r.json() == {
        "type": "error",
        "error": {"type": "authentication_error", "message": r.json()["error"]["message"]},
        "request_id": r.headers["request-id"],  # as Anthropic's ErrorResponse carries it
    }
    r = http.post("/v1/messages", json=REQ, headers={"x-api-key": "k"})
    assert r.status_code == 400
    no_max = {k: v for k, v in REQ.items() if k != "max_tokens"}
    r = http.post(
        "/v1/messages", json=no_max, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_anthropic_sdk_plain_and_stream(
    sim_url: str,
    sim: SimControl,
    weather_schema: dict[str, Any],
) -> None:
    with anthropic.Anthropic(base_url=sim_url, api_key="sk-ant-test", max_retries=0) as client:
        msg = client.messages.create(
            model="sim-small", max_tokens=100, messages=[{"role": "user", "content": "hello"}]
        )
        assert msg.stop_reason == "end_turn" and msg.usage.output_tokens == 16
        first = msg.content[0]
        assert first.type == "text"
        with client.messages.stream(
            model="sim-small", max_tokens=100, messages=[{"role": "user", "content": "hello"}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == first.text
        assert final.usage.output_tokens == 16 and final.stop_reason == "end_turn"
        tool_msg = client.messages.create(
            model="sim-small",
            max_tokens=100,
            messages=[{"role": "user", "content": "w?"}],
            tools=[{"name": "get_weather", "input_schema": weather_schema}],
        )
        assert tool_msg.stop_reason == "tool_use"
        with client.messages.stream(
            model="sim-small",
            max_tokens=100,
            messages=[{"role": "user", "content": "w?"}],
            tools=[{"name": "get_weather", "input_schema": weather_schema}],
        ) as stream:
            streamed = stream.get_final_message()
        use = streamed.content[0]
        assert use.type == "tool_use" and conforms(use.input, weather_schema)
    assert sim.ledger()["totals"]["requests"] == 4
