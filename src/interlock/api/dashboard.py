"""Dashboard routes: the page, its static files, and the admin-only sample it polls.

Authentication: the page itself holds no data and is served to anyone (it shows a
login form). The admin key typed into that form stays in the tab's ``sessionStorage``
and is sent as ``Authorization: Bearer`` to ``/admin/dashboard/data`` — the same check
as every admin endpoint, so revoking a key locks its dashboards out at the next poll,
any worker or replica can answer, and there is no cookie for a cross-site request to
ride on (no CSRF). The key never appears in a URL, and the strict CSP of
:mod:`interlock.dashboard.assets` keeps foreign scripts away from it.
"""

from __future__ import annotations

from interlock.api.admin import require_admin
from interlock.api.http import Ctx
from interlock.api.services import services_of
from interlock.dashboard.assets import SECURITY_HEADERS, Asset, asset
from interlock.dashboard.snapshot import snapshot
from interlock.errors import NotFound
from interlock.gateway import Gateway


async def _send_asset(ctx: Ctx, item: Asset, cache_control: bytes) -> None:
    headers = [
        (b"etag", item.etag.encode()),
        (b"cache-control", cache_control),
        *SECURITY_HEADERS,
        *ctx.response_headers,
    ]
    if ctx.header(b"if-none-match") == item.etag:
        ctx.status = 304
        await ctx.send({"type": "http.response.start", "status": 304, "headers": headers})
        await ctx.send({"type": "http.response.body", "body": b""})
        return
    ctx.status = 200
    headers += [
        (b"content-type", item.content_type.encode()),
        (b"content-length", str(len(item.body)).encode()),
    ]
    await ctx.send({"type": "http.response.start", "status": 200, "headers": headers})
    await ctx.send({"type": "http.response.body", "body": item.body})


async def page(ctx: Ctx, gw: Gateway) -> None:
    """The dashboard page (a login form until an admin key is entered)."""
    item = asset("index.html")
    assert item is not None
    await _send_asset(ctx, item, b"no-cache")


async def static(ctx: Ctx, gw: Gateway) -> None:
    item = asset(ctx.path_params["asset"])
    if item is None:
        raise NotFound("no such dashboard file", code="route_not_found")
    await _send_asset(ctx, item, b"no-cache")


async def data(ctx: Ctx, gw: Gateway) -> None:
    """One sample of every live figure (admin keys only)."""
    await require_admin(ctx, gw)
    ctx.response_headers.append((b"cache-control", b"no-store"))
    spend = services_of(ctx, "the dashboard is").dashboard_spend
    await ctx.respond_json(200, await snapshot(gw, spend))
