"""The application cache: ``PUT/GET/DELETE /v1/cache/{namespace}/{key}``.

For what applications want to keep between steps (intermediate chain results,
retrieved context chunks): values on the same tiers as the answer cache, always inside
the caller's tenant (team, or key), so one tenant can never read another's.
"""

from __future__ import annotations

import re

from interlock.api.http import Ctx
from interlock.errors import InvalidRequest, NotFound, PayloadTooLarge, ServiceUnavailable
from interlock.gateway import Gateway

_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
_DEFAULT_TTL_S = 3600.0
_MAX_TTL_S = 30 * 24 * 3600.0


async def _target(ctx: Ctx, gw: Gateway) -> str:
    principal = await gw.authenticate(ctx.bearer())
    if gw.cache is None:
        raise ServiceUnavailable(
            "the cache is disabled (cache.enabled: false)", code="cache_disabled"
        )
    namespace, _, key = ctx.path_params["path"].partition("/")
    for value, what in ((namespace, "namespace"), (key, "key")):
        if not _NAME.match(value):
            raise InvalidRequest(f"the {what} must be 1-200 characters [A-Za-z0-9._:-]", param=what)
    if gw.settings.cache.namespace == "team" and principal.team:
        tenant = "team:" + principal.team
    else:
        tenant = "key:" + principal.key_id
    return f"kv|{tenant}|{namespace}|{key}"


async def put_value(ctx: Ctx, gw: Gateway) -> None:
    target = await _target(ctx, gw)
    assert gw.cache is not None
    limit = gw.settings.cache.max_entry_bytes
    body = await ctx.read_body(limit)
    if len(body) > limit:
        raise PayloadTooLarge(f"a cached value may be at most {limit} bytes")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(
            "values must be UTF-8 text (JSON, or plain text)", code="invalid_utf8"
        ) from None
    ttl = _DEFAULT_TTL_S
    raw_ttl = ctx.query().get("ttl") or ctx.header(b"x-interlock-ttl")
    if raw_ttl is not None:
        try:
            ttl = float(raw_ttl)
        except ValueError:
            ttl = -1
        if not 0 < ttl <= _MAX_TTL_S:
            raise InvalidRequest(f"ttl must be 0 < seconds <= {_MAX_TTL_S:g}", param="ttl")
    ctype = (ctx.header(b"content-type") or "application/octet-stream").split(";")[0].strip()[:100]
    await gw.cache.set_value(target, ctype.encode() + b"\n" + body, ttl)
    await ctx.respond_json(200, {"stored": True, "ttl_s": ttl, "bytes": len(body)})


async def get_value(ctx: Ctx, gw: Gateway) -> None:
    target = await _target(ctx, gw)
    assert gw.cache is not None
    raw = await gw.cache.get_value(target)
    if raw is None:
        raise NotFound("no such key in this namespace (or it expired)", code="cache_key_not_found")
    ctype, _, body = raw.partition(b"\n")
    ctx.status = 200
    await ctx.send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", ctype),
                (b"content-length", str(len(body)).encode()),
                *ctx.response_headers,
            ],
        }
    )
    await ctx.send({"type": "http.response.body", "body": body})


async def delete_value(ctx: Ctx, gw: Gateway) -> None:
    target = await _target(ctx, gw)
    assert gw.cache is not None
    await gw.cache.delete_value(target)
    await ctx.respond_json(200, {"deleted": True})
