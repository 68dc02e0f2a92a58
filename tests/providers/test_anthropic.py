"""AnthropicAdapter: OpenAI chat -> Anthropic Messages and back, against golden wire samples."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from interlock.errors import (
    InvalidRequest,
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from interlock.providers.anthropic import AnthropicAdapter
from interlock.providers.base import Target
from interlock.types import Endpoint, GatewayRequest

TARGET = Target(
    name="claude-main",
    provider="anthropic",
    model="claude-sonnet-4-5-20250929",
    base_url="https://api.anthropic.com/",
    headers={"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"},
)
ADAPTER = AnthropicAdapter()


def request(body: dict[str, Any], *, include_usage: bool = False) -> GatewayRequest:
    body = {"model": "smart", **body}
    return GatewayRequest(
        endpoint=Endpoint.CHAT,
        model=body["model"],
        body=body,
        raw=orjson.dumps(body),
        stream=bool(body.get("stream")),
        include_usage=include_usage,
    )


def wire(body: dict[str, Any], target: Target = TARGET) -> dict[str, Any]:
    call = ADAPTER.build(request(body), target)
    data: dict[str, Any] = orjson.loads(call.body)
    return data


# --- build ---------------------------------------------------------------------------------


def test_build_call_shape() -> None:
    call = ADAPTER.build(request({"messages": [{"role": "user", "content": "Hi"}]}), TARGET)
    assert call.method == "POST"
    assert call.url == "https://api.anthropic.com/v1/messages"
    assert call.headers == {
        "content-type": "application/json",
        "x-api-key": "sk-ant-test",
        "anthropic-version": "2023-06-01",
    }
    assert call.stream is False
    assert orjson.loads(call.body) == {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Hi"}],
    }


def test_build_stream_sets_stream_flag() -> None:
    req = request({"messages": [{"role": "user", "content": "Hi"}], "stream": True})
    call = ADAPTER.build(req, TARGET)
    assert call.stream is True
    assert orjson.loads(call.body)["stream"] is True
    assert call.headers["accept"] == "text/event-stream"


def test_supports_chat_only() -> None:
    assert ADAPTER.supports(Endpoint.CHAT)
    assert not ADAPTER.supports(Endpoint.EMBEDDINGS)
    assert not ADAPTER.supports(Endpoint.COMPLETIONS)
    assert ADAPTER.wire == "anthropic"


def test_build_system_developer_and_merging() -> None:
    body = wire(
        {
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hello"},
                {"role": "user", "content": [{"type": "text", "text": "Are you there?"}]},
                {"role": "assistant", "content": "Oui."},
                {"role": "assistant", "content": "Bonjour."},
                {"role": "user", "content": "Thanks"},
            ],
            "max_completion_tokens": 256,
            "stop": "\n\nHuman:",
            "temperature": 1.6,
            "top_p": 0.9,
            "user": "user-42",
            "presence_penalty": 0.5,
            "seed": 7,
        }
    )
    assert body == {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 256,
        "system": "You are terse.\n\nAnswer in French.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hello"},
                    {"type": "text", "text": "Are you there?"},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "Oui."}, {"type": "text", "text": "Bonjour."}],
            },
            {"role": "user", "content": "Thanks"},
        ],
        "stop_sequences": ["\n\nHuman:"],
        "temperature": 1.0,
        # Claude Sonnet 4.5 refuses temperature with top_p: top_p dropped (warning).
        "metadata": {"user_id": "user-42"},
    }


def test_build_temperature_clamped_and_stop_list() -> None:
    body = wire(
        {
            "messages": [{"role": "user", "content": "x"}],
            "temperature": 0.3,
            "stop": ["END", "STOP"],
            "max_tokens": 10,
        }
    )
    assert body["temperature"] == 0.3
    assert body["stop_sequences"] == ["END", "STOP"]
    assert body["max_tokens"] == 10


def test_build_images() -> None:
    body = wire(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in these?"},
                        {
                            "type": "image_url",
                            "image_url": {
                                "url": "data:image/png;base64,iVBORw0KGgo=",
                                "detail": "low",
                            },
                        },
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    ],
                }
            ]
        }
    )
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_build_pdf_file_part_becomes_document() -> None:
    body = wire(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {
                                "filename": "a.pdf",
                                "file_data": "data:application/pdf;base64,JVBERi0=",
                            },
                        }
                    ],
                }
            ]
        }
    )
    assert body["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        }
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,raw"}},
            "messages[0].content[0].image_url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "ftp://x/y.png"}},
            "messages[0].content[0].image_url",
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
            "messages[0].content[0].type",
        ),
        ({"type": "file", "file": {"file_id": "file-1"}}, "messages[0].content[0].file"),
    ],
)
def test_build_rejects_unsupported_parts(part: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        wire({"messages": [{"role": "user", "content": [part]}]})
    assert info.value.param == param
    assert info.value.status == 400


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def test_build_tool_round_trip_history() -> None:
    body = wire(
        {
            "messages": [
                {"role": "user", "content": "Weather in Paris and Rome?"},
                {
                    "role": "assistant",
                    "content": "Checking both.",
                    "tool_calls": [
                        {
                            "id": "toolu_01A",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        },
                        {
                            "id": "toolu_01B",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C, cloudy"},
                {
                    "role": "tool",
                    "tool_call_id": "toolu_01B",
                    "content": [{"type": "text", "text": "24C, sunny"}],
                },
                {"role": "user", "content": "Which is warmer?"},
            ],
            "tools": [WEATHER_TOOL, {"type": "function", "function": {"name": "noop"}}],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        }
    )
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
        },
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_01B",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C, cloudy"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B",
                    "content": [{"type": "text", "text": "24C, sunny"}],
                },
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", None),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_build_tool_choice(choice: Any, expected: dict[str, Any] | None) -> None:
    body = wire(
        {
            "messages": [{"role": "user", "content": "x"}],
            "tools": [WEATHER_TOOL],
            "tool_choice": choice,
        }
    )
    assert body.get("tool_choice") == expected


def test_build_parallel_false_with_auto_choice() -> None:
    body = wire(
        {
            "messages": [{"role": "user", "content": "x"}],
            "tools": [WEATHER_TOOL],
            "parallel_tool_calls": False,
        }
    )
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_build_tool_choice_without_tools_is_dropped() -> None:
    body = wire({"messages": [{"role": "user", "content": "x"}], "tool_choice": "none"})
    assert "tool_choice" not in body and "tools" not in body


def test_build_invalid_tool_arguments() -> None:
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{oops"},
                }
            ],
        },
    ]
    with pytest.raises(InvalidRequest) as info:
        wire({"messages": messages})
    assert info.value.param == "messages[1].tool_calls[0].function.arguments"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"max_tokens": -1}, "max_tokens"),  # 0 is Anthropic's cache warming
        ({"max_completion_tokens": "9"}, "max_completion_tokens"),
        ({"tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "function"}}, "tool_choice"),
    ],
)
def test_build_rejects(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        wire({"messages": [{"role": "user", "content": "x"}], **extra})
    assert info.value.param == param


def test_build_n_message_names_provider() -> None:
    with pytest.raises(InvalidRequest, match="n > 1 is not supported by provider anthropic"):
        wire({"messages": [{"role": "user", "content": "x"}], "n": 3})


def test_build_needs_a_conversation_turn() -> None:
    with pytest.raises(InvalidRequest) as info:
        wire({"messages": [{"role": "system", "content": "only system"}]})
    assert info.value.param == "messages"


def test_build_response_format_is_a_system_instruction() -> None:
    # A family without native structured output (Claude 3.5): the prompt instruction.
    old = replace(TARGET, model="claude-3-5-haiku-latest")
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = wire(
        {
            "messages": [
                {"role": "system", "content": "Be exact."},
                {"role": "user", "content": "x"},
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": schema},
            },
        },
        old,
    )
    assert body["system"].startswith("Be exact.\n\nRespond with a single valid JSON object only")
    assert orjson.dumps(schema).decode() in body["system"]
    plain = wire(
        {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}
    )
    assert "JSON object" in plain["system"]
    text = wire(
        {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "text"}}
    )
    assert "system" not in text


def test_build_keeps_cache_control_as_system_blocks() -> None:
    body = wire(
        {
            "messages": [
                {
                    "role": "system",
                    "content": [
                        {
                            "type": "text",
                            "text": "Long manual...",
                            "cache_control": {"type": "ephemeral"},
                        }
                    ],
                },
                {"role": "user", "content": "x"},
            ]
        }
    )
    assert body["system"] == [
        {"type": "text", "text": "Long manual...", "cache_control": {"type": "ephemeral"}}
    ]


# --- parse ---------------------------------------------------------------------------------

GOLDEN_MESSAGE = b"""{
  "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [
    {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCgIYAhIM"},
    {"type": "text", "text": "I'll look that up."},
    {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather",
     "input": {"city": "Paris", "unit": "celsius"}}
  ],
  "stop_reason": "tool_use",
  "stop_sequence": null,
  "usage": {
    "input_tokens": 472,
    "cache_creation_input_tokens": 100,
    "cache_read_input_tokens": 2048,
    "output_tokens": 89,
    "service_tier": "standard"
  }
}"""


def test_parse_golden_message() -> None:
    completion = ADAPTER.parse(request({"messages": []}), TARGET, 200, GOLDEN_MESSAGE)
    data = orjson.loads(completion.body)
    ChatCompletion.model_validate(data)
    assert data["id"] == "chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL"
    assert data["object"] == "chat.completion"
    assert isinstance(data["created"], int)
    assert data["model"] == "smart"
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "I'll look that up."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"celsius"}'},
        }
    ]
    assert data["usage"] == {
        "prompt_tokens": 472 + 100 + 2048,
        "completion_tokens": 89,
        "total_tokens": 472 + 100 + 2048 + 89,
        "prompt_tokens_details": {"cached_tokens": 2048},
    }
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2620
    assert completion.usage.cached_tokens == 2048
    assert completion.usage.completion_tokens == 89
    assert not completion.usage.estimated


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "stop"),
    ],
)
def test_parse_stop_reasons(stop_reason: str, finish: str) -> None:
    body = orjson.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 0},
        }
    )
    data = orjson.loads(ADAPTER.parse(request({"messages": []}), TARGET, 200, body).body)
    assert data["choices"][0]["finish_reason"] == finish
    assert data["choices"][0]["message"]["content"] is None
    assert "tool_calls" not in data["choices"][0]["message"]


def test_parse_error_body_and_malformed() -> None:
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    with pytest.raises(UpstreamUnavailable, match="Overloaded"):
        ADAPTER.parse(request({"messages": []}), TARGET, 200, body)
    with pytest.raises(UpstreamProtocolError):
        ADAPTER.parse(request({"messages": []}), TARGET, 200, b"<html>")


# --- stream --------------------------------------------------------------------------------

GOLDEN_TEXT_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_01Stream","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":10,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there!"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"""

