"""``GET /admin/alerts``: the alert engine's active and recent alerts, plus the budget
threshold alerts the spend enforcer raises (also at ``/admin/budgets/alerts``)."""

from __future__ import annotations

from dataclasses import asdict

from interlock.api.admin import require_admin
from interlock.api.http import Ctx
from interlock.gateway import Gateway


async def list_alerts(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    view = gw.alerts.view()
    active = view.get("active", [])
    q = ctx.query()
    if "state" in q:
        wanted = q["state"]
        rows = active if wanted == "firing" else view.get("recent", [])
    else:
        rows = [*active, *view.get("recent", [])]
    budget = [asdict(a) for a in gw.spend.enforcer.alerts()]
    await ctx.respond_json(
        200,
        {
            "object": "list",
            "data": rows,
            "active": active,
            "recent": view.get("recent", []),
            "budget_alerts": budget,
            "rules": view.get("rules", []),
            "evaluated_at": view.get("evaluated_at"),
            "enabled": gw.settings.alerts.enabled,
        },
    )
