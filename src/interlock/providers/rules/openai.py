"""OpenAI model families on OpenAI (kind ``openai``), Azure OpenAI (``azure``, classic and
v1) and OpenAI-compatible servers (``openai_compatible``: vLLM, Ollama, llama.cpp, TGI...).

Sources, per rule (docs/providers.md renders this table):

* The vendored OpenAPI spec (sim/specs/openai/ORIGIN.md: openai/openai-openapi f85dbe2,
  ``info.version`` 2.3.0), ``CreateChatCompletionRequest``: ``max_tokens`` is *deprecated in
  favour of max_completion_tokens and not compatible with o-series models*, so it is
  translated on OpenAI and Azure for every model; ``functions`` / ``function_call`` are
  *deprecated in favour of tools / tool_choice* (translated, every kind);
  ``reasoning_effort`` is ``none | minimal | low | medium | high | xhigh | max``, *not all
  reasoning models support every value*.
* OpenAI's reasoning guide (and Azure's "reasoning models" page, which lists the same
  parameters as not supported): o-series and GPT-5 reasoning models take no
  ``temperature``, ``top_p``, ``presence_penalty``, ``frequency_penalty``, ``logit_bias``,
  ``logprobs`` / ``top_logprobs``; GPT-5.1 and later take ``temperature``, ``top_p`` and
  ``logprobs`` only with ``reasoning_effort: none`` (their default). o3, o4-mini and the
  GPT-5 reasoning families refuse ``stop`` (400 ``unsupported_parameter``, "'stop' is
  not supported with this model"; o1 and o3-mini take it): dropped with a warning, as
  the client can still cut the text at its stop sequence. Effort values per
  family: o-series low/medium/high; GPT-5 minimal/low/medium/high; GPT-5.1
  none/low/medium/high; GPT-5.2 and later add xhigh. A value a family does not take is
  moved to the nearest one it does (with a warning).
* Tool-call ids: OpenAI refuses a replayed ``tool_calls[].id`` longer than 40 characters
  (400 ``string_above_max_length``, ``param`` ``messages[N].tool_calls[0].id``), which a
  conversation failed over from Gemini or Bedrock carries: such ids are normalised
  (capabilities.normalise_tool_id, stable, the tool result's ``tool_call_id`` the same way).
  OpenAI-compatible endpoints get the same rule: many are OpenAI behind a proxy
  (OpenRouter, LiteLLM, APIM) and refuse such ids the same way; self-hosted servers treat
  ids as opaque pairing keys, so a shorter stable id changes nothing for them.

Sampling knobs a reasoning model fixes itself are dropped with a warning; ``logprobs`` is
refused there (the client asked for data the answer cannot carry). Azure deployments are
looked up by their deployment name: name a deployment after its model (``o3-mini``,
``gpt-4o``) for its family's rules to apply; any other name gets the permissive catch-all.
OpenAI-compatible servers stay permissive: everything passes through but the canonical
``thinking`` extension (mapped to ``reasoning_effort`` on ``gpt-oss`` models, which take
it, else dropped with a warning) and ``functions`` / ``function_call``.
"""

from __future__ import annotations

from interlock.providers.capabilities import ModelRules, ToolIdRule, register

# OpenAI: a replayed tool_calls[].id may be at most 40 characters (any characters).
OPENAI_TOOL_ID = ToolIdRule(max_len=40, pattern=r"(?s).+")

_SAMPLING = frozenset({"temperature", "top_p"})
_REASONING_UNSUPPORTED = frozenset(
    {"presence_penalty", "frequency_penalty", "logit_bias", "top_logprobs"}
)

