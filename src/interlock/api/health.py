"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import hmac

from interlock.api.http import Ctx
from interlock.errors import AuthenticationFailed
from interlock.gateway import Gateway


async def healthz(ctx: Ctx, gw: Gateway) -> None:
    await ctx.respond_json(200, {"status": "ok"})


async def readyz(ctx: Ctx, gw: Gateway) -> None:
    ready = await gw.ready()
    await ctx.respond_json(
        200 if ready.ok else 503,
        {"status": "ready" if ready.ok else "not_ready", "checks": ready.checks},
    )


async def metrics(ctx: Ctx, gw: Gateway) -> None:
    token = gw.settings.telemetry.metrics_token
    if token is not None:
        # A scrape token, not a virtual key: Prometheus holds only this one secret.
        given = (ctx.bearer() or "").encode()
        if not hmac.compare_digest(given, token.get_secret_value().encode()):
            raise AuthenticationFailed(
                "/metrics needs the scrape token: 'Authorization: Bearer <telemetry.metrics_token>'",
                code="invalid_metrics_token",
            )
    body, ctype = gw.metrics.render()
    ctx.status = 200
    await ctx.send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", ctype.encode()),
                (b"content-length", str(len(body)).encode()),
                *ctx.response_headers,
            ],
        }
    )
    await ctx.send({"type": "http.response.body", "body": body})
