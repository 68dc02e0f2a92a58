"""Gemini / Vertex AI adapter: golden wire samples, both directions."""

from __future__ import annotations

import base64
import random
import struct
from typing import Any

import orjson
import pytest

from interlock.errors import (
    InvalidRequest,
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from interlock.providers.base import Target
from interlock.providers.capabilities import rules_for
from interlock.providers.gemini import GeminiAdapter
from interlock.providers.gemini_request import clean_schema, to_gemini
from interlock.types import Chunk, Endpoint, GatewayRequest

GEMINI = Target(
    name="g",
    provider="gemini",
    model="gemini-2.5-flash",
    base_url="https://generativelanguage.googleapis.com/",
    headers={"x-goog-api-key": "test-key"},
)
VERTEX = Target(
    name="v",
    provider="vertex",
    model="gemini-2.5-pro",
    base_url="https://europe-west4-aiplatform.googleapis.com",
    region="europe-west4",
    project="acme-prod",
)


def chat(
    body: dict[str, Any], *, stream: bool = False, include_usage: bool = False
) -> GatewayRequest:
    body = {"model": "smart", **body}
    return GatewayRequest(
        Endpoint.CHAT, "smart", body, orjson.dumps(body), stream=stream, include_usage=include_usage
    )


# ---------------------------------------------------------------------------- build


def test_urls_and_key_header() -> None:
    req = chat({"messages": [{"role": "user", "content": "hi"}]})
    call = GeminiAdapter().build(req, GEMINI)
    assert call.method == "POST"
    assert (
        call.url
        == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
    )
    assert call.headers["x-goog-api-key"] == "test-key"
    assert "key=" not in call.url
    assert not call.stream

    stream = GeminiAdapter().build(chat(req.body, stream=True), GEMINI)
    assert stream.url.endswith("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
    assert stream.stream

    vcall = GeminiAdapter(vertex=True).build(chat(req.body, stream=True), VERTEX)
    assert vcall.url == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/acme-prod/locations/"
        "europe-west4/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )
    with pytest.raises(UpstreamUnavailable):
        GeminiAdapter(vertex=True).build(req, GEMINI)  # no project/region


def test_full_translation() -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    body = {
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.webp?s=1"}},
                ],
            },
            {"role": "user", "content": "And the weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "weather",
                    "description": "Current weather",
                    "strict": True,
                    "parameters": {
                        "$schema": "http://json-schema.org/draft-07/schema#",
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "description": "City"},
                            "unit": {"type": ["string", "null"], "enum": ["c", "f"]},
                        },
                        "required": ["city"],
                        "additionalProperties": False,
                    },
                },
            },
            {
                "type": "function",
                "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
            },
        ],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "max_completion_tokens": 256,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "n": 2,
        "seed": 7,
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"a": {"type": "string"}},
                    "additionalProperties": False,
                },
            },
        },
        "logprobs": True,
        "top_logprobs": 3,
    }
    out = to_gemini(body)
    assert out["systemInstruction"] == {
        "parts": [{"text": "Be terse."}, {"text": "Use metric units."}]
    }
    contents = out["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[0]["parts"] == [
        {"text": "What is in these?"},
        {"inlineData": {"mimeType": "image/png", "data": png}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://x.test/cat.webp?s=1"}},
        {"text": "And the weather in Paris?"},
    ]
    assert contents[1]["parts"] == [
        {"functionCall": {"name": "weather", "args": {"city": "Paris"}, "id": "call_1"}}
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "weather", "response": {"temp_c": 21}, "id": "call_1"}},
        {"functionResponse": {"name": "weather", "response": {"content": "sunny"}, "id": "call_1"}},
    ]
    decls = out["tools"][0]["functionDeclarations"]
    assert decls[0] == {
        "name": "weather",
        "description": "Current weather",
        "parameters": {
            "type": "OBJECT",
            "properties": {
                "city": {"type": "STRING", "description": "City"},
                "unit": {"type": "STRING", "nullable": True, "enum": ["c", "f"]},
            },
            "required": ["city"],
        },
    }
    assert decls[1] == {"name": "now"}
    assert out["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["weather"]}
    }
    assert out["generationConfig"] == {
        "maxOutputTokens": 256,
        "temperature": 0.2,
        "topP": 0.9,
        "seed": 7,
        "stopSequences": ["END"],
        "candidateCount": 2,
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}},
        "responseLogprobs": True,
        "logprobs": 3,
    }


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
    ],
)
def test_tool_choice_modes(choice: str, config: dict[str, Any]) -> None:
    tool = {"type": "function", "function": {"name": "f"}}
    body = {"messages": [{"role": "user", "content": "x"}], "tool_choice": choice, "tools": [tool]}
    out = to_gemini(body)
    assert out["toolConfig"] == {"functionCallingConfig": config}


