"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: the Anthropic Messages
API in front of any provider.

The request is translated to the canonical OpenAI shape, runs through the one request
path, and the answer (or stream) is translated back; errors use Anthropic's error shape.
``max_tokens: 0`` (prompt-cache warming) and ``count_tokens`` are described in
docs/providers.md (the inbound Anthropic Messages API) and docs/decisions.md.
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
from interlock.errors import InterlockError, UpstreamError
from interlock.gateway import Gateway
from interlock.providers.anthropic_convert import usage_to_anthropic
from interlock.providers.base import UpstreamCall, warnings_header
from interlock.providers.registry import Deployment
from interlock.providers.tokens import count_request_tokens, estimate_request_tokens
from interlock.spend.cost import format_usd
from interlock.types import JSON, GatewayRequest, GatewayResponse, GatewayStream, Usage

WARM_NOTE = (
    "max_tokens 0: the prompt was sent with max_tokens 1 to warm the provider's prompt "
    "cache; the one generated token is billed and not returned"
)


async def create_message(ctx: Ctx, gw: Gateway) -> None:
    try:
        await _create(ctx, gw)
    except InterlockError as err:
        await _error(ctx, err)


async def count_tokens(ctx: Ctx, gw: Gateway) -> None:
    try:
        await _count(ctx, gw)
    except InterlockError as err:
        await _error(ctx, err)


async def _error(ctx: Ctx, err: InterlockError) -> None:
    if ctx.status == 0:
        ctx.error_code = err.code
        message = err.message
        if err.param == "max_completion_tokens":  # the client's max_tokens, renamed inside
            message = message.replace("max_completion_tokens", "max_tokens")
        await ctx.respond(
            err.status, anthropic_error_body(err.status, err.code, message), err.headers()
        )


