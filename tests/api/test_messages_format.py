"""Inbound Anthropic Messages API: pure translations, checked against golden samples and
against the real ``anthropic`` SDK reading the encoded stream over HTTP."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import orjson
import pytest
from aiohttp import web
from anthropic.types import Message

from interlock.api.messages_format import (
    AnthropicStreamEncoder,
    anthropic_error_body,
    messages_to_openai,
    openai_to_message,
)
from interlock.errors import InvalidRequest
from interlock.providers.anthropic import AnthropicAdapter
from interlock.providers.base import Target
from interlock.providers.sse import SSEParser
from interlock.types import Endpoint, GatewayRequest, Usage

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "City name"}},
    "required": ["city"],
}

# What the anthropic SDK sends for client.messages.create(...) with tools, an image and a
# tool result in the history.
SDK_REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": "You are a weather assistant.",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What's the weather where this photo was taken?"},
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": "image/jpeg",
                        "data": "/9j/4AAQSkZJRg==",
                    },
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "That's the Eiffel Tower, so Paris. Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_01A09q90qw90lq917835lq9",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                    "content": "18C, light rain",
                },
                {"type": "text", "text": "Should I take an umbrella?"},
            ],
        },
    ],
    "tools": [
        {
            "name": "get_weather",
            "description": "Get the current weather",
            "input_schema": WEATHER_SCHEMA,
        }
    ],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
    "stop_sequences": ["\n\nDone."],
    "temperature": 0.4,
    "top_p": 0.95,
    "metadata": {"user_id": "user-123"},
}


def test_messages_to_openai_golden() -> None:
    body = messages_to_openai(copy.deepcopy(SDK_REQUEST))
    assert body == {
        "model": "claude-sonnet-4-5",
        "max_completion_tokens": 1024,
        "messages": [
            {"role": "system", "content": "You are a weather assistant."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What's the weather where this photo was taken?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQSkZJRg=="},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": "That's the Eiffel Tower, so Paris. Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_01A09q90qw90lq917835lq9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "toolu_01A09q90qw90lq917835lq9",
                "content": "18C, light rain",
            },
            {"role": "user", "content": "Should I take an umbrella?"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Get the current weather",
                    "parameters": WEATHER_SCHEMA,
                },
            }
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "stop": ["\n\nDone."],
        "temperature": 0.4,
        "top_p": 0.95,
        "user": "user-123",
    }


def _normalise(body: dict[str, Any]) -> dict[str, Any]:
    """Anthropic accepts a string or a one-text-block list interchangeably."""
    out = copy.deepcopy(body)
    for msg in out["messages"]:
        if isinstance(msg["content"], str):
            msg["content"] = [{"type": "text", "text": msg["content"]}]
    out.pop("stream", None)
    return out


@pytest.mark.parametrize("stream", [False, True])
def test_round_trip_through_adapter(stream: bool) -> None:
    sent = {**copy.deepcopy(SDK_REQUEST), "stream": stream}
    openai_body = messages_to_openai(sent)
    req = GatewayRequest(
        endpoint=Endpoint.CHAT,
        model=openai_body["model"],
        body=openai_body,
        raw=orjson.dumps(openai_body),
        stream=stream,
        include_usage=stream,
    )
    target = Target(
        name="d",
        provider="anthropic",
        model="claude-sonnet-4-5",
        base_url="https://api.anthropic.com",
    )
    call = AnthropicAdapter().build(req, target)
    back = orjson.loads(call.body)
    assert back.get("stream", False) is stream
    # Current Claude models refuse temperature with top_p: the adapter keeps temperature.
    expected = _normalise(sent)
    expected.pop("top_p")
    assert _normalise(back) == expected


def test_round_trip_merges_consecutive_same_role_turns() -> None:
    sent = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": [{"type": "text", "text": "two"}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}],
            },
        ],
    }
    body = messages_to_openai(sent)
    assert body["messages"][2] == {
        "role": "user",
        "content": [{"type": "text", "text": "three"}, {"type": "text", "text": "four"}],
    }
    req = GatewayRequest(Endpoint.CHAT, "m", body, orjson.dumps(body))
    back = orjson.loads(
        AnthropicAdapter().build(req, Target("d", "anthropic", "m", "http://x")).body
    )
    assert _normalise(back) == _normalise(sent)


def test_system_blocks_and_cache_control() -> None:
    joined = messages_to_openai(
        {
            "model": "m",
            "max_tokens": 5,
            "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    assert joined["messages"][0] == {"role": "system", "content": "A\n\nB"}
    cached = messages_to_openai(
        {
            "model": "m",
            "max_tokens": 5,
            "system": [{"type": "text", "text": "Manual", "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "user", "content": "x"}],
        }
    )
    assert cached["messages"][0]["content"] == [
        {"type": "text", "text": "Manual", "cache_control": {"type": "ephemeral"}}
    ]


def test_tool_choice_variants_and_stream() -> None:
    base = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    any_ = messages_to_openai({**base, "tools": tools, "tool_choice": {"type": "any"}})
    assert any_["tool_choice"] == "required"
    named = messages_to_openai(
        {**base, "tools": tools, "tool_choice": {"type": "tool", "name": "f"}}
    )
    assert named["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    none = messages_to_openai({**base, "tools": tools, "tool_choice": {"type": "none"}})
    assert none["tool_choice"] == "none"
    streamed = messages_to_openai({**base, "stream": True})
    assert streamed["stream"] is True
    assert streamed["stream_options"] == {"include_usage": True}
    assert "stream" not in messages_to_openai({**base, "stream": False})


def test_tool_result_blocks_images_and_errors() -> None:
    body = messages_to_openai(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "shot", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [
                                {"type": "text", "text": "captured"},
                                {
                                    "type": "image",
                                    "source": {"type": "url", "url": "https://x/y.png"},
                                },
                            ],
                        },
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "content": "boom",
                            "is_error": True,
                        },
                    ],
                },
            ],
        }
    )
    assert body["messages"] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "shot", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "captured"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: boom"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
        },
    ]


def test_thinking_blocks_in_history() -> None:
    """Signed thinking and redacted blocks ride along as the canonical ``thinking_blocks``
    extension (an Anthropic upstream needs them in a tool loop); unsigned ones are left out."""
    body = messages_to_openai(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "thinking", "thinking": "unsigned", "signature": ""},
                        {"type": "redacted_thinking", "data": "EmwK"},
                        {"type": "text", "text": "y"},
                    ],
                },
                {"role": "user", "content": "z"},
                {
                    "role": "assistant",
                    "content": [{"type": "thinking", "thinking": "t", "signature": ""}],
                },
            ],
        }
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": "y",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "redacted_thinking", "data": "EmwK"},
        ],
    }
    assert body["messages"][3] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"model": None}, "model"),
        ({"model": 3}, "model"),
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
        ({"messages": [{"role": "system", "content": 5}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": "x", "name": "n"}]}, "messages.0.name"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "x", "lang": "en"}]}
                ]
            },
            "messages.0.content.0.lang",
        ),
        ({"system": [{"type": "text", "text": "x", "name": "n"}]}, "system.0.name"),
        ({"context_management": {}}, "context_management"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"metadata": {"session": "s"}}, "metadata.session"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 512}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "max_tokens"),
        ({"thinking": {"type": "disabled", "budget_tokens": 2048}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "adaptive", "display": "full"}}, "thinking.display"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"output_config": {"format": {"type": "json_object"}}}, "output_config.format.type"),
        ({"output_config": {"verbosity": "low"}}, "output_config.verbosity"),
        ({"cache_control": {"type": "forever"}}, "cache_control.type"),
        ({"tools": [{"name": "f", "input_schema": {}, "parallel": True}]}, "tools.0.parallel"),
        ({"tools": [{"name": "f", "input_schema": {}, "strict": "yes"}]}, "tools.0.strict"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "messages.0.content.0.type",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}
                ]
            },
            "messages.0.content.0.source",
        ),
        ({"stream": "yes"}, "stream"),
        ({"system": 5}, "system"),
        ({"system": [{"type": "image"}]}, "system.0"),
        ({"temperature": "hot"}, "temperature"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
        ({"tool_choice": {"type": "maybe"}}, "tool_choice.type"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"metadata": {"user_id": 5}}, "metadata.user_id"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "x"}],
                    }
                ]
            },
            "messages.0.content.0.input",
        ),
    ],
)
def test_messages_to_openai_validation(patch: dict[str, Any], param: str) -> None:
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}], **patch}
    with pytest.raises(InvalidRequest) as info:
        messages_to_openai(body)
    assert info.value.param == param
    assert info.value.status == 400
    assert param in info.value.message


def test_messages_to_openai_rejects_non_object() -> None:
    with pytest.raises(InvalidRequest):
        messages_to_openai([])  # type: ignore[arg-type]


# --- openai_to_message ---------------------------------------------------------------------

GOLDEN_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Let me check the weather.",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_abc123",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 2100,
        "completion_tokens": 30,
        "total_tokens": 2130,
        "prompt_tokens_details": {"cached_tokens": 2048},
    },
}


def test_openai_to_message_golden() -> None:
    message = openai_to_message(GOLDEN_COMPLETION, "claude-sonnet-4-5")
    Message.model_validate(message)
    assert message == {
        "id": "msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "Let me check the weather."},
            {
                "type": "tool_use",
                "id": "call_abc123",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 52,
            "output_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 2048,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        },
    }


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_openai_to_message_stop_reasons(finish: str | None, stop: str) -> None:
    completion = {
        "id": "chatcmpl-1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": finish}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
    message = openai_to_message(completion, "m")
    Message.model_validate(message)
    assert message["stop_reason"] == stop
    assert message["usage"]["input_tokens"] == 5


def test_openai_to_message_edge_cases() -> None:
    message = openai_to_message(
        {
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "not json"},
                            }
                        ],
                    },
                    "finish_reason": "stop",
                }
            ]
        },
        "m",
    )
    Message.model_validate(message)
    assert message["id"].startswith("msg_")
    assert message["content"] == [
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"_raw_arguments": "not json"}}
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["input_tokens"] == 0
    refusal = openai_to_message(
        {
            "choices": [
                {
                    "message": {"content": None, "refusal": "I can't help."},
                    "finish_reason": "content_filter",
                }
            ]
        },
        "m",
    )
    assert refusal["content"] == [{"type": "text", "text": "I can't help."}]
    assert refusal["stop_reason"] == "refusal"


def test_adapter_message_round_trip() -> None:
    """Anthropic message -> OpenAI completion (adapter) -> Anthropic message (inbound)."""
    golden = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 40,
            "output_tokens": 12,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 8,
            "cache_creation": {"ephemeral_5m_input_tokens": 60, "ephemeral_1h_input_tokens": 40},
        },
    }
    req = GatewayRequest(Endpoint.CHAT, "claude-sonnet-4-5", {"messages": []}, b"")
    target = Target("d", "anthropic", "claude-sonnet-4-5", "http://x")
    parsed = AnthropicAdapter().parse(req, target, 200, orjson.dumps(golden))
    assert parsed.usage is not None
    assert (parsed.usage.cache_write_tokens, parsed.usage.cache_write_1h_tokens) == (60, 40)
    completion = orjson.loads(parsed.body)
    # The gateway's Usage (not the OpenAI JSON, which has no cache-write field) is used.
    message = openai_to_message(completion, "claude-sonnet-4-5", parsed.usage)
    Message.model_validate(message)
    assert message == golden


# --- stream encoder ------------------------------------------------------------------------


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4.1",
        "choices": choices,
        **extra,
    }


TOOL_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me "}),
    chunk({"content": "check."}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"},
                }
            ]
        }
    ),
    chunk({}, "tool_calls"),
    chunk(None, usage={"prompt_tokens": 120, "completion_tokens": 33, "total_tokens": 153}),
]


def events(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    return [(ev.event, orjson.loads(ev.data)) for ev in SSEParser().feed(data)]


def test_stream_encoder_golden() -> None:
    enc = AnthropicStreamEncoder("claude-sonnet-4-5", input_tokens=100)
    data = b"".join(enc.feed(c) for c in TOOL_CHUNKS) + enc.finish(None)
    assert enc.finished
    assert enc.finish(None) == b""
    assert data.startswith(b"event: message_start\ndata: {")
    assert events(data) == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_abc",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 100, "output_tokens": 0},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Let me "},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "check."},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "get_weather",
                    "input": {},
                },
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"city":'},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 1}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 2,
                "content_block": {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "get_time",
                    "input": {},
                },
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 2,
                "delta": {"type": "input_json_delta", "partial_json": "{}"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 2}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {
                    "input_tokens": 120,
                    "output_tokens": 33,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def test_stream_encoder_finish_usage_wins_and_estimates() -> None:
    enc = AnthropicStreamEncoder("m", input_tokens=7, message_id="msg_fixed")
    out = enc.feed(chunk({"content": "abcdefgh"})) + enc.feed(chunk({}, "length"))
    out += enc.finish(Usage(prompt_tokens=9, completion_tokens=4, cached_tokens=2))
    evs = events(out)
    assert evs[0][1]["message"]["id"] == "msg_fixed"
    assert evs[-2][1]["delta"]["stop_reason"] == "max_tokens"
    assert evs[-2][1]["usage"]["output_tokens"] == 4
    assert evs[-2][1]["usage"]["input_tokens"] == 7
    assert evs[-2][1]["usage"]["cache_read_input_tokens"] == 2
    plain = AnthropicStreamEncoder("m")
    evs = events(plain.feed(chunk({"content": "abcdefgh"})) + plain.finish(None))
    assert evs[-2][1]["usage"] == {"output_tokens": 2}
    assert evs[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_stream_encoder_empty_stream_and_error() -> None:
    enc = AnthropicStreamEncoder("m")
    assert [name for name, _ in events(enc.finish(None))] == [
        "message_start",
        "message_delta",
        "message_stop",
    ]
    failing = AnthropicStreamEncoder("m")
    head = failing.feed(chunk({"content": "partial"}))
    err = failing.error("overloaded_error", "Upstream overloaded")
    assert events(err) == [
        (
            "error",
            {
                "type": "error",
                "error": {"type": "overloaded_error", "message": "Upstream overloaded"},
            },
        )
    ]
    assert failing.finish(None) == b""
    assert failing.feed(chunk({"content": "late"})) == b""
    assert [name for name, _ in events(head)] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
    ]


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (415, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "api_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ],
)
def test_anthropic_error_body(status: int, kind: str) -> None:
    body = orjson.loads(anthropic_error_body(status, "budget_exceeded", "Budget exhausted"))
    assert body == {"type": "error", "error": {"type": kind, "message": "Budget exhausted"}}


# --- the real anthropic SDK reading what we encode -----------------------------------------


@pytest.fixture
async def fake_upstream() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """An HTTP server replaying canned bytes, so the anthropic SDK parses our output."""
    state: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        state["request"] = await request.json()
        resp = web.StreamResponse(
            status=state.get("status", 200), headers={"content-type": state["type"]}
        )
        await resp.prepare(request)
        await resp.write(state["body"])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", state
    finally:
        await runner.cleanup()


async def test_sdk_reads_encoded_stream(fake_upstream: tuple[str, dict[str, Any]]) -> None:
    url, state = fake_upstream
    enc = AnthropicStreamEncoder("claude-sonnet-4-5", input_tokens=100)
    state["type"] = "text/event-stream"
    state["body"] = b"".join(enc.feed(c) for c in TOOL_CHUNKS) + enc.finish(None)
    client = anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0)
    async with (
        client,
        client.messages.stream(
            model="smart", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert state["request"]["stream"] is True
    assert text == "Let me check."
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[1].input == {"city": "Paris"}  # type: ignore[union-attr]
    assert final.content[2].input == {}  # type: ignore[union-attr]
    assert final.usage.input_tokens == 120
    assert final.usage.output_tokens == 33


async def test_sdk_reads_message_and_errors(fake_upstream: tuple[str, dict[str, Any]]) -> None:
    url, state = fake_upstream
    state["type"] = "application/json"
    state["body"] = orjson.dumps(openai_to_message(GOLDEN_COMPLETION, "claude-sonnet-4-5"))
    async with anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0) as client:
        message = await client.messages.create(
            model="smart", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.stop_reason == "tool_use"
        assert message.usage.cache_read_input_tokens == 2048

        state["status"] = 429
        state["body"] = anthropic_error_body(429, "rate_limited", "Slow down")
        with pytest.raises(anthropic.RateLimitError) as info:
            await client.messages.create(
                model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
            )
        assert "Slow down" in str(info.value)

        state["status"] = 200
        state["type"] = "text/event-stream"
        enc = AnthropicStreamEncoder("m")
        state["body"] = enc.feed(chunk({"content": "par"})) + enc.error(
            "overloaded_error", "Overloaded"
        )
        with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
            async with client.messages.stream(
                model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}]
            ) as stream:
                async for _ in stream:
                    pass


# --- issue 13: the SDK's request surface, thinking, usage with cache writes ----------------


def test_sdk_fields_match_the_installed_sdk() -> None:
    """The accepted top-level fields are the SDK's MessageCreateParams (plus stream), and
    the beta-only ones are those of anthropic.types.beta (refused, not unknown)."""
    from typing import get_type_hints

    from anthropic.types import message_create_params as stable
    from anthropic.types.beta import message_create_params as beta

    from interlock.api.messages_format import BETA_FIELDS, SDK_FIELDS

    fields = set(get_type_hints(stable.MessageCreateParamsBase))
    assert fields | {"stream"} == SDK_FIELDS
    assert set(get_type_hints(beta.MessageCreateParamsBase)) - fields == BETA_FIELDS


def test_block_fields_match_the_installed_sdk() -> None:
    from typing import get_type_hints

    from anthropic import types as t

    from interlock.api.messages_format import BLOCK_FIELDS

    pairs: dict[str, tuple[Any, Any]] = {
        "text": (t.TextBlockParam, t.TextBlock),
        "image": (t.ImageBlockParam, None),
        "document": (t.DocumentBlockParam, None),
        "tool_use": (t.ToolUseBlockParam, t.ToolUseBlock),
        "tool_result": (t.ToolResultBlockParam, None),
        "thinking": (t.ThinkingBlockParam, t.ThinkingBlock),
        "redacted_thinking": (t.RedactedThinkingBlockParam, t.RedactedThinkingBlock),
    }
    for kind, (param, answer) in pairs.items():
        keys = set(get_type_hints(param)) | (set(answer.model_fields) if answer else set())
        assert keys == BLOCK_FIELDS[kind], kind


def _one(**extra: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "x"}],
    } | extra


def test_system_role_inside_messages_stays_in_place() -> None:
    body = messages_to_openai(
        _one(
            system="Top.",
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "Now be terse."}]},
                {"role": "user", "content": "and?"},
            ],
        )
    )
    assert [m["role"] for m in body["messages"]] == ["system", "user", "system", "user"]
    assert body["messages"][2] == {"role": "system", "content": "Now be terse."}


def test_max_tokens_zero_and_max_completion_tokens() -> None:
    assert messages_to_openai(_one(max_tokens=0), warm_ok=True)["max_completion_tokens"] == 0
    with pytest.raises(InvalidRequest) as info:
        messages_to_openai(_one(max_tokens=0))  # e.g. a job: nothing to warm
    assert info.value.param == "max_tokens"
    body = messages_to_openai(_one())
    assert body["max_completion_tokens"] == 4096 and "max_tokens" not in body


def test_thinking_effort_format_cache_and_warnings() -> None:
    notes: list[str] = []
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    body = messages_to_openai(
        _one(
            thinking={"type": "enabled", "budget_tokens": 2048, "display": "summarized"},
            output_config={"effort": "high", "format": {"type": "json_schema", "schema": schema}},
            cache_control={"type": "ephemeral", "ttl": "1h"},
            top_k=5,
            service_tier="auto",
            tools=[
                {
                    "name": "f",
                    "input_schema": {"type": "object"},
                    "strict": True,
                    "input_examples": [{}],
                }
            ],
        ),
        notes,
    )
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048, "display": "summarized"}
    assert body["reasoning_effort"] == "high"
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert body["messages"][-1]["content"] == [
        {"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]
    assert body["tools"][0]["function"]["strict"] is True
    assert "top_k" not in body and "service_tier" not in body
    assert any(n.startswith("top_k dropped") for n in notes)
    assert any(n.startswith("service_tier dropped") for n in notes)
    assert any("input_examples dropped" in n for n in notes)
    assert messages_to_openai(_one(thinking={"type": "adaptive"}))["thinking"] == {
        "type": "adaptive"
    }


def test_count_only_shape() -> None:
    body = messages_to_openai(
        {"model": "m", "messages": [{"role": "user", "content": "x"}]}, count_only=True
    )
    assert "max_completion_tokens" not in body
    with pytest.raises(InvalidRequest) as info:
        messages_to_openai(_one(), count_only=True)  # max_tokens is not a count field
    assert info.value.param == "max_tokens"


def test_usage_round_trip_with_cache_writes_and_thinking() -> None:
    from interlock.providers.anthropic_convert import usage_from_anthropic, usage_to_anthropic

    wire = {
        "input_tokens": 10,
        "output_tokens": 50,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 1000,
        "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100},
        "output_tokens_details": {"thinking_tokens": 30},
    }
    usage = usage_from_anthropic(wire)
    assert usage == Usage(
        prompt_tokens=1310, completion_tokens=50, cached_tokens=1000, reasoning_tokens=30,
        cache_write_tokens=200, cache_write_1h_tokens=100,
    )  # fmt: skip
    assert usage_to_anthropic(usage) == wire
    # No split given: every write is a 5-minute one (the default TTL).
    plain = usage_from_anthropic({"input_tokens": 1, "output_tokens": 1,
                                  "cache_creation_input_tokens": 7})  # fmt: skip
    assert plain is not None and (plain.cache_write_tokens, plain.cache_write_1h_tokens) == (7, 0)


THINKING_COMPLETION: dict[str, Any] = {
    "id": "chatcmpl-msg_think",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "42",
                "reasoning_content": "Let me think.",
                "thinking_blocks": [
                    {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBsig"},
                    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3"},
                ],
            },
            "finish_reason": "stop",
        }
    ],
}


def test_thinking_blocks_come_back_signed() -> None:
    message = openai_to_message(THINKING_COMPLETION, "claude", Usage(10, 20, reasoning_tokens=15))
    Message.model_validate(message)
    assert message["content"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": "EqQBsig"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3"},
        {"type": "text", "text": "42"},
    ]
    assert message["usage"]["output_tokens_details"] == {"thinking_tokens": 15}
    # Bare reasoning (no signature) only when the client asked for thinking.
    bare = copy.deepcopy(THINKING_COMPLETION)
    del bare["choices"][0]["message"]["thinking_blocks"]
    assert [b["type"] for b in openai_to_message(bare, "m")["content"]] == ["text"]
    asked = openai_to_message(bare, "m", thinking=True)
    Message.model_validate(asked)
    assert asked["content"][0] == {"type": "thinking", "thinking": "Let me think.", "signature": ""}


THINKING_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning_content": "Let me "}),
    chunk({"reasoning_content": "think."}),
    chunk({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": "EqQBsig"}]}),
    chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": "EmwKAhgBEgy3"}]}),
    chunk({"content": "42"}),
    chunk({}, "stop"),
]


def test_stream_encoder_thinking_events_validate() -> None:
    from anthropic.types import RawMessageStreamEvent
    from pydantic import TypeAdapter

    enc = AnthropicStreamEncoder("claude", input_tokens=5, thinking=True)
    data = b"".join(enc.feed(c) for c in THINKING_CHUNKS)
    data += enc.finish(Usage(12, 20, cached_tokens=2, reasoning_tokens=9, cache_write_tokens=4))
    adapter: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
    evs = events(data)
    for _, payload in evs:
        adapter.validate_python(payload)
    deltas = [p["delta"] for n, p in evs if n == "content_block_delta"]
    assert deltas == [
        {"type": "thinking_delta", "thinking": "Let me "},
        {"type": "thinking_delta", "thinking": "think."},
        {"type": "signature_delta", "signature": "EqQBsig"},
        {"type": "text_delta", "text": "42"},
    ]
    starts = [p["content_block"]["type"] for n, p in evs if n == "content_block_start"]
    assert starts == ["thinking", "redacted_thinking", "text"]
    final = evs[-2][1]["usage"]
    assert final == {
        "input_tokens": 6, "output_tokens": 20, "cache_creation_input_tokens": 4,
        "cache_read_input_tokens": 2, "output_tokens_details": {"thinking_tokens": 9},
    }  # fmt: skip
    # A client that did not ask for thinking gets the signed blocks but no bare text.
    plain = AnthropicStreamEncoder("claude")
    evs = events(b"".join(plain.feed(c) for c in THINKING_CHUNKS) + plain.finish(None))
    starts = [p["content_block"]["type"] for n, p in evs if n == "content_block_start"]
    assert starts == ["thinking", "redacted_thinking", "text"]


async def test_sdk_accumulates_thinking_stream(fake_upstream: tuple[str, dict[str, Any]]) -> None:
    url, state = fake_upstream
    enc = AnthropicStreamEncoder("claude", input_tokens=5, thinking=True)
    state["type"] = "text/event-stream"
    state["body"] = b"".join(enc.feed(c) for c in THINKING_CHUNKS) + enc.finish(None)
    client = anthropic.AsyncAnthropic(base_url=url, api_key="k", max_retries=0)
    async with (
        client,
        client.messages.stream(
            model="claude",
            max_tokens=4096,
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[{"role": "user", "content": "hi"}],
        ) as stream,
    ):
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "redacted_thinking", "text"]
    assert final.content[0].thinking == "Let me think."  # type: ignore[union-attr]
    assert final.content[0].signature == "EqQBsig"  # type: ignore[union-attr]
    assert state["request"]["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_thinking_extensions_round_trip() -> None:
    """Anthropic thinking -> the canonical extensions (anthropic_convert helpers the
    outbound adapter uses) -> the inbound API: the same blocks, signatures intact."""
    from interlock.providers.anthropic_convert import reasoning_extensions, thinking_stream_delta

    content = [
        {"type": "thinking", "thinking": "Step one.", "signature": "EqQBsig"},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3"},
        {"type": "text", "text": "4"},
    ]
    message = {"role": "assistant", "content": "4", **reasoning_extensions(content)}
    completion = {"id": "chatcmpl-x", "choices": [{"message": message, "finish_reason": "stop"}]}
    back = openai_to_message(completion, "claude")
    Message.model_validate(back)
    assert back["content"] == content
    assert reasoning_extensions([{"type": "text", "text": "4"}]) == {}

    upstream = [
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "Step "}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "thinking_delta", "thinking": "one."}},
        {"type": "content_block_delta", "index": 0,
         "delta": {"type": "signature_delta", "signature": "EqQBsig"}},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "redacted_thinking", "data": "EmwKAhgBEgy3"}},
    ]  # fmt: skip
    deltas = [d for ev in upstream if (d := thinking_stream_delta(ev)) is not None]
    enc = AnthropicStreamEncoder("claude", thinking=True)
    data = b"".join(enc.feed(chunk(d)) for d in [*deltas, {"content": "4"}])
    data += enc.finish(Usage(3, 9))
    blocks: dict[int, dict[str, Any]] = {}
    for name, payload in events(data):
        if name == "content_block_start":
            blocks[payload["index"]] = dict(payload["content_block"])
        elif name == "content_block_delta":
            block, delta = blocks[payload["index"]], payload["delta"]
            if delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "text_delta":
                block["text"] += delta["text"]
    assert [blocks[i] for i in sorted(blocks)] == content


def test_stop_sequence_extension() -> None:
    """The canonical choice extension ``stop_sequence`` (which sequence ended the answer,
    from upstreams that say) comes back as Anthropic's stop_reason + stop_sequence."""
    completion = {
        "id": "chatcmpl-s",
        "choices": [
            {"message": {"content": "one two"}, "finish_reason": "stop", "stop_sequence": "END"}
        ],
    }
    message = openai_to_message(completion, "m")
    Message.model_validate(message)
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")
    length = copy.deepcopy(completion)
    length["choices"][0]["finish_reason"] = "length"
    assert openai_to_message(length, "m")["stop_sequence"] is None
    enc = AnthropicStreamEncoder("m")
    final = {"index": 0, "delta": {}, "finish_reason": "stop", "stop_sequence": "END"}
    data = enc.feed(chunk({"content": "one two"})) + enc.feed({"choices": [final]})
    evs = events(data + enc.finish(Usage(3, 2)))
    assert evs[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