def test_json_object_and_refs() -> None:
    out = to_gemini(
        {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}
    )
    assert out["generationConfig"] == {"responseMimeType": "application/json"}
    schema = clean_schema(
        {
            "$defs": {
                "Item": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}},
                    "title": "Item",
                }
            },
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
                "kind": {"const": "x"},
                "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": "a"},
                "when": {"type": "string", "format": "date-time"},
                "mail": {"type": "string", "format": "email"},
            },
        }
    )
    assert schema == {
        "type": "OBJECT",
        "properties": {
            "items": {
                "type": "ARRAY",
                "items": {
                    "type": "OBJECT",
                    "properties": {"id": {"type": "INTEGER"}},
                    "title": "Item",
                },
            },
            "kind": {"enum": ["x"], "type": "STRING"},
            "maybe": {"nullable": True, "type": "STRING"},
            "when": {"type": "STRING", "format": "date-time"},
            "mail": {"type": "STRING", "description": "Format: email."},
        },
    }


def test_bad_requests() -> None:
    with pytest.raises(InvalidRequest) as e:
        to_gemini({"messages": [{"role": "tool", "tool_call_id": "nope", "content": "x"}]})
    assert e.value.param == "messages[0].tool_call_id"
    with pytest.raises(InvalidRequest):
        to_gemini({"messages": []})
    with pytest.raises(InvalidRequest) as e:
        to_gemini({"messages": [{"role": "user", "content": [{"type": "video", "x": 1}]}]})
    assert e.value.param == "messages[0].content[0]"


def test_thought_signature_round_trip() -> None:
    answer = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {"name": "f", "args": {"a": 1}},
                            "thoughtSignature": "c2lnbmF0dXJl",
                        }
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    req = chat({"messages": [{"role": "user", "content": "x"}]})
    done = orjson.loads(GeminiAdapter().parse(req, GEMINI, 200, orjson.dumps(answer)).body)
    call = done["choices"][0]["message"]["tool_calls"][0]
    assert call["id"].startswith("call_")
    nxt = to_gemini(
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": "ok"},
            ]
        }
    )
    assert nxt["contents"][1]["parts"][0] == {
        "functionCall": {"name": "f", "args": {"a": 1}, "id": call["id"].split("__thought__")[0]},
        "thoughtSignature": "c2lnbmF0dXJl",
    }
    assert nxt["contents"][2]["parts"][0]["functionResponse"]["id"] == call["id"].split("__")[0]


# ---------------------------------------------------------------------------- parse

GOLDEN_RESPONSE = b"""{
  "candidates": [
    {
      "content": {"parts": [{"text": "Thinking...", "thought": true}, {"text": "Paris is sunny, "}, {"text": "21\\u00b0C."}], "role": "model"},
      "finishReason": "STOP",
      "avgLogprobs": -0.12,
      "index": 0
    },
    {
      "content": {"parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}}], "role": "model"},
      "finishReason": "STOP",
      "index": 1
    },
    {
      "content": {"parts": [{"text": "Par"}], "role": "model"},
      "finishReason": "MAX_TOKENS",
      "index": 2
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 31,
    "candidatesTokenCount": 12,
    "totalTokenCount": 63,
    "cachedContentTokenCount": 16,
    "thoughtsTokenCount": 20,
    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 31}]
  },
  "modelVersion": "gemini-2.5-flash",
  "responseId": "mX4-aKfVBq2cz7IPq7LhqQk"
}"""