GOLDEN_TOOL_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_01Tools","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Need the tool."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, checking."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Pa"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"ris\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""


def decode(
    stream: bytes, *, include_usage: bool = False, step: int | None = None
) -> tuple[list[dict[str, Any]], Any]:
    req = request(
        {"messages": [{"role": "user", "content": "hi"}], "stream": True},
        include_usage=include_usage,
    )
    decoder = ADAPTER.stream_decoder(req, TARGET)
    chunks = []
    if step is None:
        chunks.extend(decoder.feed(stream))
    else:
        for i in range(0, len(stream), step):
            chunks.extend(decoder.feed(stream[i : i + step]))
    chunks.extend(decoder.close())
    for c in chunks:
        assert c.raw is None
        ChatCompletionChunk.model_validate(c.obj)
    return [c.obj for c in chunks], decoder


@pytest.mark.parametrize("step", [None, 1, 7, 64])
def test_stream_text(step: int | None) -> None:
    chunks, decoder = decode(GOLDEN_TEXT_STREAM, step=step)
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hello"},
        {"content": " there!"},
        {},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]
    assert {c["id"] for c in chunks} == {"chatcmpl-msg_01Stream"}
    assert {c["model"] for c in chunks} == {"smart"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert decoder.completed
    usage = decoder.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (35, 15, 10)
    assert not usage.estimated


def test_stream_include_usage_appends_usage_chunk() -> None:
    chunks, _ = decode(GOLDEN_TEXT_STREAM, include_usage=True)
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"] == {
        "prompt_tokens": 35,
        "completion_tokens": 15,
        "total_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 10},
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


def test_stream_tools() -> None:
    chunks, decoder = decode(GOLDEN_TOOL_STREAM, step=13)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas == [
        {"role": "assistant", "content": ""},
        # thinking: the canonical extension, not content (what /v1/messages turns back)
        {"reasoning_content": "Need the tool."},
        {"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "EqQBCgIYAhIM"}]},
        {"content": "Okay, checking."},
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]},
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "toolu_02",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert decoder.usage.completion_tokens == 89


def test_stream_cut_raises_but_keeps_usage() -> None:
    cut = GOLDEN_TEXT_STREAM[: GOLDEN_TEXT_STREAM.index(b"event: content_block_stop")]
    req = request({"messages": [{"role": "user", "content": "hi"}], "stream": True})
    decoder = ADAPTER.stream_decoder(req, TARGET)
    chunks = decoder.feed(cut + b'event: content_block_delta\ndata: {"type":"content_bl')
    assert len(chunks) == 3
    with pytest.raises(UpstreamProtocolError, match="message_stop"):
        decoder.close()
    assert not decoder.completed
    usage = decoder.usage
    assert usage.prompt_tokens == 35  # reported by message_start
    assert usage.completion_tokens == (len("Hello there!") + 3) // 4
    assert usage.estimated


def test_stream_cut_before_message_start_estimates_prompt() -> None:
    req = request(
        {"messages": [{"role": "user", "content": "hello world, how are you"}], "stream": True}
    )
    decoder = ADAPTER.stream_decoder(req, TARGET)
    assert decoder.feed(b"") == []
    with pytest.raises(UpstreamProtocolError):
        decoder.close()
    assert decoder.usage.prompt_tokens > 0
    assert decoder.usage.estimated


def test_stream_final_event_without_blank_line() -> None:
    chunks, decoder = decode(GOLDEN_TEXT_STREAM.rstrip(b"\n"))
    assert decoder.completed
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("kind", "exc"),
    [
        ("overloaded_error", UpstreamUnavailable),
        ("api_error", UpstreamUnavailable),
        ("rate_limit_error", UpstreamRateLimited),
        ("invalid_request_error", UpstreamBadRequest),
    ],
)
def test_stream_error_event(kind: str, exc: type[Exception]) -> None:
    head = GOLDEN_TEXT_STREAM[: GOLDEN_TEXT_STREAM.index(b"event: content_block_stop")]
    error = (
        b"event: error\ndata: "
        + orjson.dumps({"type": "error", "error": {"type": kind, "message": "Overloaded"}})
        + b"\n\n"
    )
    req = request({"messages": [{"role": "user", "content": "hi"}], "stream": True})
    decoder = ADAPTER.stream_decoder(req, TARGET)
    with pytest.raises(exc, match="Overloaded"):
        decoder.feed(head + error)


