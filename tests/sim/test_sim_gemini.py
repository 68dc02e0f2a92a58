"""Gemini API and Vertex AI wire formats over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from interlock.sim import SimControl
from interlock.sim.schema import conforms

MODEL_PATH = "/v1beta/models/sim-medium"
VERTEX_PATH = "/v1/projects/my-proj/locations/us-central1/publishers/google/models/sim-medium"
REQ: dict[str, Any] = {
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "Is the line clear?"},
                {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
            ],
        },
        {"role": "model", "parts": [{"text": "Checking."}]},
        {"role": "user", "parts": [{"text": "And now?"}]},
    ],
}


def sse_data(text: str) -> list[Any]:
    return [orjson.loads(b[6:]) for b in text.strip().split("\n\n") if b.startswith("data: ")]


def test_generate_content(http: httpx.Client, gemini_headers: dict[str, str]) -> None:
    r = http.post(MODEL_PATH + ":generateContent", json=REQ, headers=gemini_headers)
    assert r.status_code == 200
    body = r.json()
    cand = body["candidates"][0]
    assert cand["content"]["role"] == "model" and cand["finishReason"] == "STOP"
    assert cand["index"] == 0 and len(cand["content"]["parts"][0]["text"].split()) == 16
    usage = body["usageMetadata"]
    assert usage["promptTokenCount"] == 3 + 5 + 2 + 3 + 4 * 3 + 3
    assert usage["candidatesTokenCount"] == 16
    assert usage["totalTokenCount"] == usage["promptTokenCount"] + 16
    assert body["modelVersion"] == "sim-medium"


def test_stream_sse_and_json_array(http: httpx.Client, gemini_headers: dict[str, str]) -> None:
    plain = http.post(MODEL_PATH + ":generateContent", json=REQ, headers=gemini_headers).json()
    text = plain["candidates"][0]["content"]["parts"][0]["text"]
    r = http.post(MODEL_PATH + ":streamGenerateContent?alt=sse", json=REQ, headers=gemini_headers)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_data(r.text)
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == text
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"] == plain["usageMetadata"]
    arr = http.post(MODEL_PATH + ":streamGenerateContent", json=REQ, headers=gemini_headers)
    responses = arr.json()
    assert isinstance(responses, list) and len(responses) == len(events)
    assert responses[-1]["usageMetadata"]["candidatesTokenCount"] == 16


def test_generation_config(http: httpx.Client, gemini_headers: dict[str, str]) -> None:
    req = {**REQ, "generationConfig": {"maxOutputTokens": 4, "candidateCount": 2}}
    body = http.post(MODEL_PATH + ":generateContent", json=req, headers=gemini_headers).json()
    assert [c["finishReason"] for c in body["candidates"]] == ["MAX_TOKENS", "MAX_TOKENS"]
    assert body["usageMetadata"]["candidatesTokenCount"] == 8
    schema = {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}, "n": {"type": "INTEGER"}},
        "required": ["city", "n"],
    }
    req = {
        **REQ,
        "generationConfig": {"responseMimeType": "application/json", "responseSchema": schema},
    }
    body = http.post(MODEL_PATH + ":generateContent", json=req, headers=gemini_headers).json()
    value = orjson.loads(body["candidates"][0]["content"]["parts"][0]["text"])
    assert isinstance(value["city"], str) and isinstance(value["n"], int)


def test_function_calling(
    http: httpx.Client,
    gemini_headers: dict[str, str],
    weather_schema: dict[str, Any],
) -> None:
    req = {
        **REQ,
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "w",
                        "parametersJsonSchema": weather_schema,
                    }
                ]
            }
        ],
    }
    body = http.post(MODEL_PATH + ":generateContent", json=req, headers=gemini_headers).json()
    call = body["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert call["name"] == "get_weather" and conforms(call["args"], weather_schema)
    events = sse_data(
        http.post(
            MODEL_PATH + ":streamGenerateContent?alt=sse", json=req, headers=gemini_headers
        ).text
    )
    streamed = events[0]["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert {**streamed, "id": call["id"]} == call and streamed["id"]
    follow = {
        **req,
        "contents": [
            *REQ["contents"],
            {"role": "model", "parts": [{"functionCall": call}]},
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"sky": "clear"}}}
                ],
            },
        ],
    }
    answer = http.post(MODEL_PATH + ":generateContent", json=follow, headers=gemini_headers).json()
    assert "text" in answer["candidates"][0]["content"]["parts"][0]


def test_embed_content(http: httpx.Client, gemini_headers: dict[str, str]) -> None:
    one = http.post(
        "/v1beta/models/sim-embed:embedContent",
        headers=gemini_headers,
        json={"content": {"parts": [{"text": "hello"}]}},
    ).json()
    assert len(one["embedding"]["values"]) == 256
    batch = http.post(
        "/v1beta/models/sim-embed:batchEmbedContents",
        headers=gemini_headers,
        json={
            "requests": [
                {"model": "models/sim-embed", "content": {"parts": [{"text": "hello"}]}},
                {
                    "model": "models/sim-embed",
                    "content": {"parts": [{"text": "b"}]},
                    "outputDimensionality": 8,
                },
            ]
        },
    ).json()
    assert batch["embeddings"][0]["values"] == one["embedding"]["values"]
    assert len(batch["embeddings"][1]["values"]) == 8


def test_gemini_auth_and_key_in_url_is_logged(http: httpx.Client, sim: SimControl) -> None:
    r = http.post(MODEL_PATH + ":generateContent?key=leaked-key", json=REQ)
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    logged = sim.requests()[-1]
    assert logged["query"]["key"] == "leaked-key"
    assert "key=leaked-key" in logged["query_string"]
    bad = http.post(
        MODEL_PATH + ":generateContent", json={"contents": []}, headers={"x-goog-api-key": "k"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_vertex(http: httpx.Client, sim: SimControl) -> None:
    assert http.post(VERTEX_PATH + ":generateContent", json=REQ).status_code == 401
    assert (
        http.post(
            VERTEX_PATH + ":generateContent", json=REQ, headers={"x-goog-api-key": "k"}
        ).status_code
        == 401
    )
    auth = {"Authorization": "Bearer ya29.token"}
    r = http.post(VERTEX_PATH + ":generateContent", json=REQ, headers=auth)
    assert r.status_code == 200 and r.json()["candidates"][0]["finishReason"] == "STOP"
    s = http.post(VERTEX_PATH + ":streamGenerateContent?alt=sse", json=REQ, headers=auth)
    assert sse_data(s.text)[-1]["usageMetadata"]["candidatesTokenCount"] == 16
    assert [e["format"] for e in sim.ledger()["entries"]] == ["vertex", "vertex"]