def test_parse_golden() -> None:
    req = chat({"messages": [{"role": "user", "content": "Weather?"}], "n": 3})
    done = GeminiAdapter().parse(req, GEMINI, 200, GOLDEN_RESPONSE)
    body = orjson.loads(done.body)
    assert body["object"] == "chat.completion"
    assert body["model"] == "smart"
    assert body["id"] == "chatcmpl-mX4-aKfVBq2cz7IPq7LhqQk"
    c0, c1, c2 = body["choices"]
    assert c0["message"]["content"] == "Paris is sunny, 21°C."
    assert c0["message"]["reasoning_content"] == "Thinking..."
    assert c0["finish_reason"] == "stop"
    assert c1["finish_reason"] == "tool_calls"
    assert c1["message"]["content"] is None
    (call,) = c1["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert c2["finish_reason"] == "length"
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (31, 32)
    assert (done.usage.cached_tokens, done.usage.reasoning_tokens) == (16, 20)
    assert not done.usage.estimated
    assert body["usage"] == {
        "prompt_tokens": 31,
        "completion_tokens": 32,
        "total_tokens": 63,
        "prompt_tokens_details": {"cached_tokens": 16},
        "completion_tokens_details": {"reasoning_tokens": 20},
    }


def test_parse_blocked_prompt_and_safety() -> None:
    req = chat({"messages": [{"role": "user", "content": "bad"}]})
    blocked = b'{"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}, "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}}'
    body = orjson.loads(GeminiAdapter().parse(req, GEMINI, 200, blocked).body)
    assert body["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": "The provider blocked the prompt (blockReason SAFETY).",
            },
            "finish_reason": "content_filter",
            "logprobs": None,
        }
    ]
    safety = b'{"candidates": [{"finishReason": "SAFETY", "index": 0}]}'
    done = GeminiAdapter().parse(req, GEMINI, 200, safety)
    assert orjson.loads(done.body)["choices"][0]["finish_reason"] == "content_filter"
    assert done.usage is not None and done.usage.estimated


def test_parse_logprobs() -> None:
    data = {
        "candidates": [
            {
                "content": {"parts": [{"text": "Hi"}], "role": "model"},
                "finishReason": "STOP",
                "logprobsResult": {
                    "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.1}]}],
                    "chosenCandidates": [{"token": "Hi", "logProbability": -0.1}],
                },
            }
        ]
    }
    body = orjson.loads(
        GeminiAdapter().parse(chat({"messages": []}), GEMINI, 200, orjson.dumps(data)).body
    )
    assert body["choices"][0]["logprobs"]["content"][0]["top_logprobs"] == [
        {"token": "Hi", "logprob": -0.1, "bytes": None}
    ]


def test_parse_malformed() -> None:
    with pytest.raises(UpstreamProtocolError):
        GeminiAdapter().parse(chat({"messages": []}), GEMINI, 200, b"<html>")


# ----------------------------------------------------------------------- embeddings


def test_embeddings() -> None:
    body = {"model": "emb", "input": ["hello", "world"], "dimensions": 3}
    req = GatewayRequest(Endpoint.EMBEDDINGS, "emb", body, orjson.dumps(body))
    target = Target(
        "e", "gemini", "gemini-embedding-001", "https://g.test", {"x-goog-api-key": "k"}
    )
    call = GeminiAdapter().build(req, target)
    assert call.url == "https://g.test/v1beta/models/gemini-embedding-001:batchEmbedContents"
    sent = orjson.loads(call.body)
    assert sent["requests"][1] == {
        "model": "models/gemini-embedding-001",
        "content": {"parts": [{"text": "world"}]},
        "outputDimensionality": 3,
    }
    answer = b'{"embeddings": [{"values": [0.1, 0.2, 0.3]}, {"values": [0.4, 0.5, 0.6]}]}'
    done = GeminiAdapter().parse(req, target, 200, answer)
    out = orjson.loads(done.body)
    assert out["object"] == "list" and out["model"] == "emb"
    assert out["data"][1] == {"object": "embedding", "index": 1, "embedding": [0.4, 0.5, 0.6]}
    # No usageMetadata: the tokenizer counts the inputs (cl100k: hello, world).
    assert done.usage is not None and done.usage.estimated and done.usage.prompt_tokens == 2
    assert out["usage"] == {"prompt_tokens": 2, "total_tokens": 2}

    body64 = {**body, "input": "hello", "encoding_format": "base64"}
    req64 = GatewayRequest(Endpoint.EMBEDDINGS, "emb", body64, orjson.dumps(body64))
    out64 = orjson.loads(
        GeminiAdapter().parse(req64, target, 200, b'{"embeddings": [{"values": [0.5, 1.0]}]}').body
    )
    assert struct.unpack("<2f", base64.b64decode(out64["data"][0]["embedding"])) == (0.5, 1.0)

    with pytest.raises(InvalidRequest):
        bad = {"input": [[1, 2, 3]]}
        GeminiAdapter().build(GatewayRequest(Endpoint.EMBEDDINGS, "emb", bad, b""), target)


