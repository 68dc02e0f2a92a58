"""Claude model families on Anthropic's Messages API (kind ``anthropic``).

Sources, per rule (docs/providers.md renders this table):

* The request shape is the official ``anthropic`` SDK 2.17.0 (``anthropic.types``:
  ``MessageCreateParamsBase``, ``ThinkingConfigParam``, ``OutputConfigParam``,
  ``ToolParam``). Its ``MessageCreateParamsBase`` has **no** ``temperature``, ``top_p`` or
  ``top_k``: the models it lists first (Claude Opus 4.7 and later, the 5 generation) take
  no sampling parameters, so the catch-all family below drops them with a warning.
  ``output_config`` carries ``effort`` (low / medium / high / xhigh / max) and ``format``
  (native structured output, ``{"type": "json_schema", "schema": ...}``); ``thinking`` is
  ``enabled`` (with ``budget_tokens`` >= 1024 and < ``max_tokens``), ``adaptive``,
  ``disabled`` or ``between_tools``; a tool has ``strict``.
* Older families still take ``temperature`` (0-1), ``top_p`` and ``top_k``, as the SDK
  described them up to its 0.x releases (``temperature: float``, ``top_p: float``,
  ``top_k: int``). From Claude Opus 4.1 / Sonnet 4.5 / Haiku 4.5 on the API refuses
  ``temperature`` and ``top_p`` together ("``temperature`` and ``top_p`` cannot both be
  specified for this model"): Interlock keeps ``temperature`` and drops ``top_p``.
* Extended thinking with a token budget: Claude 3.7 Sonnet and the Claude 4 families
  (Anthropic's extended-thinking docs); adaptive thinking with ``effort``: Opus 4.6 /
  Sonnet 4.6 and later (adaptive only from Opus 4.7, where a budget is refused);
  ``effort`` on Opus 4.5 (low/medium/high), ``max`` from the 4.6 families, ``xhigh``
  from Opus 4.7 (the SDK's ``OutputConfigParam`` literal).
* Native structured output (``output_config.format``) and ``strict`` tools: Opus 4.1,
  Sonnet 4.5, Haiku 4.5 and later (Anthropic's structured-outputs docs); earlier families
  get the prompt instruction.
* Tool-use ids: ``^[a-zA-Z0-9_-]+$`` (the API's validation of ``tool_use.id`` and
  ``tool_result.tool_use_id``); Anthropic publishes no length limit, so 64 (Bedrock's
  ``ToolUseId`` bound, the tightest of the providers an alias may fail over to) keeps an
  id valid across Claude on both.
* Not in the API at all (dropped with a warning): ``seed``, penalties, ``logit_bias``,
  ``top_logprobs``, ``verbosity``, ``prediction``, ``store``, ``metadata`` (OpenAI's tag
  map), ``service_tier``, ``prompt_cache_key`` / ``prompt_cache_retention`` /
  ``prompt_cache_options``, ``moderation``, ``modalities``. Refused (the answer would not be what was asked
  for): ``logprobs``, ``audio``, ``web_search_options``, legacy ``functions`` /
  ``function_call`` (use ``tools``); ``n`` > 1 is refused by the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from interlock.providers.capabilities import ModelRules, ToolIdRule, register

ANTHROPIC_TOOL_ID = ToolIdRule(max_len=64, pattern=r"[a-zA-Z0-9_-]+")

# Canonical (OpenAI) parameters with no Anthropic counterpart whose absence leaves the
# answer's meaning intact.
_DROPPED = frozenset(
    {
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "top_logprobs",
        "verbosity",
        "prediction",
        "store",
        "metadata",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "moderation",
        "modalities",  # text is all Anthropic writes; audio output is refused via `audio`
    }
)
_REFUSED = frozenset({"logprobs", "audio", "web_search_options", "functions", "function_call"})
_SAMPLING = frozenset({"temperature", "top_p", "top_k"})
_RANGES = {"temperature": (0.0, 1.0), "top_p": (0.0, 1.0)}

Sampling = Literal["all", "one", "none"]
ThinkingMode = Literal["none", "budget", "adaptive", "adaptive_only"]


@dataclass(frozen=True, slots=True)
class Claude:
    """The Anthropic-only facts of a family: ``sampling`` ``all`` (temperature, top_p,
    top_k together), ``one`` (temperature or top_p, not both) or ``none`` (no sampling
    parameters); how it thinks (``budget``: ``thinking.type: enabled`` with
    ``budget_tokens``; ``adaptive``: adaptive preferred, budget accepted;
    ``adaptive_only``); the ``output_config.effort`` levels it takes."""

    sampling: Sampling
    thinking: ThinkingMode
    efforts: tuple[str, ...] = ()


# reasoning_effort -> thinking budget (families that think with a budget).
EFFORT_BUDGET = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
EFFORT_BUDGET_TOP = 32768  # xhigh / max
MIN_BUDGET = 1024  # ThinkingConfigEnabledParam.budget_tokens: ">= 1024 and < max_tokens"

_FAMILIES: tuple[tuple[ModelRules, Claude], ...] = (
    (
        ModelRules(
            family="claude-3",
            patterns=("claude-3-haiku*", "claude-3-sonnet*", "claude-3-opus*", "claude-3-5-*"),
            unsupported=_DROPPED,
            refused=_REFUSED,
            ranges=_RANGES,
            structured_output="prompt",
            thinking=False,
            tool_id=ANTHROPIC_TOOL_ID,
        ),
        Claude("all", "none"),
    ),
    (
        ModelRules(
            family="claude-3.7",
            patterns=("claude-3-7-*",),
            unsupported=_DROPPED,
            refused=_REFUSED,
            ranges=_RANGES,
            structured_output="prompt",
            thinking=True,
            tool_id=ANTHROPIC_TOOL_ID,
        ),
        Claude("all", "budget"),
    ),
    (
        ModelRules(
            family="claude-4.0",
            patterns=(
                "claude-sonnet-4-0*",
                "claude-sonnet-4-2025*",
                "claude-opus-4-0*",
                "claude-opus-4-2025*",
            ),
            unsupported=_DROPPED,
            refused=_REFUSED,
            ranges=_RANGES,
            structured_output="prompt",
            thinking=True,
            tool_id=ANTHROPIC_TOOL_ID,
        ),
        Claude("all", "budget"),
    ),
    (
        ModelRules(
            family="claude-4.1/4.5",
            patterns=("claude-opus-4-1*", "claude-sonnet-4-5*", "claude-haiku-4-5*"),
            unsupported=_DROPPED,
            refused=_REFUSED,
            exclusive=(("temperature", "top_p"),),
            ranges=_RANGES,
            structured_output="native",
            thinking=True,
            tool_strict=True,
            tool_id=ANTHROPIC_TOOL_ID,
        ),
        Claude("one", "budget"),
    ),
    (
        ModelRules(
            family="claude-opus-4.5",
            patterns=("claude-opus-4-5*",),
            unsupported=_DROPPED,
            refused=_REFUSED,
            exclusive=(("temperature", "top_p"),),
            ranges=_RANGES,
            structured_output="native",
            thinking=True,
            tool_strict=True,
            tool_id=ANTHROPIC_TOOL_ID,
        ),
        Claude("one", "budget", ("low", "medium", "high")),
    ),
    (
        ModelRules(
            family="claude-4.6",
            patterns=("claude-opus-4-6*", "claude-sonnet-4-6*"),
            unsupported=_DROPPED,
            refused=_REFUSED,
            exclusive=(("temperature", "top_p"),),
            ranges=_RANGES,
            structured_output="native",
            thinking=True,
            tool_strict=True,
            tool_id=ANTHROPIC_TOOL_ID,
        ),
        Claude("one", "adaptive", ("low", "medium", "high", "max")),
    ),
    (
        # Opus 4.7 and later, the 5 generation and any model name not listed above: what
        # the current SDK (2.17.0) describes.
        ModelRules(
            family="claude (current)",
            patterns=("*",),
            unsupported=_DROPPED | _SAMPLING,
            refused=_REFUSED,
            structured_output="native",
            thinking=True,
            tool_strict=True,
            tool_id=ANTHROPIC_TOOL_ID,
        ),
        Claude("none", "adaptive_only", ("low", "medium", "high", "xhigh", "max")),
    ),
)

# The most output tokens (``max_tokens``) each model takes (Anthropic's models overview;
# first matching pattern wins). A larger ``max_tokens`` is refused by the API
# ("max_tokens: N > M, which is the maximum allowed number of output tokens").
MAX_OUTPUT: tuple[tuple[str, int], ...] = (
    ("claude-3-5-*", 8192),
    ("claude-3-7-*", 64000),
    ("claude-3-*", 4096),
    ("claude-opus-4-0*", 32000),
    ("claude-opus-4-2025*", 32000),
    ("claude-opus-4-1*", 32000),
    ("claude-sonnet-4*", 64000),
    ("claude-haiku-4*", 64000),
    ("claude-opus-4-5*", 64000),
    ("*", 128000),  # Opus 4.6 and later, unknown names
)


def max_output(model: str) -> int:
    for pattern, limit in MAX_OUTPUT:
        if fnmatchcase(model, pattern):
            return limit
    return MAX_OUTPUT[-1][1]


_CLAUDE = {rules.family: claude for rules, claude in _FAMILIES}
_CURRENT = _FAMILIES[-1][1]


def claude_for(rules: ModelRules) -> Claude:
    """The Anthropic-only facts of the family ``rules`` came from."""
    return _CLAUDE.get(rules.family, _CURRENT)


register("anthropic", (rules for rules, _ in _FAMILIES))

__all__ = [
    "ANTHROPIC_TOOL_ID",
    "EFFORT_BUDGET",
    "EFFORT_BUDGET_TOP",
    "MAX_OUTPUT",
    "MIN_BUDGET",
    "Claude",
    "claude_for",
    "max_output",
]
