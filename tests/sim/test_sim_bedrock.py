"""Bedrock Converse (and ConverseStream over AWS event-stream) over real HTTP."""

from __future__ import annotations

from typing import Any

import botocore.session
import httpx
import orjson
import pytest
from botocore.config import Config
from botocore.eventstream import EventStreamBuffer

from interlock.sim import SimControl
from interlock.sim.eventstream import encode_event, encode_message
from interlock.sim.schema import conforms

MODEL = "anthropic.sim-small-v1:0"
PATH = "/model/anthropic.sim-small-v1%3A0"
REQ: dict[str, Any] = {
    "system": [{"text": "Be brief."}],
    "messages": [{"role": "user", "content": [{"text": "Is the line clear?"}]}],
    "inferenceConfig": {"maxTokens": 100, "temperature": 0.2},
}


def decode(data: bytes) -> list[tuple[dict[str, Any], Any]]:
    buf = EventStreamBuffer()
    buf.add_data(data)
    return [(msg.headers, orjson.loads(msg.payload)) for msg in buf]


def test_eventstream_round_trip_through_botocore() -> None:
    raw = encode_message({":event-type": "x", "ünïcode": "välue"}, b"\x00\x01payload")
    raw += encode_event("messageStop", {"stopReason": "end_turn"})
    buf = EventStreamBuffer()
    buf.add_data(raw[:7])
    assert list(buf) == []
    buf.add_data(raw[7:])
    first, second = list(buf)
    assert first.headers == {":event-type": "x", "ünïcode": "välue"}
    assert first.payload == b"\x00\x01payload"
    assert second.headers[":message-type"] == "event"
    assert orjson.loads(second.payload) == {"stopReason": "end_turn"}


def test_converse(http: httpx.Client, bedrock_headers: dict[str, str], sim: SimControl) -> None:
    r = http.post(PATH + "/converse", json=REQ, headers=bedrock_headers)
    assert r.status_code == 200
    body = r.json()
    msg = body["output"]["message"]
    assert msg["role"] == "assistant" and len(msg["content"][0]["text"].split()) == 16
    assert body["stopReason"] == "end_turn"
    assert body["usage"] == {
        "inputTokens": 3 + 5 + 2 * 3 + 3,
        "outputTokens": 16,
        "totalTokens": 17 + 16,
    }
    assert isinstance(body["metrics"]["latencyMs"], int)
    assert sim.ledger()["entries"][0]["model"] == MODEL


def test_converse_stream(http: httpx.Client, bedrock_headers: dict[str, str]) -> None:
    plain = http.post(PATH + "/converse", json=REQ, headers=bedrock_headers).json()
    r = http.post(PATH + "/converse-stream", json=REQ, headers=bedrock_headers)
    assert r.headers["content-type"] == "application/vnd.amazon.eventstream"
    events = decode(r.content)
    types = [h[":event-type"] for h, _ in events]
    assert types[0] == "messageStart" and types[-3:] == [
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    assert all(
        h[":message-type"] == "event" and h[":content-type"] == "application/json"
        for h, _ in events
    )
    text = "".join(p["delta"]["text"] for h, p in events if h[":event-type"] == "contentBlockDelta")
    assert text == plain["output"]["message"]["content"][0]["text"]
    assert events[-2][1] == {"stopReason": "end_turn"}
    assert events[-1][1]["usage"] == plain["usage"]


def test_converse_limits_and_tools(
    http: httpx.Client,
    bedrock_headers: dict[str, str],
    weather_schema: dict[str, Any],
) -> None:
    capped = http.post(
        PATH + "/converse",
        headers=bedrock_headers,
        json={**REQ, "inferenceConfig": {"maxTokens": 2}},
    ).json()
    assert capped["stopReason"] == "max_tokens" and capped["usage"]["outputTokens"] == 2
    req = {
        **REQ,
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "get_weather",
                        "description": "w",
                        "inputSchema": {"json": weather_schema},
                    }
                }
            ],
            "toolChoice": {"any": {}},
        },
    }
    body = http.post(PATH + "/converse", json=req, headers=bedrock_headers).json()
    use = body["output"]["message"]["content"][0]["toolUse"]
    assert body["stopReason"] == "tool_use" and use["name"] == "get_weather"
    assert conforms(use["input"], weather_schema)
    events = decode(http.post(PATH + "/converse-stream", json=req, headers=bedrock_headers).content)
    start = next(p for h, p in events if h[":event-type"] == "contentBlockStart")
    assert start["start"]["toolUse"]["name"] == "get_weather"
    partial = "".join(
        p["delta"]["toolUse"]["input"] for h, p in events if h[":event-type"] == "contentBlockDelta"
    )
    assert orjson.loads(partial) == use["input"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer abc", "x-amz-date": "20240101T000000Z"},
        {"Authorization": "AWS4-HMAC-SHA256 Credential=AKID/x"},
    ],
)
def test_converse_auth(http: httpx.Client, headers: dict[str, str]) -> None:
    r = http.post(PATH + "/converse", json=REQ, headers=headers)
    assert r.status_code == 403 and "message" in r.json()
    assert r.headers["x-amzn-ErrorType"]


def test_botocore_client_against_sim(sim_url: str, sim: SimControl) -> None:
    session = botocore.session.get_session()
    client = session.create_client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=sim_url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}),
    )
    try:
        resp = client.converse(modelId=MODEL, messages=REQ["messages"], system=REQ["system"])
        assert resp["stopReason"] == "end_turn" and resp["usage"]["outputTokens"] == 16
        stream = client.converse_stream(modelId=MODEL, messages=REQ["messages"])
        events = list(stream["stream"])
        assert "messageStart" in events[0] and "metadata" in events[-1]
        assert events[-1]["metadata"]["usage"]["outputTokens"] == 16
        sim.set_faults([{"type": "status", "status": 429, "count": 1}])
        with pytest.raises(client.exceptions.ThrottlingException):
            client.converse(modelId=MODEL, messages=REQ["messages"])
    finally:
        client.close()
    assert sim.requests()[0]["path"] == "/model/anthropic.sim-small-v1:0/converse"