def test_vertex_embeddings() -> None:
    body = {"input": "hello"}
    req = GatewayRequest(Endpoint.EMBEDDINGS, "emb", body, orjson.dumps(body))
    target = Target(
        "v", "vertex", "text-embedding-005", "https://r.test", region="us-central1", project="p"
    )
    call = GeminiAdapter(vertex=True).build(req, target)
    assert call.url.endswith("/publishers/google/models/text-embedding-005:predict")
    assert orjson.loads(call.body) == {"instances": [{"content": "hello"}]}
    answer = b'{"predictions": [{"embeddings": {"values": [1.0], "statistics": {"token_count": 2, "truncated": false}}}]}'
    done = GeminiAdapter(vertex=True).parse(req, target, 200, answer)
    assert done.usage is not None and done.usage.prompt_tokens == 2 and not done.usage.estimated


# ------------------------------------------------------------------------ streaming

GOLDEN_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "Hel"}],"role": "model"},"index": 0}],'
    b'"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9},"modelVersion": "gemini-2.5-flash",'
    b'"responseId": "r-1"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": "lo, w\xc3\xb6rld"}],"role": "model"},"index": 0}],'
    b'"usageMetadata": {"promptTokenCount": 9,"totalTokenCount": 9},"modelVersion": "gemini-2.5-flash",'
    b'"responseId": "r-1"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"functionCall": {"name": "weather","args": {"city": "Paris"}}}],'
    b'"role": "model"},"index": 0}],"responseId": "r-1"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": ""}],"role": "model"},"finishReason": "STOP","index": 0}],'
    b'"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 7,"totalTokenCount": 21,"thoughtsTokenCount": 5},'
    b'"modelVersion": "gemini-2.5-flash","responseId": "r-1"}\r\n\r\n'
)


def run_stream(pieces: list[bytes], req: GatewayRequest) -> tuple[list[Chunk], Any]:
    dec = GeminiAdapter().stream_decoder(req, GEMINI)
    out: list[Chunk] = []
    for p in pieces:
        out.extend(dec.feed(p))
    out.extend(dec.close())
    return out, dec


def summarize(chunks: list[Chunk]) -> dict[str, Any]:
    text = ""
    calls: list[Any] = []
    finish = []
    usage = None
    for c in chunks:
        assert c.obj["object"] == "chat.completion.chunk"
        assert c.obj["model"] == "smart"
        if c.obj.get("usage"):
            usage = c.obj["usage"]
        for ch in c.obj["choices"]:
            d = ch["delta"]
            text += d.get("content") or ""
            calls.extend(d.get("tool_calls") or ())
            if ch["finish_reason"]:
                finish.append(ch["finish_reason"])
    return {"text": text, "calls": calls, "finish": finish, "usage": usage}


def test_stream_golden() -> None:
    req = chat({"messages": [{"role": "user", "content": "x"}]}, stream=True, include_usage=True)
    chunks, dec = run_stream([GOLDEN_STREAM], req)
    assert chunks[0].obj["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[0].obj["id"] == "chatcmpl-r-1"
    s = summarize(chunks)
    assert s["text"] == "Hello, wörld"
    assert len(s["calls"]) == 1 and s["calls"][0]["index"] == 0
    assert s["calls"][0]["function"] == {"name": "weather", "arguments": '{"city":"Paris"}'}
    assert s["finish"] == ["tool_calls"]
    assert chunks[-1].obj["choices"] == []
    assert s["usage"] == {
        "prompt_tokens": 9,
        "completion_tokens": 12,
        "total_tokens": 21,
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    assert dec.completed and not dec.usage.estimated


def test_stream_split_at_every_byte() -> None:
    req = chat({"messages": [{"role": "user", "content": "x"}]}, stream=True)
    whole = summarize(run_stream([GOLDEN_STREAM], req)[0])
    assert whole["usage"] is None  # not asked for
    for i in range(1, len(GOLDEN_STREAM)):
        s = summarize(run_stream([GOLDEN_STREAM[:i], GOLDEN_STREAM[i:]], req)[0])
        assert (s["text"], s["finish"]) == (whole["text"], whole["finish"]), i
    rnd = random.Random(7)
    for _ in range(50):
        cuts = sorted(rnd.sample(range(1, len(GOLDEN_STREAM)), 12))
        pieces = [
            GOLDEN_STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(GOLDEN_STREAM)], strict=True)
        ]
        s = summarize(run_stream(pieces, req)[0])
        assert (s["text"], len(s["calls"])) == (whole["text"], 1)


