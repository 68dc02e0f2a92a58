"""The request matrix every provider kind's conformance test sends through its adapter.

Each case is a canonical (OpenAI-shaped) client request. A provider kind's test builds
each case with its adapter, validates the outbound request against what the provider
publishes (spec / SDK types / service model), and checks the adapter's answer through the
official SDK. A case the kind cannot serve must end in one of the three documented ways
(translated, dropped with an ``x-interlock-warnings`` entry, or a 400 naming the
parameter) — never an outbound request the provider would refuse.

The matrix is deliberately broad rather than tuned: new cases go here, not per provider.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

# A 1x1 PNG (valid image bytes for the image cases).
PNG_1X1 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()

WEATHER_TOOL: JSON = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}

# What real clients send (pydantic / zod generated): integer enums, arrays without items,
# $ref into $defs, string formats, nullable unions, nested objects, defaults, titles.
RICH_TOOL: JSON = {
    "type": "function",
    "function": {
        "name": "book_trip",
        "description": "Book a trip",
        "strict": True,
        "parameters": {
            "type": "object",
            "title": "BookTrip",
            "$defs": {
                "Traveller": {
                    "type": "object",
                    "title": "Traveller",
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "age": {"type": ["integer", "null"], "minimum": 0},
                    },
                    "required": ["name", "age"],
                    "additionalProperties": False,
                }
            },
            "properties": {
                "when": {"type": "string", "format": "date-time"},
                "contact": {"type": "string", "format": "email"},
                "seats": {"type": "integer", "enum": [1, 2, 3]},
                "tags": {"type": "array"},
                "class": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
                "travellers": {"type": "array", "items": {"$ref": "#/$defs/Traveller"}},
                "budget": {"type": "number", "exclusiveMinimum": 0},
            },
            "required": ["when", "contact", "seats", "tags", "class", "travellers", "budget"],
            "additionalProperties": False,
        },
    },
}

JSON_SCHEMA_FORMAT: JSON = {
    "type": "json_schema",
    "json_schema": {
        "name": "city_facts",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "population": {"type": "integer"},
                "landmarks": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["city", "population", "landmarks"],
            "additionalProperties": False,
        },
    },
}

SYSTEM_MULTI_TURN: list[JSON] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi."},
    {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
]

# A tool round trip with two parallel calls; the ids are another provider's (a Gemini-style
# long id with + / =, and an OpenAI one): after a failover the conversation carries them.
FOREIGN_ID = "CiQB" + "x9Yq+/Ab=" * 40
TOOL_ROUND_TRIP: list[JSON] = [
    {"role": "user", "content": "Weather in Paris and Oslo?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": FOREIGN_ID,
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            },
            {
                "id": "call_abc123",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": FOREIGN_ID, "content": "18C, sunny"},
    {"role": "tool", "tool_call_id": "call_abc123", "content": "4C, rain"},
]


@dataclass(frozen=True)
class Case:
    name: str
    body: JSON
    stream: bool = False
    # What the case exercises (for reports); not used to decide pass/fail.
    features: tuple[str, ...] = field(default_factory=tuple)


def _chat(**extra: Any) -> JSON:
    return {"model": "m", "messages": [{"role": "user", "content": "Say hi"}], **extra}


CHAT_CASES: tuple[Case, ...] = (
    Case("plain", _chat()),
    Case("system_multi_turn", {"model": "m", "messages": SYSTEM_MULTI_TURN}),
    Case(
        "developer_role",
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "Answer in French."},
                {"role": "user", "content": "Hello"},
            ],
        },
    ),
    Case("stream", _chat(stream=True), stream=True),
    Case("stream_usage", _chat(stream=True, stream_options={"include_usage": True}), stream=True),
    Case("tools_auto", _chat(tools=[WEATHER_TOOL], tool_choice="auto")),
    Case("tools_required", _chat(tools=[WEATHER_TOOL], tool_choice="required")),
    Case("tools_none", _chat(tools=[WEATHER_TOOL], tool_choice="none")),
    Case(
        "tools_named",
        _chat(
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        ),
    ),
    Case("tools_parallel_off", _chat(tools=[WEATHER_TOOL], parallel_tool_calls=False)),
    Case("tool_round_trip", {"model": "m", "messages": TOOL_ROUND_TRIP, "tools": [WEATHER_TOOL]}),
    Case(
        "tool_round_trip_stream",
        {"model": "m", "messages": TOOL_ROUND_TRIP, "tools": [WEATHER_TOOL], "stream": True},
        stream=True,
    ),
    Case("rich_tool_schema", _chat(tools=[RICH_TOOL], tool_choice="auto")),
    Case("json_schema", _chat(response_format=JSON_SCHEMA_FORMAT)),
    Case(
        "json_object",
        {
            "model": "m",
            "response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": "Reply in JSON"}],
        },
    ),
    Case(
        "image_data_url",
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PNG_1X1}"},
                        },
                    ],
                }
            ],
        },
    ),
    Case("max_tokens", _chat(max_tokens=64)),
    Case("max_completion_tokens", _chat(max_completion_tokens=64)),
    Case("stop_list", _chat(stop=["\n\n", "END"])),
    Case("stop_string", _chat(stop="END")),
    Case("n_1", _chat(n=1)),
    Case("n_2", _chat(n=2)),
    Case("temperature_top_p", _chat(temperature=0.7, top_p=0.9)),
    Case("temperature_high", _chat(temperature=1.6)),
    Case("temperature_zero", _chat(temperature=0)),
    Case("seed", _chat(seed=42)),
    Case("logprobs", _chat(logprobs=True, top_logprobs=2)),
    Case("reasoning_effort", _chat(reasoning_effort="high", max_completion_tokens=4096)),
    Case("penalties", _chat(presence_penalty=0.5, frequency_penalty=0.5)),
    Case("user_and_metadata", _chat(user="u-1")),
)

EMBEDDING_CASES: tuple[Case, ...] = (
    Case("one", {"model": "e", "input": "hello"}),
    Case("many", {"model": "e", "input": ["one", "two", "three"]}),
    Case("dimensions", {"model": "e", "input": "hello", "dimensions": 256}),
)
