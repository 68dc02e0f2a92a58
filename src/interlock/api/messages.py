"""``POST /v1/messages``: the Anthropic Messages API in front of any provider.

The request is translated to the canonical OpenAI shape, runs through the one request
path, and the answer (or stream) is translated back; errors use Anthropic's error shape.
"""

from __future__ import annotations

import time

import orjson

from interlock.api import validate
from interlock.api.http import Ctx, parse_json_object
from interlock.api.messages_format import (
    AnthropicStreamEncoder,
    anthropic_error_body,
    messages_to_openai,
    openai_to_message,
)
from interlock.api.openai_routes import (
    cache_mode,
    client_timeout,
    cost_header,
    label_model,
    request_tags,
    route_headers,
)
from interlock.api.stream import run_until_disconnect
from interlock.errors import InterlockError
from interlock.gateway import Gateway
from interlock.providers.tokens import estimate_request_tokens
from interlock.spend.cost import format_usd
from interlock.types import GatewayRequest, GatewayResponse, GatewayStream


async def create_message(ctx: Ctx, gw: Gateway) -> None:
    try:
        await _create(ctx, gw)
    except InterlockError as err:
        if ctx.status == 0:
            ctx.error_code = err.code
            await ctx.respond(
                err.status, anthropic_error_body(err.status, err.code, err.message), err.headers()
            )


async def _create(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    cfg = gw.settings.server
    raw = await ctx.read_body(cfg.max_body_bytes)
    body = parse_json_object(ctx, raw, cfg.max_json_depth)
    label_model(ctx, gw, body.get("model"))
    oa = messages_to_openai(body)
    if oa.get("stream"):
        oa["stream_options"] = {"include_usage": True}
    req = validate.chat_request(oa, b"", cfg)
    req.request_id = ctx.request_id
    req.timeout_s = client_timeout(ctx)
    req.tags = request_tags(ctx, body)
    req.cache_mode = cache_mode(ctx)
    req.cache_control = ctx.header(b"cache-control")
    result = await gw.handle(req, principal)
    if isinstance(result, GatewayResponse):
        message = openai_to_message(orjson.loads(result.body), req.model)
        await ctx.respond(
            200, orjson.dumps(message), route_headers(result) + cost_header(result.cost_usd)
        )
        return
    await _stream(ctx, gw, req, result)


async def _stream(ctx: Ctx, gw: Gateway, req: GatewayRequest, result: GatewayStream) -> None:
    ctx.response_headers.extend(route_headers(result))
    encoder = AnthropicStreamEncoder(req.model, estimate_request_tokens(req.body))

    ttft: list[float] = []

    async def produce() -> None:
        await ctx.start_stream()
        try:
            async for batch in result.chunks:
                data = b"".join(encoder.feed(chunk.obj) for chunk in batch)
                if data:
                    await ctx.stream_write(data)
                    if not ttft:
                        ttft.append(time.perf_counter() - ctx.started)
        except InterlockError as err:
            result.error_code = err.code
            await ctx.stream_end(encoder.error(_error_type(err.status), err.message))
            return
        cost = result.cost_usd = gw.spend.cost(result.deployment, result.usage)
        comment = b": x-interlock-cost-usd=" + format_usd(cost).encode() + b"\n\n"
        await ctx.stream_end(comment + encoder.finish(result.usage))

    try:
        await run_until_disconnect(ctx, produce)
    finally:
        await result.chunks.aclose()
        await gw.stream_finished(req, result, ttft[0] if ttft else None)


def _error_type(status: int) -> str:
    return {429: "rate_limit_error", 504: "api_error", 529: "overloaded_error"}.get(
        status, "api_error"
    )
