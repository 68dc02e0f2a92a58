"""Bedrock Converse adapter: golden wire samples, event-stream decoding."""

from __future__ import annotations

import base64
import binascii
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
from interlock.providers.bedrock import BedrockAdapter, to_converse
from interlock.types import Chunk, Endpoint, GatewayRequest

TARGET = Target(
    name="b",
    provider="bedrock",
    model="anthropic.claude-3-5-sonnet-20240620-v1:0",
    base_url="https://bedrock-runtime.us-east-1.amazonaws.com",
    region="us-east-1",
)


def chat(
    body: dict[str, Any], *, stream: bool = False, include_usage: bool = False
) -> GatewayRequest:
    body = {"model": "smart", **body}
    return GatewayRequest(
        Endpoint.CHAT, "smart", body, orjson.dumps(body), stream=stream, include_usage=include_usage
    )


def event_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message, encoded by hand (independent of botocore)."""
    hdr = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        hdr += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(hdr) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hdr))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + hdr + payload
    return body + struct.pack(">I", binascii.crc32(body) & 0xFFFFFFFF)


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return event_message(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
        orjson.dumps(payload),
    )


def exception(kind: str, message: str) -> bytes:
    return event_message(
        {
            ":exception-type": kind,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        orjson.dumps({"message": message}),
    )


GOLDEN_STREAM = b"".join(
    [
        event("messageStart", {"p": "abcdefgh", "role": "assistant"}),
        event(
            "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Let me "}, "p": "ab"}
        ),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "check, wörld."}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event(
            "contentBlockStart",
            {
                "contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "tooluse_abc", "name": "weather"}},
            },
        ),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"city": '}}},
        ),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '"Paris"}'}}},
        ),
        event("contentBlockStop", {"contentBlockIndex": 1}),
        event("messageStop", {"stopReason": "tool_use"}),
        event(
            "metadata",
            {
                "usage": {
                    "inputTokens": 40,
                    "outputTokens": 25,
                    "totalTokens": 75,
                    "cacheReadInputTokens": 10,
                },
                "metrics": {"latencyMs": 812},
            },
        ),
    ]
)


# ---------------------------------------------------------------------------- build


def test_build_urls() -> None:
    req = chat({"messages": [{"role": "user", "content": "hi"}]})
    call = BedrockAdapter().build(req, TARGET)
    assert call.url == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
        "anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    )
    assert call.headers["content-type"] == "application/json"
    s = BedrockAdapter().build(chat(req.body, stream=True), TARGET)
    assert s.url.endswith("%3A0/converse-stream") and s.stream
    assert s.headers["accept"] == "application/vnd.amazon.eventstream"
    arn = Target(
        "b", "bedrock", "arn:aws:bedrock:us-east-1:1:inference-profile/us.x", "https://b.test"
    )
    assert BedrockAdapter().build(req, arn).url == (
        "https://b.test/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x/converse"
    )


def test_full_translation() -> None:
    jpg = base64.b64encode(b"\xff\xd8 fake").decode()
    body = {
        "messages": [
            {"role": "system", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpg}"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "tu_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": "x"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "tu_1", "content": '{"answer": 42}'},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Look up",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": "required",
        "max_tokens": 100,
        "temperature": 0.5,
        "top_p": 0.8,
        "stop": ["END"],
    }
    assert to_converse(body) == {
        "system": [{"text": "Be terse."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "What is this?"},
                    {"image": {"format": "jpeg", "source": {"bytes": jpg}}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"text": "Checking."},
                    {"toolUse": {"toolUseId": "tu_1", "name": "lookup", "input": {"q": "x"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "tu_1", "content": [{"json": {"answer": 42}}]}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "inferenceConfig": {
            "maxTokens": 100,
            "temperature": 0.5,
            "topP": 0.8,
            "stopSequences": ["END"],
        },
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "lookup",
                        "inputSchema": {
                            "json": {"type": "object", "properties": {"q": {"type": "string"}}}
                        },
                        "description": "Look up",
                    }
                }
            ],
            "toolChoice": {"any": {}},
        },
    }


def test_tool_choices_and_refusals() -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    base = {"messages": [{"role": "user", "content": "x"}], "tools": tools}
    assert to_converse({**base, "tool_choice": "auto"})["toolConfig"]["toolChoice"] == {"auto": {}}
    forced = to_converse({**base, "tool_choice": {"type": "function", "function": {"name": "f"}}})
    assert forced["toolConfig"]["toolChoice"] == {"tool": {"name": "f"}}
    assert "toolConfig" not in to_converse({**base, "tool_choice": "none"})
    with pytest.raises(InvalidRequest) as e:
        to_converse({**base, "n": 2})
    assert e.value.param == "n"
    with pytest.raises(InvalidRequest) as e:
        to_converse(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ]
            }
        )
    assert e.value.param == "messages[0].content[0].image_url"


# ---------------------------------------------------------------------------- parse

GOLDEN_RESPONSE = b"""{
  "metrics": {"latencyMs": 1024},
  "output": {"message": {"role": "assistant", "content": [
    {"reasoningContent": {"reasoningText": {"text": "User wants weather.", "signature": "sig"}}},
    {"text": "Let me check."},
    {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "weather", "input": {"city": "Paris"}}}
  ]}},
  "stopReason": "tool_use",
  "usage": {"inputTokens": 410, "outputTokens": 64, "totalTokens": 1498, "cacheReadInputTokens": 1000, "cacheWriteInputTokens": 24}
}"""


def test_parse_golden() -> None:
    req = chat({"messages": [{"role": "user", "content": "Weather?"}]})
    done = BedrockAdapter().parse(req, TARGET, 200, GOLDEN_RESPONSE)
    body = orjson.loads(done.body)
    assert body["model"] == "smart" and body["object"] == "chat.completion"
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    msg = choice["message"]
    assert msg["content"] == "Let me check."
    assert msg["reasoning_content"] == "User wants weather."
    assert msg["tool_calls"] == [
        {
            "id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
        }
    ]
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.cached_tokens) == (
        1434,
        64,
        1000,
    )
    assert body["usage"]["total_tokens"] == 1498


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
def test_stop_reasons(reason: str, finish: str) -> None:
    data = {
        "output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
        "stopReason": reason,
        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
    }
    body = orjson.loads(
        BedrockAdapter().parse(chat({"messages": []}), TARGET, 200, orjson.dumps(data)).body
    )
    assert body["choices"][0]["finish_reason"] == finish


def test_parse_malformed() -> None:
    with pytest.raises(UpstreamProtocolError):
        BedrockAdapter().parse(chat({"messages": []}), TARGET, 200, b'{"output": {}}')


# ------------------------------------------------------------------------ streaming


def run_stream(pieces: list[bytes], req: GatewayRequest) -> tuple[list[Chunk], Any]:
    dec = BedrockAdapter().stream_decoder(req, TARGET)
    out: list[Chunk] = []
    for p in pieces:
        out.extend(dec.feed(p))
    out.extend(dec.close())
    return out, dec


def summarize(chunks: list[Chunk]) -> dict[str, Any]:
    text = ""
    args: dict[int, str] = {}
    names: dict[int, str] = {}
    finish = []
    usage = None
    for c in chunks:
        assert c.obj["object"] == "chat.completion.chunk" and c.obj["model"] == "smart"
        if c.obj.get("usage"):
            usage = c.obj["usage"]
        for ch in c.obj["choices"]:
            d = ch["delta"]
            text += d.get("content") or ""
            for tc in d.get("tool_calls") or ():
                if "id" in tc:
                    names[tc["index"]] = tc["function"]["name"]
                args[tc["index"]] = args.get(tc["index"], "") + tc["function"]["arguments"]
            if ch["finish_reason"]:
                finish.append(ch["finish_reason"])
    return {"text": text, "args": args, "names": names, "finish": finish, "usage": usage}


def test_stream_golden() -> None:
    req = chat({"messages": [{"role": "user", "content": "x"}]}, stream=True, include_usage=True)
    chunks, dec = run_stream([GOLDEN_STREAM], req)
    assert chunks[0].obj["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    s = summarize(chunks)
    assert s["text"] == "Let me check, wörld."
    assert s["names"] == {0: "weather"}
    assert orjson.loads(s["args"][0]) == {"city": "Paris"}
    assert s["finish"] == ["tool_calls"]
    assert chunks[-1].obj["choices"] == []
    assert s["usage"] == {
        "prompt_tokens": 50,
        "completion_tokens": 25,
        "total_tokens": 75,
        "prompt_tokens_details": {"cached_tokens": 10},
    }
    assert dec.completed and dec.usage.prompt_tokens == 50


def test_stream_split_at_every_byte() -> None:
    req = chat({"messages": [{"role": "user", "content": "x"}]}, stream=True, include_usage=True)
    whole = summarize(run_stream([GOLDEN_STREAM], req)[0])
    for i in range(1, len(GOLDEN_STREAM)):
        s = summarize(run_stream([GOLDEN_STREAM[:i], GOLDEN_STREAM[i:]], req)[0])
        assert s == whole, i
    rnd = random.Random(3)
    for _ in range(30):
        cuts = sorted(rnd.sample(range(1, len(GOLDEN_STREAM)), 25))
        pieces = [
            GOLDEN_STREAM[a:b] for a, b in zip([0, *cuts], [*cuts, len(GOLDEN_STREAM)], strict=True)
        ]
        assert summarize(run_stream(pieces, req)[0]) == whole
    # One byte at a time.
    assert summarize(run_stream([bytes([b]) for b in GOLDEN_STREAM], req)[0]) == whole


def test_stream_stop_without_metadata_is_complete() -> None:
    req = chat(
        {"messages": [{"role": "user", "content": "hello"}]}, stream=True, include_usage=True
    )
    data = (
        event("messageStart", {"role": "assistant"})
        + event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "12345678"}})
        + event("messageStop", {"stopReason": "end_turn"})
    )
    chunks, dec = run_stream([data], req)
    s = summarize(chunks)
    assert s["finish"] == ["stop"]
    assert dec.usage.estimated and dec.usage.completion_tokens == 3  # cl100k: 123|456|78
    assert s["usage"]["completion_tokens"] == 3


def test_stream_cut() -> None:
    req = chat({"messages": [{"role": "user", "content": "x"}]}, stream=True)
    dec = BedrockAdapter().stream_decoder(req, TARGET)
    cut = GOLDEN_STREAM.index(event("messageStop", {"stopReason": "tool_use"}))
    dec.feed(GOLDEN_STREAM[: cut + 7])  # a partial message too
    with pytest.raises(UpstreamProtocolError):
        dec.close()
    assert dec.usage is not None and dec.usage.estimated and dec.usage.completion_tokens > 0
    assert not dec.completed


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("throttlingException", UpstreamRateLimited),
        ("serviceUnavailableException", UpstreamUnavailable),
        ("modelStreamErrorException", UpstreamUnavailable),
        ("internalServerException", UpstreamUnavailable),
        ("validationException", UpstreamBadRequest),
    ],
)
def test_stream_exceptions(kind: str, error: type[Exception]) -> None:
    req = chat({"messages": [{"role": "user", "content": "x"}]}, stream=True)
    dec = BedrockAdapter().stream_decoder(req, TARGET)
    dec.feed(event("messageStart", {"role": "assistant"}))
    with pytest.raises(error) as e:
        dec.feed(exception(kind, "Too many tokens, please wait."))
    assert "Too many tokens" in str(e.value) or error is UpstreamUnavailable


def test_stream_corrupt_bytes() -> None:
    req = chat({"messages": [{"role": "user", "content": "x"}]}, stream=True)
    dec = BedrockAdapter().stream_decoder(req, TARGET)
    msg = bytearray(event("messageStart", {"role": "assistant"}))
    msg[-1] ^= 0xFF
    with pytest.raises(UpstreamProtocolError):
        dec.feed(bytes(msg))


# --------------------------------------------------------------------------- errors


def test_error_mapping() -> None:
    a = BedrockAdapter()
    msg = b'{"message": "Too many requests, please wait before trying again."}'
    err = a.error(
        429,
        {
            "x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        },
        msg,
    )
    assert isinstance(err, UpstreamRateLimited) and "Too many requests" in err.message
    bad = a.error(
        400,
        {"x-amzn-ErrorType": "ValidationException"},
        b'{"message": "Input is too long for requested model."}',
    )
    assert isinstance(bad, UpstreamBadRequest) and bad.code == "context_length_exceeded"
    plain_bad = a.error(
        400, {"x-amzn-ErrorType": "ValidationException"}, b'{"message": "bad temperature"}'
    )
    assert plain_bad.code == "upstream_bad_request"
    for kind in ("ServiceUnavailableException", "ModelNotReadyException"):
        assert isinstance(
            a.error(503, {"x-amzn-ErrorType": kind}, b'{"message": "x"}'), UpstreamUnavailable
        )
    denied = a.error(
        403,
        {"x-amzn-ErrorType": "AccessDeniedException"},
        b'{"message": "User arn:aws:iam::1:user/x is not authorized"}',
    )
    assert isinstance(denied, UpstreamUnavailable) and "credentials" in denied.message
    assert "arn:aws" not in denied.message
    assert isinstance(
        a.error(408, {"x-amzn-ErrorType": "ModelTimeoutException"}, b"{}"), UpstreamTimeout
    )
    assert isinstance(
        a.error(429, {}, b'{"__type": "ThrottlingException", "message": "x"}'), UpstreamRateLimited
    )
    assert isinstance(a.error(500, {}, b"<html>"), UpstreamUnavailable)