async def _create(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    cfg = gw.settings.server
    raw = await ctx.read_body(cfg.max_body_bytes)
    body = parse_json_object(ctx, raw, cfg.max_json_depth)
    label_model(ctx, gw, body.get("model"))
    notes: list[str] = []
    oa = messages_to_openai(body, notes, warm_ok=True)
    thinking = _wants_thinking(oa)
    warm = oa.get("max_completion_tokens") == 0
    client_stream = bool(oa.get("stream"))
    if warm:
        # Nothing may be generated, but the prompt must reach the provider (that is what
        # fills its prompt cache): the smallest real call, its output withheld.
        oa["max_completion_tokens"] = 1
        oa.pop("thinking", None)  # a thinking budget cannot fit in one token
        oa.pop("stream", None)
        oa.pop("stream_options", None)
        notes.append(WARM_NOTE)
    if oa.get("stream"):
        oa["stream_options"] = {"include_usage": True}
    req = validate.chat_request(oa, b"", cfg)
    req.request_id = ctx.request_id
    req.timeout_s = client_timeout(ctx)
    req.tags = request_tags(ctx, body)
    req.cache_mode = cache_mode(ctx)
    if warm:
        req.cache_mode = "bypass"  # an answer from the gateway's cache would warm nothing
    req.cache_control = ctx.header(b"cache-control")
    result = await gw.handle(req, principal)
    if isinstance(result, GatewayStream):
        result.headers[:] = _merge_warnings(result.headers, notes)
        await _stream(ctx, gw, req, result, thinking)
        return
    headers = _merge_warnings(route_headers(result), notes) + cost_header(result.cost_usd)
    if warm:
        await _warm_answer(ctx, result, req.model, client_stream, headers)
        return
    message = openai_to_message(
        orjson.loads(result.body), req.model, result.usage, thinking=thinking
    )
    await ctx.respond(200, orjson.dumps(message), headers)


async def _warm_answer(
    ctx: Ctx, result: GatewayResponse, model: str, stream: bool, headers: list[tuple[bytes, bytes]]
) -> None:
    """A cache-warming answer: no content, ``stop_reason: max_tokens``, the usage billed."""
    completion = orjson.loads(result.body)
    usage = result.usage or Usage.from_openai(completion.get("usage")) or Usage()
    if not stream:
        message = openai_to_message(completion, model, usage)
        message["content"] = []
        message["stop_reason"] = "max_tokens"
        await ctx.respond(200, orjson.dumps(message), headers)
        return
    encoder = AnthropicStreamEncoder(model, usage_to_anthropic(usage)["input_tokens"])
    data = encoder.feed(
        {"id": completion.get("id"), "choices": [{"delta": {}, "finish_reason": "length"}]}
    )
    ctx.response_headers.extend(headers)
    await ctx.start_stream()
    await ctx.stream_end(data + encoder.finish(usage))


def _wants_thinking(oa: JSON) -> bool:
    thinking = oa.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") != "disabled"


def _merge_warnings(
    headers: list[tuple[bytes, bytes]], notes: list[str]
) -> list[tuple[bytes, bytes]]:
    """One ``x-interlock-warnings`` header: the inbound translation's notes first, then
    what the adapter changed."""
    if not notes:
        return headers
    theirs = [v.decode("ascii", "replace") for k, v in headers if k == b"x-interlock-warnings"]
    rest = [(k, v) for k, v in headers if k != b"x-interlock-warnings"]
    return [*rest, warnings_header((*notes, *theirs))]


async def _stream(
    ctx: Ctx, gw: Gateway, req: GatewayRequest, result: GatewayStream, thinking: bool
) -> None:
    ctx.response_headers.extend(route_headers(result))
    encoder = AnthropicStreamEncoder(
        req.model, estimate_request_tokens(req.body), thinking=thinking
    )

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


# --- count_tokens -------------------------------------------------------------------------


async def _count(ctx: Ctx, gw: Gateway) -> None:
    """MessageCountTokensParams -> ``{"input_tokens": N}``. Same key and model access as
    /v1/messages and its rate limits (one request, no tokens); no upstream model runs and
    nothing is charged. An alias whose first deployment is Anthropic asks Anthropic's free
    count_tokens endpoint (``x-interlock-token-count: exact``); otherwise, or if that
    endpoint fails, the gateway's tokenizer counts (``x-interlock-token-count: estimate``).
    """
    principal = await gw.authenticate(ctx.bearer())
    cfg = gw.settings.server
    raw = await ctx.read_body(cfg.max_body_bytes)
    body = parse_json_object(ctx, raw, cfg.max_json_depth)
    label_model(ctx, gw, body.get("model"))
    notes: list[str] = []
    oa = messages_to_openai(body, notes, count_only=True)
    req = validate.chat_request(oa, b"", cfg)
    route = gw.route_for(req, principal)
    limited = await gw.limits.admit(principal, route.alias, lambda: 0)
    try:
        exact: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        dep = route.deployments[0] if route.deployments else None
        if dep is not None and dep.provider_kind == "anthropic":
            exact = await _anthropic_count(gw, dep, body, notes)
            headers.append((b"x-interlock-deployment", dep.name.encode()))
        if exact is None:
            count, kind = count_request_tokens(req.body), b"estimate"
        else:
            count, kind = exact, b"exact"
        headers.append((b"x-interlock-token-count", kind))
        if notes:
            headers.append(warnings_header(tuple(notes)))
        await ctx.respond(200, orjson.dumps({"input_tokens": count}), headers)
    finally:
        await gw.limits.finish(limited, 0)


async def _anthropic_count(
    gw: Gateway, dep: Deployment, body: JSON, notes: list[str]
) -> int | None:
    """The deployment's own count, or None when its endpoint could not give one (the
    caller then estimates, and ``notes`` says why). The client's body goes as sent (with
    the deployment's model): /v1/messages itself adapts a body to the model (tool ids,
    parameters), so a count_tokens refusal of the raw body is not the client's error and
    is estimated instead; only a body too large for the provider (413) is refused."""
    target = dep.target
    native = {**body, "model": target.model}
    call = UpstreamCall(
        "POST",
        f"{target.base_url.rstrip('/')}/v1/messages/count_tokens",
        {"content-type": "application/json", **target.headers},
        orjson.dumps(native),
    )
    try:
        await dep.auth.apply(call)
        reply = await gw.transport.request(call, dep.timeouts, dep.provider)
    except UpstreamError as failed:
        notes.append(f"count_tokens estimated: {failed.message}")
        return None
    if reply.status == 200:
        try:
            data = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            data = None
        value = data.get("input_tokens") if isinstance(data, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        notes.append(f"count_tokens estimated: provider {dep.provider} sent no count")
        return None
    err = dep.adapter.error(reply.status, reply.headers, reply.body)
    if reply.status == 413:
        raise err
    notes.append(f"count_tokens estimated: {err.message}")
    return None
