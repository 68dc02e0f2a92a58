"""Unit tests of the pure parts: token counting, generation, schema values, config."""

from __future__ import annotations

import random
from typing import Any

import pytest

from interlock.sim.config import ConfigError, SimConfig
from interlock.sim.embeddings import embed
from interlock.sim.engine import GenSpec, Tool, generate
from interlock.sim.faults import FaultEngine
from interlock.sim.schema import conforms, value_for_schema
from interlock.sim.textgen import chat_prompt_tokens, content_digest, count_tokens, split_pieces

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 3},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "alerts": {"type": "boolean"},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}


def test_count_tokens_rule() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("") == 0
    assert chat_prompt_tokens(["Hello, world!"]) == 4 + 3 + 3
    assert chat_prompt_tokens([]) == 3


def test_split_pieces_round_trip() -> None:
    text = '{"a": "two words", "b": [1, 2.5]}  '
    assert "".join(split_pieces(text)) == text


@pytest.mark.parametrize("seed", range(20))
def test_schema_values_conform(seed: int) -> None:
    value = value_for_schema(WEATHER, random.Random(seed))
    assert conforms(value, WEATHER), value


def test_schema_gemini_uppercase_types_and_refs() -> None:
    gemini = {"type": "OBJECT", "properties": {"n": {"type": "INTEGER"}}, "required": ["n"]}
    assert isinstance(value_for_schema(gemini, random.Random(1))["n"], int)
    ref = {
        "$defs": {
            "P": {"type": "object", "properties": {"x": {"type": "boolean"}}, "required": ["x"]}
        },
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/P"}},
        "required": ["p"],
    }
    assert isinstance(value_for_schema(ref, random.Random(1))["p"]["x"], bool)


def _spec(**kw: Any) -> GenSpec:
    return GenSpec(model="sim-small", digest=content_digest({"q": "x"}), prompt_tokens=5, **kw)


def test_generation_deterministic_and_seed_sensitive() -> None:
    cfg = SimConfig(seed=1)
    a = generate(cfg, _spec())[0]
    assert a.text == generate(cfg, _spec())[0].text
    assert a.completion_tokens == 16 and len(a.text.split()) == 16
    assert a.text != generate(SimConfig(seed=2), _spec())[0].text
    assert a.text != generate(cfg, _spec(request_seed=3))[0].text


def test_generation_caps_stops_and_tools() -> None:
    cfg = SimConfig(seed=1)
    capped = generate(cfg, _spec(max_tokens=4))[0]
    assert capped.finish == "length" and capped.completion_tokens == 4
    full = generate(cfg, _spec())[0].text
    stop = full.split()[5]
    stopped = generate(cfg, _spec(stop=[" " + stop]))[0]
    assert stopped.finish == "stop_sequence" and stopped.stop_sequence == " " + stop
    assert full.startswith(stopped.text) and (" " + stop) not in stopped.text
    tool = generate(cfg, _spec(tools=[Tool("w", WEATHER)]))[0]
    assert tool.finish == "tool" and tool.tool_call is not None
    assert conforms(tool.tool_call.input, WEATHER)
    no_tool = generate(cfg, _spec(tools=[Tool("w", WEATHER)], last_is_tool_result=True))[0]
    assert no_tool.tool_call is None and no_tool.text


def test_embeddings_unit_and_similar_for_similar_text() -> None:
    import math

    a = embed("What is the capital of France?", 64)
    b = embed("what is the capital of france", 64)
    c = embed("bananas are yellow fruit", 64)
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-5)
    assert sum(x * y for x, y in zip(a, b, strict=True)) > 0.99
    assert abs(sum(x * y for x, y in zip(a, c, strict=True))) < 0.6


def test_config_round_trip_and_rejects_unknown() -> None:
    cfg = SimConfig.from_dict(
        {"seed": 3, "ttft_ms": 5, "faults": [{"type": "status", "status": 429}]}
    )
    assert SimConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.prices["sim-small"] == {"input_per_mtok": 0.15, "output_per_mtok": 0.60}
    assert cfg.price_for("anthropic.sim-large-v1:0") == cfg.prices["sim-large"]
    with pytest.raises(ConfigError):
        SimConfig.from_dict({"nope": 1})
    with pytest.raises(ConfigError):
        SimConfig.from_dict({"faults": [{"type": "explode"}]})
    with pytest.raises(ConfigError):
        SimConfig.from_dict({"ttft_ms": "fast"})


def test_fault_engine_counts_matches_and_probability() -> None:
    eng = FaultEngine(
        [
            {"type": "latency", "ms": 5, "count": None, "probability": 1.0, "match": {}},
            {
                "type": "status",
                "status": 429,
                "count": 2,
                "probability": 1.0,
                "match": {"model": "sim-large"},
            },
        ],
        seed=1,
    )
    assert eng.decide("/v1/chat/completions", "sim-small", "openai", False).fault is None
    d = eng.decide("/v1/chat/completions", "sim-large", "openai", False)
    assert d.latency_ms == 5 and d.fault is not None and d.fault["status"] == 429
    eng.decide("/x", "sim-large", "openai", False)
    assert eng.decide("/x", "sim-large", "openai", False).fault is None

    def hits(seed: int) -> list[bool]:
        e = FaultEngine([{"type": "reset", "count": None, "probability": 0.5, "match": {}}], seed)
        return [e.decide("/x", "m", "openai", False).fault is not None for _ in range(50)]

    assert hits(4) == hits(4)
    assert 5 < sum(hits(4)) < 45
