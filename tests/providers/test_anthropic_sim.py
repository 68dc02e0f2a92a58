"""AnthropicAdapter over real HTTP against the simulated provider's ``POST /v1/messages``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from interlock.errors import UpstreamProtocolError, UpstreamUnavailable
from interlock.providers.anthropic import AnthropicAdapter
from interlock.providers.base import Target, UpstreamCall
from interlock.sim import SimControl
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest, Usage

SetFaults = Callable[[list[JSON]], Awaitable[None]]

ADAPTER = AnthropicAdapter()
HEADERS = {"x-api-key": "sk-ant-sim", "anthropic-version": "2023-06-01"}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def anthropic_sim(sim: SimControl, sim_url: str) -> str:
    """The shared simulator (a subprocess), reset to its startup configuration."""
    return sim_url


@pytest.fixture
async def set_faults(sim: SimControl) -> AsyncIterator[SetFaults]:
    """Install simulator faults for one test and clear them afterwards."""

    async def install(faults: list[JSON]) -> None:
        await asyncio.to_thread(sim.set_faults, faults)

    yield install
    await install([])


def make(
    url: str, body: dict[str, Any], *, headers: dict[str, str] | None = None
) -> tuple[GatewayRequest, Target, UpstreamCall]:
    body = {"model": "smart", **body}
    req = GatewayRequest(
        endpoint=Endpoint.CHAT,
        model="smart",
        body=body,
        raw=orjson.dumps(body),
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )
    target = Target(
        name="sim-claude",
        provider="anthropic",
        model="claude-sim-1",
        base_url=url,
        headers=HEADERS if headers is None else headers,
    )
    return req, target, ADAPTER.build(req, target)


async def send(call: UpstreamCall) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(call.method, call.url, headers=call.headers, data=call.body) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


async def send_stream(call: UpstreamCall, decoder: Any) -> list[Chunk]:
    chunks: list[Chunk] = []
    async with (
        aiohttp.ClientSession() as session,
        session.request(call.method, call.url, headers=call.headers, data=call.body) as resp,
    ):
        assert resp.status == 200
        try:
            async for data in resp.content.iter_any():
                chunks.extend(decoder.feed(data))
        except aiohttp.ClientPayloadError:
            pass  # a cut stream; close() below must say so
    for c in chunks:
        ChatCompletionChunk.model_validate(c.obj)
    return chunks


HELLO = {
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
}


async def test_sim_completion(anthropic_sim: str) -> None:
    req, target, call = make(anthropic_sim, {**HELLO, "max_tokens": 50})
    status, _, body = await send(call)
    assert status == 200, body
    completion = ADAPTER.parse(req, target, status, body)
    data = orjson.loads(completion.body)
    ChatCompletion.model_validate(data)
    assert data["model"] == "smart"
    assert data["choices"][0]["finish_reason"] in ("stop", "length")
    assert isinstance(data["choices"][0]["message"]["content"], str)
    assert isinstance(completion.usage, Usage)
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert not completion.usage.estimated


async def test_sim_stream(anthropic_sim: str) -> None:
    req, target, call = make(
        anthropic_sim, {**HELLO, "stream": True, "stream_options": {"include_usage": True}}
    )
    decoder = ADAPTER.stream_decoder(req, target)
    chunks = await send_stream(call, decoder)
    chunks.extend(decoder.close())
    assert decoder.completed
    assert chunks[0].obj["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(
        c.obj["choices"][0]["delta"].get("content") or "" for c in chunks if c.obj["choices"]
    )
    assert text
    assert chunks[-1].obj["choices"] == []
    usage = decoder.usage
    assert chunks[-1].obj["usage"]["completion_tokens"] == usage.completion_tokens > 0
    assert usage.prompt_tokens > 0 and not usage.estimated


async def test_sim_tool_call_round_trip(anthropic_sim: str) -> None:
    body = {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [TOOL],
        "tool_choice": "required",
    }
    req, target, call = make(anthropic_sim, body)
    status, _, raw = await send(call)
    assert status == 200, raw
    data = orjson.loads(ADAPTER.parse(req, target, status, raw).body)
    choice = data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    tool_call = choice["message"]["tool_calls"][0]
    assert tool_call["function"]["name"] == "get_weather"
    args = orjson.loads(tool_call["function"]["arguments"])
    assert isinstance(args, dict)

    # The answer goes back as history: assistant tool_calls + a tool message.
    follow = {
        **body,
        "tool_choice": "auto",
        "messages": [
            *body["messages"],  # type: ignore[list-item]
            choice["message"],
            {"role": "tool", "tool_call_id": tool_call["id"], "content": "18C"},
        ],
        "stream": True,
    }
    req2, target2, call2 = make(anthropic_sim, follow)
    decoder = ADAPTER.stream_decoder(req2, target2)
    chunks = await send_stream(call2, decoder)
    chunks.extend(decoder.close())
    assert decoder.completed
    assert chunks[-1].obj["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")


async def test_sim_stream_tool_arguments_assemble(anthropic_sim: str) -> None:
    body = {
        "messages": [{"role": "user", "content": "Weather in Rome?"}],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "stream": True,
    }
    req, target, call = make(anthropic_sim, body)
    decoder = ADAPTER.stream_decoder(req, target)
    chunks = await send_stream(call, decoder)
    chunks.extend(decoder.close())
    calls = [
        tc
        for c in chunks
        if c.obj["choices"]
        for tc in c.obj["choices"][0]["delta"].get("tool_calls") or ()
    ]
    assert calls[0]["function"]["name"] == "get_weather"
    assert isinstance(orjson.loads("".join(tc["function"]["arguments"] for tc in calls)), dict)
    assert chunks[-1].obj["choices"][0]["finish_reason"] == "tool_calls"


async def test_sim_overloaded(anthropic_sim: str, set_faults: SetFaults) -> None:
    await set_faults(
        [{"type": "status", "status": 529, "retry_after": 2, "message": "Overloaded", "count": 1}],
    )
    _, _, call = make(anthropic_sim, HELLO)
    status, headers, body = await send(call)
    assert status == 529
    err = ADAPTER.error(status, {k.lower(): v for k, v in headers.items()}, body)
    assert isinstance(err, UpstreamUnavailable)
    assert err.retry_after == 2.0
    assert "Overloaded" in err.message


async def test_sim_cut_stream(anthropic_sim: str, set_faults: SetFaults) -> None:
    await set_faults([{"type": "cut_stream", "after_chunks": 2, "count": 1}])
    req, target, call = make(anthropic_sim, {**HELLO, "stream": True})
    decoder = ADAPTER.stream_decoder(req, target)
    await send_stream(call, decoder)
    with pytest.raises(UpstreamProtocolError):
        decoder.close()
    assert not decoder.completed
    usage = decoder.usage
    assert usage.prompt_tokens > 0  # from message_start, before the cut
    assert usage.estimated


async def test_sim_without_key_is_gateway_problem(anthropic_sim: str) -> None:
    _, _, call = make(anthropic_sim, HELLO, headers={"anthropic-version": "2023-06-01"})
    status, headers, body = await send(call)
    assert status == 401
    assert isinstance(ADAPTER.error(status, headers, body), UpstreamUnavailable)