def test_stream_without_trailing_blank_line() -> None:
    req = chat({"messages": [{"role": "user", "content": "x"}]}, stream=True)
    s = summarize(run_stream([GOLDEN_STREAM.rstrip(b"\r\n")], req)[0])
    assert s["finish"] == ["tool_calls"]


def test_stream_cut_keeps_usage() -> None:
    req = chat({"messages": [{"role": "user", "content": "hello there"}]}, stream=True)
    cut = GOLDEN_STREAM.split(b"\r\n\r\n")[:2]
    dec = GeminiAdapter().stream_decoder(req, GEMINI)
    chunks = dec.feed(b"\r\n\r\n".join(cut) + b"\r\n\r\n")
    assert summarize(chunks)["text"] == "Hello, wörld"
    with pytest.raises(UpstreamProtocolError):
        dec.close()
    assert dec.usage is not None and dec.usage.estimated
    # The prompt as reported; the text as tokenized (cl100k: Hello|,| w|ö|rld).
    assert dec.usage.prompt_tokens == 9 and dec.usage.completion_tokens == 5
    assert not dec.completed


def test_stream_blocked_prompt() -> None:
    req = chat({"messages": [{"role": "user", "content": "x"}]}, stream=True)
    data = b'data: {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 4}}\n\n'
    s = summarize(run_stream([data], req)[0])
    assert s["finish"] == ["content_filter"]


def test_stream_error_event() -> None:
    req = chat({"messages": [{"role": "user", "content": "x"}]}, stream=True)
    dec = GeminiAdapter().stream_decoder(req, GEMINI)
    with pytest.raises(UpstreamRateLimited):
        dec.feed(
            b'data: {"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}}\n\n'
        )


# --------------------------------------------------------------------------- errors


def test_error_mapping() -> None:
    a = GeminiAdapter()
    quota = orjson.dumps(
        {
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}
                ],
            }
        }
    )
    err = a.error(429, {}, quota)
    assert isinstance(err, UpstreamRateLimited) and err.retry_after == 17.0
    assert isinstance(
        a.error(400, {}, b'{"error": {"code": 400, "status": "RESOURCE_EXHAUSTED"}}'),
        UpstreamRateLimited,
    )
    bad = a.error(
        400,
        {},
        b'{"error": {"code": 400, "message": "Invalid JSON payload", "status": "INVALID_ARGUMENT"}}',
    )
    assert isinstance(bad, UpstreamBadRequest) and "Invalid JSON payload" in bad.message
    key = a.error(
        400,
        {},
        b'{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",'
        b' "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}',
    )
    assert isinstance(key, UpstreamUnavailable) and "credentials" in key.message
    long = a.error(
        400,
        {},
        b'{"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}',
    )
    assert long.code == "context_length_exceeded"
    assert isinstance(
        a.error(503, {}, b'{"error": {"code": 503, "status": "UNAVAILABLE"}}'), UpstreamUnavailable
    )
    assert isinstance(
        a.error(504, {}, b'{"error": {"code": 504, "status": "DEADLINE_EXCEEDED"}}'),
        UpstreamTimeout,
    )
    assert isinstance(a.error(500, {}, b"oops"), UpstreamUnavailable)
    assert isinstance(a.error(429, {"retry-after": "3"}, b""), UpstreamRateLimited)


def test_penalties_and_empty_text() -> None:
    out = to_gemini(
        {
            "messages": [{"role": "user", "content": ""}, {"role": "user", "content": "x"}],
            "presence_penalty": 0,
            "frequency_penalty": 0.5,
            "max_completion_tokens": None,
            "max_tokens": 9,
        }
    )
    assert out["generationConfig"] == {"frequencyPenalty": 0.5, "maxOutputTokens": 9}
    assert out["contents"] == [{"role": "user", "parts": [{"text": "x"}]}]


def test_reasoning_effort_and_api_version() -> None:
    flash = rules_for("gemini", "gemini-2.5-flash")
    body = {"messages": [{"role": "user", "content": "x"}], "reasoning_effort": "low"}
    out = to_gemini(body, flash)
    assert out["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 1024}}
    target = Target("g", "gemini", "gemini-2.5-flash", "https://g.test", api_version="v1")
    call = GeminiAdapter().build(chat({"messages": [{"role": "user", "content": "x"}]}), target)
    assert call.url == "https://g.test/v1/models/gemini-2.5-flash:generateContent"
