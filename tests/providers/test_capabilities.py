"""The capability table's generic rules (providers/capabilities.py): drop with a warning,
clamp, exclusive pairs, refusals, and tool-id normalisation."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlock.errors import InvalidRequest
from interlock.providers.capabilities import Adjust, ModelRules, ToolIdRule, normalise_tool_id

RULES = ModelRules(
    family="test-family",
    patterns=("test-*",),
    unsupported=frozenset({"logit_bias"}),
    refused=frozenset({"logprobs"}),
    exclusive=(("temperature", "top_p"),),
    ranges={"temperature": (0.0, 1.0)},
)
BEDROCK_ID = ToolIdRule(max_len=64, pattern=r"[a-zA-Z0-9_-]+")


def test_unsupported_is_dropped_with_a_warning() -> None:
    body: dict[str, object] = {"logit_bias": {"1": 2}, "temperature": 0.5}
    adj = Adjust(RULES)
    adj.apply_common(RULES, body)
    assert body == {"temperature": 0.5}
    assert adj.warnings == ["logit_bias dropped: not supported by test-family models"]


def test_exclusive_pair_keeps_the_first_and_range_clamps() -> None:
    body: dict[str, object] = {"temperature": 1.7, "top_p": 0.9}
    adj = Adjust(RULES)
    adj.apply_common(RULES, body)
    assert body == {"temperature": 1.0}
    assert any("top_p dropped" in w for w in adj.warnings)
    assert any("temperature clamped to 1" in w for w in adj.warnings)


def test_refused_parameter_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequest) as caught:
        Adjust(RULES).apply_common(RULES, {"logprobs": True})
    assert caught.value.param == "logprobs" and caught.value.code == "unsupported_parameter"
    Adjust(RULES).apply_common(RULES, {"logprobs": False})  # asking for none is fine


def test_model_patterns() -> None:
    assert RULES.matches("test-1") and not RULES.matches("other")


@given(st.text(min_size=1, max_size=400))
def test_any_id_maps_to_an_accepted_stable_id(value: str) -> None:
    out = normalise_tool_id(value, BEDROCK_ID)
    assert BEDROCK_ID.accepts(out)
    assert normalise_tool_id(value, BEDROCK_ID) == out
    if BEDROCK_ID.accepts(value):
        assert out == value


def test_a_gemini_style_id_is_rewritten_for_bedrock() -> None:
    gemini_id = "A" * 300 + "+/=="
    out = normalise_tool_id(gemini_id, BEDROCK_ID)
    assert len(out) <= 64 and re.fullmatch(r"[a-zA-Z0-9_-]+", out)
    assert normalise_tool_id(gemini_id + "x", BEDROCK_ID) != out
