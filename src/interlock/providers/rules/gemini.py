"""Gemini API and Vertex AI model families (kinds ``gemini`` and ``vertex``).

Sources (what Google publishes; see docs/providers.md for the table this renders as):
the google-genai SDK 3.6.1 types (``GenerationConfig``, ``ThinkingConfig``,
``FunctionDeclaration.parameters_json_schema``, ``Schema``) and the Gemini API docs for
thinking (2.5 families take ``thinkingBudget`` within a per-family range, 3 families take
``thinkingLevel``), stop sequences (at most 5), candidate count (at most 8) and
``temperature`` 0-2.

The generic :class:`ModelRules` carries what every adapter understands; the Gemini-only
facts (how a family thinks, its budget range and levels) are in :class:`Thinking`, looked
up with :func:`thinking_for`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from interlock.providers.capabilities import ModelRules, ToolIdRule, register

# Gemini function-call ids: Interlock sends the id of each call and its response
# (``functionCall.id`` / ``functionResponse.id``) so parallel calls pair up; ids issued by
# another provider are mapped to this form (a stable hash where they do not fit).
GEMINI_TOOL_ID = ToolIdRule(max_len=64, pattern=r"[A-Za-z0-9_-]+")

MAX_STOP_SEQUENCES = 5
MAX_CANDIDATES = 8
MAX_LOGPROBS = 20

_RANGES = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)}
_PENALTY_RANGES = {
    **_RANGES,
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
_PENALTIES = frozenset({"presence_penalty", "frequency_penalty"})
# OpenAI parameters with no Gemini counterpart whose absence keeps the answer's meaning.
_CHAT_ONLY = frozenset(
    {
        "logit_bias",
        "user",
        "store",
        "metadata",
        "service_tier",
        "prediction",
        "safety_identifier",
        "prompt_cache_key",
        "web_search_options",
    }
)


@dataclass(frozen=True, slots=True)
class Thinking:
    """How a family thinks: ``budget`` families take ``thinkingBudget`` in
    ``[low, high]`` (0 turns thinking off where ``can_disable``; -1 = dynamic);
    ``level`` families take ``thinkingLevel`` (one of ``levels``)."""

    mode: Literal["budget", "level", "none"]
    low: int = 0
    high: int = 0
    can_disable: bool = False
    levels: tuple[str, ...] = ()

    def budget_ok(self, value: int) -> bool:
        if self.mode == "none":
            return False
        if value == -1:
            return True
        if value == 0:
            return self.can_disable
        return self.low <= value <= self.high


# reasoning_effort -> thinkingBudget (the budgets Google's OpenAI-compatible endpoint uses)
EFFORT_BUDGET = {"minimal": 0, "low": 1024, "medium": 8192, "high": 24576, "xhigh": 32768}
EFFORT_LEVEL = {
    "minimal": "MINIMAL",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "xhigh": "HIGH",
}

_THINKING: dict[str, Thinking] = {
    "gemini-3-pro": Thinking("level", levels=("LOW", "HIGH")),
    "gemini-3": Thinking("level", levels=("MINIMAL", "LOW", "MEDIUM", "HIGH")),
    "gemini-2.5-pro": Thinking("budget", 128, 32768, can_disable=False),
    "gemini-2.5-flash-lite": Thinking("budget", 512, 24576, can_disable=True),
    "gemini-2.5-flash": Thinking("budget", 1, 24576, can_disable=True),
}
_NO_THINKING = Thinking("none")

_FAMILIES: tuple[ModelRules, ...] = (
    ModelRules(
        family="gemini-3-pro",
        patterns=("gemini-3-pro*", "gemini-3.*-pro*"),
        unsupported=_CHAT_ONLY | _PENALTIES,
        ranges=_RANGES,
        structured_output="native",
        thinking=True,
        tool_schema="json-schema",
        tool_id=GEMINI_TOOL_ID,
        notes="thinkingLevel LOW/HIGH; thinking cannot be turned off; "
        "function calls need their thought signatures back",
    ),
    ModelRules(
        family="gemini-3",
        patterns=("gemini-3*",),
        unsupported=_CHAT_ONLY | _PENALTIES,
        ranges=_RANGES,
        structured_output="native",
        thinking=True,
        tool_schema="json-schema",
        tool_id=GEMINI_TOOL_ID,
        notes="thinkingLevel MINIMAL/LOW/MEDIUM/HIGH",
    ),
    ModelRules(
        family="gemini-2.5-pro",
        patterns=("gemini-2.5-pro*",),
        unsupported=_CHAT_ONLY | _PENALTIES,
        ranges=_RANGES,
        structured_output="native",
        thinking=True,
        tool_schema="json-schema",
        tool_id=GEMINI_TOOL_ID,
        notes="thinkingBudget 128-32768 or -1; thinking cannot be turned off",
    ),
    ModelRules(
        family="gemini-2.5-flash-lite",
        patterns=("gemini-2.5-flash-lite*",),
        unsupported=_CHAT_ONLY,
        ranges=_PENALTY_RANGES,
        structured_output="native",
        thinking=True,
        tool_schema="json-schema",
        tool_id=GEMINI_TOOL_ID,
        notes="thinkingBudget 0 or 512-24576, -1 dynamic",
    ),
    ModelRules(
        family="gemini-2.5-flash",
        patterns=("gemini-2.5-flash*", "gemini-2.5*"),
        unsupported=_CHAT_ONLY,
        ranges=_PENALTY_RANGES,
        structured_output="native",
        thinking=True,
        tool_schema="json-schema",
        tool_id=GEMINI_TOOL_ID,
        notes="thinkingBudget 0-24576, -1 dynamic",
    ),
    ModelRules(
        family="gemini-embedding",
        patterns=("gemini-embedding*", "text-embedding*", "text-multilingual-embedding*"),
        notes="embeddings only",
    ),
    ModelRules(
        family="gemini",
        patterns=("*",),
        unsupported=_CHAT_ONLY,
        ranges=_PENALTY_RANGES,
        structured_output="native",
        thinking=False,
        tool_schema="openapi-subset",
        tool_id=GEMINI_TOOL_ID,
        notes="gemini-2.0 and other models: no thinking; tool parameters and response "
        "schemas in the OpenAPI subset (Schema)",
    ),
)


def thinking_for(family: str) -> Thinking:
    """The thinking rules of a family from the table above (``none`` where it has none)."""
    return _THINKING.get(family, _NO_THINKING)


register("gemini", _FAMILIES)
register("vertex", _FAMILIES)
