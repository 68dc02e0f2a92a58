"""BedrockAdapter + SigV4Auth over real HTTP against the simulated provider."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from interlock.errors import (
    UpstreamBadRequest,
    UpstreamProtocolError,
    UpstreamRateLimited,
    UpstreamUnavailable,
)
from interlock.providers.aws_auth import SigV4Auth
from interlock.providers.base import Target, UpstreamCall
from interlock.providers.bedrock import BedrockAdapter
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest

SetFaults = Callable[[list[JSON]], Awaitable[None]]
ADAPTER = BedrockAdapter()
AUTH = SigV4Auth("us-east-1", access_key_id="AKIDSIM", secret_access_key="sim-secret")
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


async def make(
    url: str, body: dict[str, Any], *, sign: bool = True
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
        name="sim-bedrock",
        provider="bedrock",
        model="anthropic.claude-3-5-haiku-20241022-v1:0",
        base_url=url,
        region="us-east-1",
    )
    call = ADAPTER.build(req, target)
    if sign:
        await AUTH.apply(call)
    return req, target, call


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
        assert resp.headers["content-type"] == "application/vnd.amazon.eventstream"
        try:
            async for data in resp.content.iter_any():
                chunks.extend(decoder.feed(data))
        except aiohttp.ClientPayloadError:
            pass  # a cut stream; close() must say so
    for c in chunks:
        ChatCompletionChunk.model_validate(c.obj)
    return chunks


async def test_sim_converse(sim_url: str) -> None:
    req, target, call = await make(sim_url, HELLO)
    status, _, body = await send(call)
    assert status == 200, body
    done = ADAPTER.parse(req, target, status, body)
    completion = ChatCompletion.model_validate_json(done.body)
    assert completion.model == "smart"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert done.usage is not None and not done.usage.estimated and done.usage.prompt_tokens > 0


async def test_sim_converse_stream(sim_url: str) -> None:
    req, target, call = await make(
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
    assert chunks[-1].obj["choices"] == [] and chunks[-1].obj["usage"]["prompt_tokens"] > 0
    assert decoder.usage is not None and not decoder.usage.estimated


async def test_sim_tool_stream_and_result(sim_url: str) -> None:
    body = {
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [TOOL],
        "tool_choice": "required",
        "stream": True,
    }
    req, target, call = await make(sim_url, body)
    decoder = ADAPTER.stream_decoder(req, target)
    chunks = await send_stream(call, decoder)
    chunks.extend(decoder.close())
    deltas = [
        tc
        for c in chunks
        if c.obj["choices"]
        for tc in c.obj["choices"][0]["delta"].get("tool_calls") or ()
    ]
    assert deltas[0]["function"]["name"] == "get_weather"
    args = orjson.loads("".join(d["function"]["arguments"] for d in deltas))
    assert isinstance(args, dict)
    finishes = [c.obj["choices"][0]["finish_reason"] for c in chunks if c.obj["choices"]]
    assert finishes[-1] == "tool_calls"
    follow = {
        "messages": [
            *body["messages"],
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": deltas[0]["id"],
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": orjson.dumps(args).decode(),
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": deltas[0]["id"], "content": '{"temp_c": 21}'},
        ],
        "tools": [TOOL],
    }
    req2, target2, call2 = await make(sim_url, follow)
    status, _, raw = await send(call2)
    assert status == 200, raw
    ChatCompletion.model_validate_json(ADAPTER.parse(req2, target2, status, raw).body)


async def test_sim_cut_stream(sim_url: str, set_faults: SetFaults) -> None:
    await set_faults([{"type": "cut_stream", "after_chunks": 2, "count": 1}])
    req, target, call = await make(sim_url, {**HELLO, "stream": True})
    decoder = ADAPTER.stream_decoder(req, target)
    await send_stream(call, decoder)
    with pytest.raises(UpstreamProtocolError):
        decoder.close()
    assert not decoder.completed
    assert decoder.usage is not None and decoder.usage.estimated


async def test_sim_malformed_stream(sim_url: str, set_faults: SetFaults) -> None:
    await set_faults([{"type": "malformed", "count": 1}])
    req, target, call = await make(sim_url, {**HELLO, "stream": True})
    decoder = ADAPTER.stream_decoder(req, target)
    with pytest.raises(UpstreamProtocolError):
        await send_stream(call, decoder)
        decoder.close()


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, UpstreamRateLimited), (400, UpstreamBadRequest), (503, UpstreamUnavailable)],
)
async def test_sim_errors(
    sim_url: str, set_faults: SetFaults, status: int, error: type[Exception]
) -> None:
    await set_faults([{"type": "status", "status": status, "message": "simulated", "count": 1}])
    _, _, call = await make(sim_url, HELLO)
    got, headers, body = await send(call)
    assert got == status
    err = ADAPTER.error(got, headers, body)
    assert isinstance(err, error) and "simulated" in err.message


async def test_sim_unsigned(sim_url: str) -> None:
    _, _, call = await make(sim_url, HELLO, sign=False)
    status, headers, body = await send(call)
    assert status == 403
    err = ADAPTER.error(status, headers, body)
    assert isinstance(err, UpstreamUnavailable) and "credentials" in err.message
