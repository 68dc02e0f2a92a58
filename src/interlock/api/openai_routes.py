"""The OpenAI-compatible routes: chat, completions, embeddings, models."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from interlock.api import validate
from interlock.api.http import Ctx, parse_json_object
from interlock.api.stream import run_until_disconnect
from interlock.errors import InterlockError, InvalidRequest, NotFound, error_payload
from interlock.gateway import Gateway
from interlock.settings import ServerSettings
from interlock.spend.cost import format_usd
from interlock.types import GatewayRequest, GatewayResponse, GatewayStream, Principal

Validator = Callable[[dict[str, Any], bytes, ServerSettings], GatewayRequest]

_DONE = b"data: [DONE]\n\n"


def route_headers(result: GatewayResponse | GatewayStream) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-interlock-deployment", result.deployment.encode()),
        (b"x-interlock-provider", result.provider.encode()),
        (b"x-interlock-attempts", str(len(result.attempts)).encode()),
    ]
    if result.fallback is not None:
        headers.append((b"x-interlock-fallback", result.fallback.encode()))
    headers.extend(result.headers)
    headers.append((b"x-interlock-cache", result.cache.encode()))
    return headers


async def read_request(ctx: Ctx, gw: Gateway, check: Validator) -> tuple[Principal, GatewayRequest]:
    principal = await gw.authenticate(ctx.bearer())
    cfg = gw.settings.server
    raw = await ctx.read_body(cfg.max_body_bytes)
    body = parse_json_object(ctx, raw, cfg.max_json_depth)
    label_model(ctx, gw, body.get("model"))
    req = check(body, raw, cfg)
    req.request_id = ctx.request_id
    req.timeout_s = client_timeout(ctx)
    had_meta = isinstance(body.get("metadata"), dict) and "tags" in body["metadata"]
    req.tags = request_tags(ctx, body)
    req.cache_mode = cache_mode(ctx)
    req.cache_control = ctx.header(b"cache-control")
    req.tier_pin = ctx.header(b"x-interlock-tier")
    if had_meta:
        req.raw = b""  # the body changed: the adapter re-serialises it
    return principal, req


_TAG = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
_MAX_TAGS = 16


def request_tags(ctx: Ctx, body: dict[str, Any]) -> tuple[str, ...]:
    """Feature tags from ``x-interlock-tags: a,b`` and ``metadata.tags`` (bounded, validated:
    they become ledger dimensions, never metric labels)."""
    tags: list[str] = []
    header = ctx.header(b"x-interlock-tags")
    if header:
        tags.extend(t.strip() for t in header.split(",") if t.strip())
    meta = body.get("metadata")
    if isinstance(meta, dict) and "tags" in meta:
        # Interlock's own field: not forwarded (providers accept only string metadata).
        meta = dict(meta)
        value = meta.pop("tags")
        if meta:
            body["metadata"] = meta
        else:
            del body["metadata"]
        if isinstance(value, str):
            value = [t.strip() for t in value.split(",") if t.strip()]
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise InvalidRequest("'metadata.tags' must be a list of strings", param="metadata.tags")
        tags.extend(value)
    if not tags:
        return ()
    bad = next((t for t in tags if not _TAG.match(t)), None)
    if bad is not None or len(tags) > _MAX_TAGS:
        raise InvalidRequest(
            f"tags must be at most {_MAX_TAGS} names of 1-64 characters [A-Za-z0-9_.:/-]",
            param="x-interlock-tags",
        )
    return tuple(dict.fromkeys(tags))


def cache_mode(ctx: Ctx) -> str | None:
    value = ctx.header(b"x-interlock-cache")
    if value is None:
        return None
    value = value.strip().lower()
    if value not in ("bypass", "refresh"):
        raise InvalidRequest(
            "x-interlock-cache must be 'bypass' or 'refresh'", param="x-interlock-cache"
        )
    return value


def cost_header(cost: Decimal | None) -> list[tuple[bytes, bytes]]:
    return [] if cost is None else [(b"x-interlock-cost-usd", format_usd(cost).encode())]


def client_timeout(ctx: Ctx) -> float | None:
    """``x-interlock-timeout: <seconds>``; the gateway clamps it to the operator's bounds."""
    value = ctx.header(b"x-interlock-timeout")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise InvalidRequest(
            "x-interlock-timeout must be a positive number of seconds", param="x-interlock-timeout"
        )
    return seconds


def label_model(ctx: Ctx, gw: Gateway, model: object) -> None:
    """Use the model as a metrics label only when it is a configured alias."""
    if isinstance(model, str) and gw.catalog.get(model) is not None:
        ctx.model = model


async def _openai_endpoint(ctx: Ctx, gw: Gateway, check: Validator) -> None:
    principal, req = await read_request(ctx, gw, check)
    result = await gw.handle(req, principal)
    if isinstance(result, GatewayResponse):
        await ctx.respond(
            result.status, result.body, route_headers(result) + cost_header(result.cost_usd)
        )
        return
    await stream_openai(ctx, gw, req, result)


async def stream_openai(ctx: Ctx, gw: Gateway, req: GatewayRequest, result: GatewayStream) -> None:
    ctx.response_headers.extend(route_headers(result))

    ttft: list[float] = []

    async def produce() -> None:
        await ctx.start_stream()
        try:
            async for batch in result.chunks:
                await ctx.stream_write(
                    b"".join(
                        b"data: " + (c.raw if c.raw is not None else orjson.dumps(c.obj)) + b"\n\n"
                        for c in batch
                    )
                )
                if not ttft:
                    ttft.append(time.perf_counter() - ctx.started)
                    gw.metrics.observe_ttft(ctx.model, ttft[0])
        except InterlockError as err:
            # Headers are already sent, so a late upstream failure becomes a final SSE
            # error event, not a 5xx.
            result.error_code = err.code
            await ctx.stream_end(b"data: " + orjson.dumps(error_payload(err)) + b"\n\n")
            return
        # The cost is only known now; an SSE comment line carries it (clients ignore it).
        cost = result.cost_usd = gw.spend.cost(result.deployment, result.usage)
        await ctx.stream_end(
            b": x-interlock-cost-usd=" + format_usd(cost).encode() + b"\n\n" + _DONE
        )

    try:
        await run_until_disconnect(ctx, produce)
    finally:
        await result.chunks.aclose()
        await gw.stream_finished(req, result, ttft[0] if ttft else None)


async def chat_completions(ctx: Ctx, gw: Gateway) -> None:
    await _openai_endpoint(ctx, gw, validate.chat_request)


async def completions(ctx: Ctx, gw: Gateway) -> None:
    await _openai_endpoint(ctx, gw, validate.completion_request)


async def embeddings(ctx: Ctx, gw: Gateway) -> None:
    await _openai_endpoint(ctx, gw, validate.embeddings_request)


def _model_obj(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "interlock"}


async def list_models(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    created = int(gw.started_at)
    data = [_model_obj(r.alias, created) for r in gw.visible_models(principal)]
    await ctx.respond_json(200, {"object": "list", "data": data})


async def get_model(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    name = ctx.path_params["model"]
    if not any(r.alias == name for r in gw.visible_models(principal)):
        raise NotFound(
            f"The model '{name[:200]}' does not exist", code="model_not_found", param="model"
        )
    await ctx.respond_json(200, _model_obj(name, int(gw.started_at)))
