"""OpenAI and Azure OpenAI wire formats over real HTTP, raw and through the openai SDK."""

from __future__ import annotations

import base64
import struct
from typing import Any

import httpx
import openai
import orjson
import pytest

from interlock.sim import SimControl
from interlock.sim.schema import conforms

CHAT = {
    "model": "sim-small",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Which route is clear?"},
    ],
}


def sse_events(text: str) -> list[Any]:
    out: list[Any] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else orjson.loads(data))
    return out


def test_chat_plain_shape_and_usage(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "sim-small"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    assert len(choice["message"]["content"].split()) == 16
    # "You are terse." = 4 tokens, "Which route is clear?" = 5 tokens; OpenAI's published
    # rule adds 3 per message plus its role ("system", "user": 1 token each) and 3 priming.
    assert body["usage"]["prompt_tokens"] == 4 + 5 + (3 + 1) * 2 + 3
    assert body["usage"]["completion_tokens"] == 16
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 16


def test_chat_deterministic_and_request_seed(http: httpx.Client) -> None:
    a = http.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
    b = http.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
    c = http.post("/v1/chat/completions", json={**CHAT, "seed": 42}).json()
    assert a == b
    assert c["choices"][0]["message"]["content"] != a


def test_seed_changes_answers(sim: SimControl, http: httpx.Client) -> None:
    a = http.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
    sim.set_config(seed=8)
    b = http.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
    sim.set_config(seed=7)
    c = http.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
    assert a != b and a == c


def test_chat_stream_matches_plain(http: httpx.Client) -> None:
    plain = http.post("/v1/chat/completions", json=CHAT).json()
    r = http.post(
        "/v1/chat/completions",
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 16
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_chat_stream_without_usage_has_no_usage(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json={**CHAT, "stream": True})
    chunks = sse_events(r.text)[:-1]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_chat_n_max_tokens_and_stop(http: httpx.Client) -> None:
    body = http.post("/v1/chat/completions", json={**CHAT, "n": 3, "max_tokens": 5}).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert all(c["finish_reason"] == "length" for c in body["choices"])
    assert all(len(c["message"]["content"].split()) == 5 for c in body["choices"])
    assert body["usage"]["completion_tokens"] == 15
    full = http.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
    stop_word = " " + full.split()[3]
    cut = http.post("/v1/chat/completions", json={**CHAT, "stop": [stop_word, "zzz"]}).json()
    content = cut["choices"][0]["message"]["content"]
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert full.startswith(content) and stop_word not in content
    capped = http.post("/v1/chat/completions", json={**CHAT, "max_completion_tokens": 2}).json()
    assert capped["usage"]["completion_tokens"] == 2


def test_chat_logprobs(http: httpx.Client) -> None:
    body = http.post(
        "/v1/chat/completions", json={**CHAT, "logprobs": True, "top_logprobs": 3}
    ).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == 16
    for item in content:
        assert item["logprob"] <= 0 and bytes(item["bytes"]).decode() == item["token"]
        assert len(item["top_logprobs"]) == 3
        assert item["top_logprobs"][0]["token"] == item["token"]


def _tool(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": schema}}


def test_chat_tools_plain_stream_and_tool_result(
    http: httpx.Client,
    weather_schema: dict[str, Any],
) -> None:
    req = {
        **CHAT,
        "tools": [
            _tool("noop", {"type": "object", "properties": {}}),
            _tool("get_weather", weather_schema),
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    body = http.post("/v1/chat/completions", json=req).json()
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert conforms(orjson.loads(call["function"]["arguments"]), weather_schema)

    chunks = sse_events(http.post("/v1/chat/completions", json={**req, "stream": True}).text)
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["function"]["name"] == "get_weather" and first["id"] == call["id"]
    args = "".join(
        c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-2]
    )
    assert args == call["function"]["arguments"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"

    default = http.post("/v1/chat/completions", json={**req, "tool_choice": "auto"}).json()
    assert default["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "noop"
    none = http.post("/v1/chat/completions", json={**req, "tool_choice": "none"}).json()
    assert none["choices"][0]["finish_reason"] == "stop"
    follow = {
        **req,
        "messages": [
            *CHAT["messages"],
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sun"},
        ],
    }
    answer = http.post("/v1/chat/completions", json=follow).json()["choices"][0]
    assert answer["finish_reason"] == "stop" and answer["message"]["content"]


def test_chat_response_formats(
    http: httpx.Client,
    weather_schema: dict[str, Any],
) -> None:
    obj = http.post(
        "/v1/chat/completions", json={**CHAT, "response_format": {"type": "json_object"}}
    ).json()
    assert isinstance(orjson.loads(obj["choices"][0]["message"]["content"]), dict)
    req = {
        **CHAT,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "weather", "strict": True, "schema": weather_schema},
        },
    }
    out = http.post("/v1/chat/completions", json=req).json()
    assert conforms(orjson.loads(out["choices"][0]["message"]["content"]), weather_schema)
    chunks = sse_events(http.post("/v1/chat/completions", json={**req, "stream": True}).text)
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert streamed == out["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, None),
        ({"model": "sim-small"}, "messages"),
        ({"model": "sim-small", "messages": []}, "messages"),
        ({"model": "sim-small", "messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
    ],
)
def test_chat_validation_errors(
    http: httpx.Client, body: dict[str, Any], param: str | None
) -> None:
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == param


def test_invalid_json_body(http: httpx.Client) -> None:
    r = http.post(
        "/v1/chat/completions", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_legacy_completions(http: httpx.Client) -> None:
    body = http.post(
        "/v1/completions", json={"model": "sim-small", "prompt": ["a b", "c"], "max_tokens": 4}
    ).json()
    assert body["object"] == "text_completion" and len(body["choices"]) == 2
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 8, "total_tokens": 11}
    assert all(c["finish_reason"] == "length" for c in body["choices"])
    r = http.post("/v1/completions", json={"model": "sim-small", "prompt": "a b", "stream": True})
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert len("".join(e["choices"][0]["text"] for e in events[:-1]).split()) == 16


def test_embeddings_float_base64_tokens_and_dims(http: httpx.Client) -> None:
    r = http.post("/v1/embeddings", json={"model": "sim-embed", "input": ["hello world", "x"]})
    body = r.json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    vec = body["data"][0]["embedding"]
    assert len(vec) == 256 and abs(sum(v * v for v in vec) - 1) < 1e-4
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    b64 = http.post(
        "/v1/embeddings",
        json={"model": "sim-embed", "input": "hello world", "encoding_format": "base64"},
    ).json()
    raw = base64.b64decode(b64["data"][0]["embedding"])
    assert list(struct.unpack("<256f", raw)) == vec
    dims = http.post(
        "/v1/embeddings", json={"model": "sim-embed", "input": [[1, 2, 3]], "dimensions": 32}
    ).json()
    assert len(dims["data"][0]["embedding"]) == 32 and dims["usage"]["prompt_tokens"] == 3


def test_models(http: httpx.Client) -> None:
    body = http.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["sim-small", "sim-medium", "sim-large", "sim-embed"]
    assert http.get("/v1/models/sim-large").json()["id"] == "sim-large"
    assert http.get("/v1/models/nope").status_code == 404


def test_azure_routes_and_auth(http: httpx.Client, sim: SimControl) -> None:
    path = "/openai/deployments/my-gpt/chat/completions"
    msgs = {"messages": CHAT["messages"]}
    assert http.post(path + "?api-version=2024-06-01", json=msgs).status_code == 401
    missing = http.post(path, json=msgs, headers={"api-key": "k"})
    # Azure answers a deployment route without api-version as an unknown resource.
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "404"
    ok = http.post(path + "?api-version=2024-06-01", json=msgs, headers={"api-key": "k"})
    assert ok.status_code == 200 and ok.json()["model"] == "my-gpt"
    emb = http.post(
        "/openai/deployments/emb/embeddings?api-version=2024-06-01",
        json={"input": "x"},
        headers={"api-key": "k"},
    )
    assert emb.status_code == 200
    entries = sim.ledger()["entries"]
    assert [(e["format"], e["model"]) for e in entries] == [("azure", "my-gpt"), ("azure", "emb")]


def test_openai_sdk_chat_stream_embeddings(
    sim_url: str,
    sim: SimControl,
    weather_schema: dict[str, Any],
) -> None:
    with openai.OpenAI(base_url=sim_url + "/v1", api_key="sk-test", max_retries=0) as client:
        resp = client.chat.completions.create(
            model="sim-medium", messages=[{"role": "user", "content": "hello"}]
        )
        assert resp.choices[0].message.content
        assert resp.usage is not None and resp.usage.completion_tokens == 16
        stream = client.chat.completions.create(
            model="sim-medium",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        parts: list[str] = []
        usage = None
        with stream:
            for chunk in stream:
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
                if chunk.usage is not None:
                    usage = chunk.usage
        assert "".join(parts) == resp.choices[0].message.content
        assert usage is not None and usage.total_tokens == resp.usage.total_tokens
        emb = client.embeddings.create(model="sim-embed", input=["a", "b"])
        assert len(emb.data) == 2 and len(emb.data[0].embedding) == 256
        tool = client.chat.completions.create(
            model="sim-small",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[_tool("get_weather", weather_schema)],
        )
        calls = tool.choices[0].message.tool_calls
        assert calls and conforms(orjson.loads(calls[0].function.arguments), weather_schema)
        parsed = client.models.list()
        assert {m.id for m in parsed} >= {"sim-small", "sim-embed"}
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="sim-small", messages=[])
