"""Amazon Bedrock (Converse / ConverseStream) model families (kind ``bedrock``).

Sources: botocore 1.44.18's ``bedrock-runtime`` service model (apiVersion 2023-09-30:
``InferenceConfiguration`` temperature 0-1, topP 0-1, maxTokens >= 1; ``ToolUseId`` 1-64
characters of ``[a-zA-Z0-9_.:-]``; ``ToolSpecification.strict``;
``OutputConfig.textFormat`` (json_schema); ``ToolChoice.tool`` "only supported by
Anthropic Claude 3 and Amazon Nova models") and the Bedrock user guide's "Supported models
and model features" for Converse (which families take a system prompt, images, tools and
stop sequences) and its pages on extended thinking (Claude: ``additionalModelRequestFields``
``thinking``; Nova 2: ``reasoningConfig``) and structured outputs.

The generic :class:`ModelRules` carries what every adapter understands; what only the
Bedrock adapter needs (system prompt, images, stop sequences, forced tool choice, how the
family thinks) is in :class:`Traits`, looked up with :func:`traits_for`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from interlock.providers.capabilities import ModelRules, ToolIdRule, register

# ToolUseId in the service model: min 1, max 64, pattern [a-zA-Z0-9_.:-]+ (matched whole).
BEDROCK_TOOL_ID = ToolIdRule(max_len=64, pattern=r"[a-zA-Z0-9_.:-]+")

# inferenceConfig's ranges hold for every model (the service refuses temperature > 1).
_RANGES = {"temperature": (0.0, 1.0), "top_p": (0.0, 1.0)}
# OpenAI parameters Converse has no field for; leaving them out keeps the answer's meaning.
_NO_FIELD = frozenset(
    {
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "parallel_tool_calls",
        "store",
        "service_tier",
        "prediction",
        "verbosity",
        "web_search_options",
    }
)
# Asked for and not available: the answer would lack what the client asked for.
# (The legacy functions / function_call are refused too: tools replaced them, and
# dropping them would change what is asked.)
_REFUSED = frozenset({"logprobs", "top_logprobs", "audio", "functions", "function_call"})

Thinking = Literal["claude", "nova", "none"]


@dataclass(frozen=True, slots=True)
class Traits:
    """Bedrock-only facts about a family (Converse's per-model feature table)."""

    system: bool = True  # takes a system prompt (else folded into the first user turn)
    images: bool = False
    tools: bool = True
    forced_tool_choice: bool = False  # toolChoice any / tool
    stop: bool = True
    thinking: Thinking = "none"
    # Where prompt-cache checkpoints (cachePoint) may go; empty: no prompt caching.
    cache: frozenset[str] = frozenset()


_CLAUDE_CACHE = frozenset({"system", "messages", "tools"})
_NOVA_CACHE = frozenset({"system", "messages"})


def _rules(
    family: str,
    patterns: tuple[str, ...],
    *,
    structured: bool = False,
    thinking: bool = False,
    claude: bool = False,
    notes: str = "",
) -> ModelRules:
    unsupported = set(_NO_FIELD)
    if not thinking:
        unsupported.add("reasoning_effort")
    return ModelRules(
        family=family,
        patterns=patterns,
        unsupported=frozenset(unsupported),
        refused=_REFUSED,
        # Current Claude models refuse temperature and top_p together: keep temperature.
        exclusive=(("temperature", "top_p"),) if claude else (),
        ranges=_RANGES,
        structured_output="native" if structured else "prompt",
        thinking=thinking,
        tool_strict=structured,
        tool_id=BEDROCK_TOOL_ID,
        notes=notes,
    )


_CLAUDE_45 = (
    "*anthropic.claude-sonnet-4-5*",
    "*anthropic.claude-haiku-4-5*",
    "*anthropic.claude-opus-4-5*",
    "*anthropic.claude-opus-4-1*",
    "*anthropic.claude-*-4-6*",
)
_CLAUDE_THINKING = (
    "*anthropic.claude-3-7-sonnet*",
    "*anthropic.claude-sonnet-4*",
    "*anthropic.claude-opus-4*",
)

TABLE: tuple[ModelRules, ...] = (
    _rules(
        "claude-4.5",
        _CLAUDE_45,
        structured=True,
        thinking=True,
        claude=True,
        notes="native structured output and strict tools; extended thinking",
    ),
    _rules("claude-thinking", _CLAUDE_THINKING, thinking=True, claude=True),
    _rules("claude-3.5-haiku", ("*anthropic.claude-3-5-haiku*",), claude=True),
    _rules("claude", ("*anthropic.claude*",), claude=True),
    _rules("nova-2", ("*amazon.nova-2*",), thinking=True),
    _rules("nova-micro", ("*amazon.nova-micro*",)),
    _rules("nova", ("*amazon.nova*",)),
    _rules("llama-vision", ("*meta.llama3-2-11b*", "*meta.llama3-2-90b*", "*meta.llama4*")),
    _rules("llama-tools", ("*meta.llama3-1*", "*meta.llama3-2*", "*meta.llama3-3*")),
    _rules("llama", ("*meta.llama*",)),
    _rules("mistral-instruct", ("*mistral.mistral-7b*", "*mistral.mixtral*")),
    _rules("pixtral", ("*mistral.pixtral*",)),
    _rules("mistral", ("*mistral.*",)),
    _rules("cohere-command-r", ("*cohere.command-r*",)),
    _rules("cohere", ("*cohere.*",)),
    _rules("other", ("*",)),
)

_TRAITS: dict[str, Traits] = {
    "claude-4.5": Traits(
        images=True, forced_tool_choice=True, thinking="claude", cache=_CLAUDE_CACHE
    ),
    "claude-thinking": Traits(
        images=True, forced_tool_choice=True, thinking="claude", cache=_CLAUDE_CACHE
    ),
    "claude-3.5-haiku": Traits(images=True, forced_tool_choice=True, cache=_CLAUDE_CACHE),
    "claude": Traits(images=True, forced_tool_choice=True),
    "nova-2": Traits(images=True, forced_tool_choice=True, thinking="nova", cache=_NOVA_CACHE),
    "nova-micro": Traits(images=False, forced_tool_choice=True, cache=_NOVA_CACHE),
    "nova": Traits(images=True, forced_tool_choice=True, cache=_NOVA_CACHE),
    "llama-vision": Traits(images=True, stop=False),
    "llama-tools": Traits(stop=False),
    "llama": Traits(tools=False, stop=False),
    "mistral-instruct": Traits(system=False, tools=False),
    "pixtral": Traits(images=True),
    "mistral": Traits(),
    "cohere-command-r": Traits(),
    "cohere": Traits(tools=False),
    # Unknown families: pass what Converse has a field for and let the service decide.
    "other": Traits(images=True, forced_tool_choice=True),
}


def traits_for(rules: ModelRules) -> Traits:
    return _TRAITS.get(rules.family, _TRAITS["other"])


# reasoning_effort -> Claude thinking budget_tokens (at least 1024, below maxTokens).
CLAUDE_BUDGET = {"low": 1024, "medium": 4096, "high": 16384, "xhigh": 32000, "max": 32000}
MIN_CLAUDE_BUDGET = 1024
# reasoning_effort -> Nova 2 reasoningConfig.maxReasoningEffort.
NOVA_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}

register("bedrock", TABLE)

__all__ = [
    "BEDROCK_TOOL_ID",
    "CLAUDE_BUDGET",
    "MIN_CLAUDE_BUDGET",
    "NOVA_EFFORT",
    "TABLE",
    "Traits",
    "traits_for",
]