def test_stream_malformed_event() -> None:
    decoder = ADAPTER.stream_decoder(request({"messages": []}), TARGET)
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(b"event: message_start\ndata: {nope\n\n")


# --- errors --------------------------------------------------------------------------------


def anthropic_error(kind: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})


def test_error_overloaded_529() -> None:
    err = ADAPTER.error(
        529, {"retry-after": "7"}, anthropic_error("overloaded_error", "Overloaded")
    )
    assert isinstance(err, UpstreamUnavailable)
    assert err.retryable
    assert err.retry_after == 7.0
    assert err.upstream_status == 529
    assert "Overloaded" in err.message


def test_error_rate_limited() -> None:
    err = ADAPTER.error(
        429,
        {"retry-after": "12"},
        anthropic_error(
            "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"
        ),
    )
    assert isinstance(err, UpstreamRateLimited)
    assert err.retry_after == 12.0
    assert "per-minute rate limit" in err.message


def test_error_request_too_large() -> None:
    err = ADAPTER.error(
        413, {}, anthropic_error("request_too_large", "Request exceeds the maximum size")
    )
    assert isinstance(err, UpstreamBadRequest)
    assert not err.retryable


def test_error_bad_request_and_context_length() -> None:
    err = ADAPTER.error(
        400,
        {},
        anthropic_error(
            "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"
        ),
    )
    assert isinstance(err, UpstreamBadRequest)
    assert err.code == "context_length_exceeded"
    plain = ADAPTER.error(
        400, {}, anthropic_error("invalid_request_error", "max_tokens: Field required")
    )
    assert isinstance(plain, UpstreamBadRequest)
    assert plain.code == "upstream_bad_request"
    assert "max_tokens: Field required" in plain.message


def test_error_credentials_and_credit_are_not_client_errors() -> None:
    auth = ADAPTER.error(401, {}, anthropic_error("authentication_error", "invalid x-api-key"))
    assert isinstance(auth, UpstreamUnavailable)
    assert "x-api-key" not in auth.message or "invalid" not in auth.message
    credit = ADAPTER.error(
        400,
        {},
        anthropic_error(
            "invalid_request_error", "Your credit balance is too low to access the API."
        ),
    )
    assert isinstance(credit, UpstreamUnavailable)


def test_error_5xx_keeps_retry_after() -> None:
    err = ADAPTER.error(
        500, {"retry-after": "3"}, anthropic_error("api_error", "Internal server error")
    )
    assert isinstance(err, UpstreamUnavailable)
    assert err.retry_after == 3.0
    garbage = ADAPTER.error(502, {}, b"<html>bad gateway</html>")
    assert isinstance(garbage, UpstreamUnavailable)
    assert "html" not in garbage.message
