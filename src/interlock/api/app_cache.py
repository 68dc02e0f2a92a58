"""The application cache: ``PUT/GET/DELETE /v1/cache/{namespace}/{key}``.

For what applications want to keep between steps (intermediate chain results,
retrieved context chunks): values on the same tiers as the answer cache, always inside
the caller's tenant (team, or key), so one tenant can never read another's.

The key's policy holds here as on the model routes: every call counts as one request
against its rate limits (a ``model``-scope limit with subject ``/v1/cache`` also
applies), and a tenant holds at most ``cache.app.max_bytes_per_tenant`` bytes for at
most ``cache.app.max_ttl_s`` seconds per value (:mod:`interlock.cache.quota`; shared by
every replica through Redis when Redis is configured). Budgets do not apply: the cache
costs no provider money.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from interlock.api.http import Ctx
from interlock.cache.quota import QuotaUnavailable, entry_size
from interlock.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
)
from interlock.gateway import Gateway

_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
# The name rate limits see for these calls (a `model` scope rule may name it).
RATE_LIMIT_SUBJECT = "/v1/cache"


@asynccontextmanager
async def _admitted(ctx: Ctx, gw: Gateway) -> AsyncIterator[tuple[str, str, str]]:
    """Authenticate, count the call against the key's rate limits, and name the entry:
    (tenant, entry name within the tenant, tier key)."""
    principal = await gw.authenticate(ctx.bearer())
    if gw.cache is None:
        raise ServiceUnavailable(
            "the cache is disabled (cache.enabled: false)", code="cache_disabled"
        )
    namespace, _, key = ctx.path_params["path"].partition("/")
    for value, what in ((namespace, "namespace"), (key, "key")):
        if not _NAME.match(value):
            raise InvalidRequest(f"the {what} must be 1-200 characters [A-Za-z0-9._:-]", param=what)
    limited = await gw.limits.admit(principal, RATE_LIMIT_SUBJECT, lambda: 0)
    try:
        if limited is not None:
            ctx.response_headers.extend(limited.headers)
        if gw.settings.cache.namespace == "team" and principal.team:
            tenant = "team:" + principal.team
        else:
            tenant = "key:" + principal.key_id
        entry = f"{namespace}|{key}"
        yield tenant, entry, f"kv|{tenant}|{entry}"
    finally:
        await gw.limits.finish(limited, None)


def _ttl(ctx: Ctx, gw: Gateway) -> float:
    cfg = gw.settings.cache.app
    raw = ctx.query().get("ttl") or ctx.header(b"x-interlock-ttl")
    if raw is None:
        return min(cfg.default_ttl_s, cfg.max_ttl_s)
    try:
        ttl = float(raw)
    except ValueError:
        ttl = -1
    if not 0 < ttl <= cfg.max_ttl_s:  # NaN fails this too
        raise InvalidRequest(
            f"ttl must be 0 < seconds <= {cfg.max_ttl_s:g} (cache.app.max_ttl_s)",
            code="invalid_ttl",
            param="ttl",
        )
    return ttl


async def put_value(ctx: Ctx, gw: Gateway) -> None:
    async with _admitted(ctx, gw) as (tenant, entry, target):
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
        ttl = _ttl(ctx, gw)
        ctype = (ctx.header(b"content-type") or "application/octet-stream").split(";")[0]
        value = ctype.strip()[:100].encode() + b"\n" + body
        size = entry_size(entry, value)
        if size > gw.app_quota.limit:  # would never fit: no point waiting for expiries
            raise PayloadTooLarge(
                f"this value counts {size} bytes, more than a tenant may hold "
                f"({gw.app_quota.limit}, cache.app.max_bytes_per_tenant)"
            )
        try:
            charge = await gw.app_quota.charge(tenant, entry, size, ttl)
        except QuotaUnavailable:
            raise ServiceUnavailable(
                "the cache quota cannot be checked right now", code="cache_unavailable",
                retry_after=5,
            ) from None  # fmt: skip
        if not charge.ok:
            raise RateLimited(
                f"this tenant's application cache is full ({charge.used} of "
                f"{gw.app_quota.limit} bytes, cache.app.max_bytes_per_tenant): delete "
                "entries or wait for them to expire",
                code="cache_quota_exceeded",
                retry_after=charge.retry_after_s,
            )
        try:
            await gw.cache.set_value(target, value, ttl)
        except ConnectionError:
            await gw.app_quota.release(tenant, entry)
            raise ServiceUnavailable(
                "no cache tier accepted the value", code="cache_unavailable", retry_after=5
            ) from None
        await ctx.respond_json(
            200, {"stored": True, "ttl_s": ttl, "bytes": len(body), "tenant_bytes": charge.used}
        )


async def get_value(ctx: Ctx, gw: Gateway) -> None:
    async with _admitted(ctx, gw) as (_tenant, _entry, target):
        assert gw.cache is not None
        raw = await gw.cache.get_value(target)
        if raw is None:
            raise NotFound(
                "no such key in this namespace (or it expired)", code="cache_key_not_found"
            )
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
    async with _admitted(ctx, gw) as (tenant, entry, target):
        assert gw.cache is not None
        await gw.cache.delete_value(target)
        try:
            await gw.app_quota.release(tenant, entry)
        except QuotaUnavailable:
            pass  # the count errs high until the entry's TTL ends: never below what is stored
        await ctx.respond_json(200, {"deleted": True})
