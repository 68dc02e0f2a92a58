"""GeminiAdapter over real HTTP against the simulated provider (Gemini API routes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from interlock.errors import UpstreamProtocolError, UpstreamRateLimited, UpstreamUnavailable
from interlock.providers.base import Target, UpstreamCall
from interlock.providers.gemini import GeminiAdapter
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest

SetFaults = Callable[[list[JSON]], Awaitable[None]]
ADAPTER = GeminiAdapter()
HELLO = {
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture
async def set_faults(sim_url: str) -> AsyncIterator[SetFaults]:
    async def install(faults: list[JSON]) -> None:
        async with aiohttp.ClientSession() as session:
            resp = await session.post(f"{sim_url}/_sim/reset", json={"faults": faults})
            assert resp.status == 200, await resp.text()

    yield install
    await install([])


def make(
    url: str, body: dict[str, Any], *, endpoint: Endpoint = Endpoint.CHAT, key: bool = True
) -> tuple[GatewayRequest, Target, UpstreamCall]:
    body = {"model": "smart", **body}
    req = GatewayRequest(
        endpoint=endpoint,
        model="smart",
        body=body,
        raw=orjson.dumps(body),
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )
    target = Target(
        name="sim-gemini",
        provider="gemini",
        model="gemini-2.5-flash",
        base_url=url,
        headers={"x-goog-api-key": "sim-key"} if key else {},
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
        assert resp.headers["content-type"].startswith("text/event-stream")
        try:
            async for data in resp.content.iter_any():
                chunks.extend(decoder.feed(data))
        except aiohttp.ClientPayloadError:
            pass  # a cut stream; close() must say so
    for c in chunks:
        ChatCompletionChunk.model_validate(c.obj)
    return chunks


async def test_sim_chat(sim_url: str) -> None:
    req, target, call = make(sim_url, HELLO)
    status, _, body = await send(call)
    assert status == 200, body
    done = ADAPTER.parse(req, target, status, body)
    completion = ChatCompletion.model_validate_json(done.body)
    assert completion.model == "smart"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert done.usage is not None and not done.usage.estimated
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0


async def test_sim_candidates(sim_url: str) -> None:
    req, target, call = make(sim_url, {**HELLO, "n": 2, "max_tokens": 5})
    status, _, body = await send(call)
    completion = ChatCompletion.model_validate_json(ADAPTER.parse(req, target, status, body).body)
    assert [c.index for c in completion.choices] == [0, 1]


async def test_sim_stream(sim_url: str) -> None:
    req, target, call = make(
        sim_url, {**HELLO, "stream": True, "stream_options": {"include_usage": True}}
    )
    decoder = ADAPTER.stream_decoder(req, target)
    chunks = await send_stream(call, decoder)
    chunks.extend(decoder.close())
    assert decoder.completed
    text = "".join(
        c.obj["choices"][0]["delta"].get("content") or "" for c in chunks if c.obj["choices"]
    )
    assert text
    finishes = [c.obj["choices"][0]["finish_reason"] for c in chunks if c.obj["choices"]]
    assert finishes[-1] == "stop"
    assert chunks[-1].obj["choices"] == [] and chunks[-1].obj["usage"]["completion_tokens"] > 0
    assert decoder.usage is not None and not decoder.usage.estimated


async def test_sim_tools_round_trip(sim_url: str) -> None:
    body = {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    req, target, call = make(sim_url, body)
    status, _, raw = await send(call)
    assert status == 200, raw
    completion = ChatCompletion.model_validate_json(ADAPTER.parse(req, target, status, raw).body)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    tool_call = choice.message.tool_calls[0]  # type: ignore[index]
    assert tool_call.function.name == "get_weather"  # type: ignore[union-attr]
    # Second turn: the tool result goes back as a functionResponse.
    follow = {
        "messages": [
            *body["messages"],
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": tool_call.id, "content": '{"temp_c": 21}'},
        ],
        "tools": [TOOL],
        "stream": True,
    }
    req2, target2, call2 = make(sim_url, follow)
    decoder = ADAPTER.stream_decoder(req2, target2)
    chunks = await send_stream(call2, decoder)
    chunks.extend(decoder.close())
    assert decoder.completed


async def test_sim_cut_stream(sim_url: str, set_faults: SetFaults) -> None:
    await set_faults([{"type": "cut_stream", "after_chunks": 2, "count": 1}])
    req, target, call = make(sim_url, {**HELLO, "stream": True})
    decoder = ADAPTER.stream_decoder(req, target)
    chunks = await send_stream(call, decoder)
    assert chunks  # some text arrived before the cut
    with pytest.raises(UpstreamProtocolError):
        decoder.close()
    assert not decoder.completed
    assert decoder.usage is not None and decoder.usage.estimated
    assert decoder.usage.prompt_tokens > 0


async def test_sim_malformed_stream(sim_url: str, set_faults: SetFaults) -> None:
    await set_faults([{"type": "malformed", "count": 1}])
    req, target, call = make(sim_url, {**HELLO, "stream": True})
    decoder = ADAPTER.stream_decoder(req, target)
    with pytest.raises(UpstreamProtocolError):
        await send_stream(call, decoder)
        decoder.close()


async def test_sim_rate_limited(sim_url: str, set_faults: SetFaults) -> None:
    await set_faults(
        [
            {
                "type": "status",
                "status": 429,
                "retry_after": 3,
                "message": "Quota exceeded",
                "count": 1,
            }
        ]
    )
    _, _, call = make(sim_url, HELLO)
    status, headers, body = await send(call)
    assert status == 429
    err = ADAPTER.error(status, headers, body)
    assert isinstance(err, UpstreamRateLimited)
    assert err.retry_after == 3.0 and "Quota exceeded" in err.message


async def test_sim_without_key(sim_url: str) -> None:
    _, _, call = make(sim_url, HELLO, key=False)
    status, headers, body = await send(call)
    assert status == 403
    err = ADAPTER.error(status, headers, body)
    assert isinstance(err, UpstreamUnavailable) and "credentials" in err.message


async def test_sim_embeddings(sim_url: str) -> None:
    req, target, call = make(
        sim_url,
        {"input": ["alpha", "beta gamma"], "dimensions": 8},
        endpoint=Endpoint.EMBEDDINGS,
    )
    status, _, body = await send(call)
    assert status == 200, body
    done = ADAPTER.parse(req, target, status, body)
    emb = CreateEmbeddingResponse.model_validate_json(done.body)
    assert [len(d.embedding) for d in emb.data] == [8, 8]
    assert done.usage is not None and done.usage.prompt_tokens > 0
