"""The official openai SDK works unchanged against Interlock."""

from __future__ import annotations

import json

import openai
import pytest

from interlock.sim import SimControl
from tests.support.gateway import GatewayProcess

MSG = [{"role": "user", "content": "Say something about railways."}]


def test_chat_plain(oai: openai.OpenAI, sim: SimControl) -> None:
    r = oai.chat.completions.create(model="chat", messages=MSG)
    assert r.choices[0].message.content
    assert r.usage is not None and r.usage.completion_tokens > 0
    served = sim.ledger()["totals"]
    assert served["completion_tokens"] == r.usage.completion_tokens
    assert served["prompt_tokens"] == r.usage.prompt_tokens


def test_chat_raw_response_headers(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(model="chat", messages=MSG)
    assert raw.headers["x-interlock-deployment"] == "sim-small"
    assert raw.headers["x-request-id"]


def test_chat_stream_with_and_without_usage(oai: openai.OpenAI, sim: SimControl) -> None:
    chunks = list(oai.chat.completions.create(model="chat", messages=MSG, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.usage is None for c in chunks)  # not asked for: not sent
    chunks = list(
        oai.chat.completions.create(
            model="chat", messages=MSG, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == sim.ledger()["entries"][-1]["completion_tokens"]


def test_stream_matches_plain_answer(oai: openai.OpenAI) -> None:
    plain = oai.chat.completions.create(model="chat", messages=MSG, seed=3)
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in oai.chat.completions.create(model="chat", messages=MSG, seed=3, stream=True)
        if c.choices
    )
    assert streamed == plain.choices[0].message.content


def test_seed_is_deterministic(oai: openai.OpenAI) -> None:
    a = oai.chat.completions.create(model="chat", messages=MSG, seed=11)
    b = oai.chat.completions.create(model="chat", messages=MSG, seed=11)
    c = oai.chat.completions.create(model="chat", messages=MSG, seed=12)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].message.content != c.choices[0].message.content


def test_n_stop_and_logprobs(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(model="chat", messages=MSG, n=2, logprobs=True, top_logprobs=2)
    assert len(r.choices) == 2
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content and len(lp.content[0].top_logprobs) == 2
    full = r.choices[0].message.content or ""
    word = full.split()[2]
    cut = oai.chat.completions.create(model="chat", messages=MSG, stop=[word])
    assert word not in (cut.choices[0].message.content or "")


def test_tools_round_trip(oai: openai.OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                    "required": ["city", "days"],
                },
            },
        }
    ]
    for model in ("chat", "claude", "gemini", "bedrock"):
        r = oai.chat.completions.create(
            model=model, messages=MSG, tools=tools, tool_choice="required"
        )
        call = r.choices[0].message.tool_calls[0]  # type: ignore[index]
        args = json.loads(call.function.arguments)
        assert call.function.name == "get_weather" and isinstance(args["city"], str), model
        assert r.choices[0].finish_reason == "tool_calls", model
        follow = oai.chat.completions.create(
            model=model,
            tools=tools,
            messages=[
                *MSG,
                {"role": "assistant", "tool_calls": [call.model_dump()]},
                {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'},
            ],
        )
        assert follow.choices[0].message.content, model


def test_response_format_json_schema(oai: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    r = oai.chat.completions.create(
        model="chat",
        messages=MSG,
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
    )
    data = json.loads(r.choices[0].message.content or "")
    assert isinstance(data["name"], str) and isinstance(data["age"], int)


def test_embeddings_single_and_list(oai: openai.OpenAI) -> None:
    one = oai.embeddings.create(model="sim-embed", input="hello")
    many = oai.embeddings.create(model="sim-embed", input=["hello", "world", "again"])
    assert len(one.data) == 1 and len(many.data) == 3
    assert one.data[0].embedding == many.data[0].embedding  # deterministic per text
    assert [d.index for d in many.data] == [0, 1, 2]


def test_models_list(oai: openai.OpenAI) -> None:
    ids = {m.id for m in oai.models.list()}
    assert {"chat", "claude", "gemini", "bedrock", "sim-embed"} <= ids
    assert oai.models.retrieve("chat").id == "chat"


def test_exception_classes(gateway: GatewayProcess, oai: openai.OpenAI, sim: SimControl) -> None:
    bad = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-il-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="chat", messages=MSG)
    bad.close()
    with pytest.raises(openai.NotFoundError) as nf:
        oai.chat.completions.create(model="no-such-model", messages=MSG)
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as br:
        oai.chat.completions.create(model="chat", messages=MSG, temperature=7)
    assert br.value.param == "temperature"
    # Longer than resilience.retry.max_retry_after_s: the gateway does not wait it out.
    sim.set_faults([{"type": "status", "status": 429, "retry_after": 30, "count": 1}])
    with pytest.raises(openai.RateLimitError) as rl:
        oai.chat.completions.create(model="chat", messages=MSG)
    assert rl.value.response.headers["retry-after"] == "30"


def test_legacy_completions(oai: openai.OpenAI) -> None:
    r = oai.completions.create(model="chat", prompt="Once upon a time", max_tokens=5)
    assert r.choices[0].text and r.usage is not None and r.usage.completion_tokens <= 5
    with pytest.raises(openai.BadRequestError):
        oai.completions.create(model="claude", prompt="x")