# Effort values each reasoning family takes, and the value it uses when none is given.
EFFORTS: dict[str, tuple[str, ...]] = {
    "o-series": ("low", "medium", "high"),
    "o3/o4": ("low", "medium", "high"),
    "gpt-5": ("minimal", "low", "medium", "high"),
    "gpt-5.1": ("none", "low", "medium", "high"),
    "gpt-5.2+": ("none", "low", "medium", "high", "xhigh"),
    "gpt-oss": ("low", "medium", "high"),
}
DEFAULT_EFFORT: dict[str, str] = {"gpt-5.1": "none", "gpt-5.2+": "none"}
# Families that take temperature / top_p / logprobs while reasoning_effort is "none".
SAMPLING_WITHOUT_REASONING = frozenset({"gpt-5.1", "gpt-5.2+"})
# The order effort values are compared in (the nearest value a family takes wins).
EFFORT_ORDER = ("none", "minimal", "low", "medium", "high", "xhigh", "max")


def _reasoning(
    family: str, patterns: tuple[str, ...], notes: str, *, stop: bool = False
) -> ModelRules:
    return ModelRules(
        family=family,
        patterns=patterns,
        unsupported=_SAMPLING | _REASONING_UNSUPPORTED | frozenset(() if stop else ("stop",)),
        refused=frozenset({"logprobs"}),
        structured_output="native",
        thinking=True,
        tool_strict=True,
        tool_id=OPENAI_TOOL_ID,
        notes=notes,
    )


def _hosted(kind: str) -> tuple[ModelRules, ...]:
    del kind  # OpenAI and Azure serve the same model families
    return (
        # gpt-5-chat-latest and friends are chat models, not reasoning ones.
        ModelRules(
            family="gpt-5-chat",
            patterns=("gpt-5*-chat*",),
            unsupported=frozenset({"reasoning_effort"}),
            structured_output="native",
            tool_strict=True,
            tool_id=OPENAI_TOOL_ID,
            notes="chat model: every sampling parameter, no reasoning_effort",
        ),
        _reasoning(
            "gpt-5.2+",
            ("gpt-5.[2-9]*", "gpt-5.1[0-9]*", "gpt-[6-9]*"),
            "temperature / top_p / logprobs only with reasoning_effort none (the default)",
        ),
        _reasoning(
            "gpt-5.1",
            ("gpt-5.1*",),
            "temperature / top_p / logprobs only with reasoning_effort none (the default)",
        ),
        _reasoning("gpt-5", ("gpt-5*",), "reasoning effort minimal to high"),
        # o1 and o3-mini take stop sequences; o3 and o4-mini refuse them.
        _reasoning("o-series", ("o1*", "o3-mini*"), "reasoning effort low to high", stop=True),
        _reasoning("o3/o4", ("o3*", "o4*"), "reasoning effort low to high; no stop"),
        ModelRules(
            family="gpt-4o/4.1",
            patterns=("gpt-4o*", "gpt-4.1*", "chatgpt-4o*", "gpt-4-turbo*", "gpt-4.5*"),
            unsupported=frozenset({"reasoning_effort"}),
            structured_output="native",
            tool_strict=True,
            tool_id=OPENAI_TOOL_ID,
            notes="every sampling parameter; no reasoning_effort",
        ),
        ModelRules(
            family="default",
            patterns=("*",),
            structured_output="native",
            tool_strict=True,
            tool_id=OPENAI_TOOL_ID,
            notes="passed through as sent (max_tokens translated)",
        ),
    )


register("openai", _hosted("openai"))
register("azure", _hosted("azure"))
register(
    "openai_compatible",
    (
        ModelRules(
            family="gpt-oss",
            patterns=("gpt-oss*", "*/gpt-oss*"),
            structured_output="native",
            thinking=True,
            tool_strict=True,
            tool_id=OPENAI_TOOL_ID,
            notes="reasoning_effort low to high",
        ),
        ModelRules(
            family="openai-compatible",
            patterns=("*",),
            structured_output="native",
            tool_strict=True,
            tool_id=OPENAI_TOOL_ID,
            notes="passed through as sent",
        ),
    ),
)

__all__ = [
    "DEFAULT_EFFORT",
    "EFFORTS",
    "EFFORT_ORDER",
    "OPENAI_TOOL_ID",
    "SAMPLING_WITHOUT_REASONING",
]
