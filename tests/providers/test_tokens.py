"""The token counts charged when a provider reports no usage (providers/tokens.py)."""

from __future__ import annotations

import orjson

from interlock.providers.tokens import (
    FOLD_BYTES,
    Generated,
    answer_usage,
    count_request_tokens,
    count_tokens,
    estimate_request_tokens,
    stream_usage,
)
from interlock.types import Usage

# The OpenAI cookbook's example ("How to count tokens with tiktoken"): the API reported
# 129 prompt tokens for it on gpt-3.5-turbo-0613 and gpt-4-0613 (cl100k_base models).
COOKBOOK = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client deliverable."},
]  # fmt: skip


def test_known_counts() -> None:
    assert count_tokens("tiktoken is great!") == 6  # t|ik|token| is| great|!
    assert count_tokens("hello world") == 2
    assert count_tokens("") == 0
    assert count_request_tokens({"messages": COOKBOOK}) == 129


def test_special_token_text_is_plain_text() -> None:
    # A client may send the text of a special token; it is counted, never an error.
    assert count_tokens("<|endoftext|>") > 1


def test_chat_parts_tool_calls_and_results_count() -> None:
    base = count_request_tokens({"messages": [{"role": "user", "content": "hi"}]})
    assert base == 3 + 3 + 1 + 1  # priming + framing + "user" + "hi"
    parts = {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url",
             "image_url": {"url": "data:,"}}]}  # fmt: skip
    assert count_request_tokens({"messages": [parts]}) == base + 85
    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
            "function": {"name": "lookup", "arguments": '{"city": "Paris"}'}}]}  # fmt: skip
    result = {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 degrees"}
    history = count_request_tokens({"messages": [{"role": "user", "content": "hi"}, call, result]})
    expected = (base + 3 + count_tokens("assistant") + count_tokens("lookup")
                + count_tokens('{"city": "Paris"}') + 3 + count_tokens("tool")
                + count_tokens("c1") + count_tokens("sunny, 21 degrees"))  # fmt: skip
    assert history == expected
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    with_tools = count_request_tokens({"messages": [{"role": "user", "content": "hi"}],
                                       "tools": tools})  # fmt: skip
    assert with_tools == base + count_tokens(orjson.dumps(tools).decode())


def test_prompt_forms_of_completions_and_embeddings() -> None:
    assert count_request_tokens({"prompt": "hello world"}) == 2
    assert count_request_tokens({"prompt": [1, 2, 3, 4]}) == 4  # token ids: one each
    assert count_request_tokens({"prompt": [[1, 2], [3], "hello world"]}) == 5
    assert count_request_tokens({"input": ["hello", "world"]}) == 2
    assert count_request_tokens({"prompt": "hello", "suffix": " world"}) == 2
    assert count_request_tokens({}) == 0


def test_the_admission_estimate_stays_a_character_rule() -> None:
    text = "x" * 4000
    assert estimate_request_tokens({"prompt": text}) == 1000
    assert estimate_request_tokens({"messages": [{"role": "user", "content": text}]}) == (
        3 + 3 + 1 + 1000
    )


def _delta(index: int, finish: str | None = None, **delta: object) -> dict[str, object]:
    return {"choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def test_generated_counts_text_per_choice_with_a_floor_of_one_per_delta() -> None:
    g = Generated()
    for piece in ["The", " signal", " is", " clear"]:
        g.add(_delta(0, content=piece))
    assert g.tokens() == 4
    # Five deltas of JSON are three tokens for the tokenizer ({"|a|":), but a provider
    # flushes generated tokens as they come: at least one per delta.
    h = Generated()
    for piece in ["{", '"', "a", '"', ":"]:
        h.add({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": piece}}]}}]})  # fmt: skip
    assert count_tokens('{"a":') == 3 and h.tokens() == 5


def test_in_flight_adds_one_delta_per_open_choice() -> None:
    g = Generated()
    for piece in ["one", " two", " three"]:
        g.add(_delta(0, content=piece))
        g.add(_delta(1, content=piece))
    g.add(_delta(1, finish="stop"))
    assert g.tokens() == 6
    assert g.tokens(in_flight=True) == 7  # choice 0 was still generating; 1 had finished
    assert g.tokens() == 6  # counting reads only


def test_generated_counts_reasoning_refusal_names_and_completions_text() -> None:
    g = Generated()
    g.add(_delta(0, reasoning_content="thinking hard"))
    g.add(_delta(0, refusal="no"))
    g.add({"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c", "function": {"name": "lookup", "arguments": ""}}]}}]})  # fmt: skip
    g.add({"choices": [{"index": 1, "text": "hello world"}]})
    assert g.tokens() == count_tokens("thinking hardnolookup") + 2


def test_raw_chunks_are_parsed_only_when_counted_and_keep_their_order() -> None:
    g = Generated()
    g.add_raw(orjson.dumps(_delta(0, content="hello")))
    g.add(_delta(0, content=" world"))  # a parsed chunk between raw ones
    g.add_raw(orjson.dumps(_delta(0, content="!")))
    g.add_raw(b"not json")  # a malformed event is skipped by the count
    assert g.tokens() == count_tokens("hello world!")


def test_a_long_raw_stream_is_folded_to_text() -> None:
    g = Generated()
    event = orjson.dumps(_delta(0, content=" token"))
    n = FOLD_BYTES // len(event) + 10
    for _ in range(n):
        g.add_raw(event)
    assert len(g._raw) < n  # folded: the text is kept, not every event's bytes
    assert g.tokens() == n


def test_stream_usage_prefers_what_the_provider_reported() -> None:
    g = Generated()
    g.add(_delta(0, content="hello world"))
    body = {"messages": [{"role": "user", "content": "hi"}]}
    assert stream_usage(body, None, g, False) == Usage(8, 2, estimated=True)
    reported = Usage(prompt_tokens=500, completion_tokens=7, cached_tokens=100)
    assert stream_usage(body, reported, g, False) == Usage(500, 7, 100, estimated=True)


def test_answer_usage_counts_a_whole_answer() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hello world"},
                           "finish_reason": "stop"}]}  # fmt: skip
    assert answer_usage(body, answer) == Usage(8, 2, estimated=True)
