"""Admin API for spend: budgets (create, list with status, delete) and budget alerts."""

from __future__ import annotations

from typing import Any

from interlock.api.admin import require_admin
from interlock.api.budget_spec import parse_budget
from interlock.api.http import Ctx, parse_json_object
from interlock.errors import InvalidRequest, NotFound
from interlock.gateway import Gateway
from interlock.spend.budgets import Budget


async def _body(ctx: Ctx, gw: Gateway) -> dict[str, Any]:
    cfg = gw.settings.server
    return parse_json_object(ctx, await ctx.read_body(cfg.max_body_bytes), cfg.max_json_depth)


def _find(gw: Gateway, budget_id: str) -> Budget:
    for b in gw.spend.enforcer.budgets:
        if b.id == budget_id:
            return b
    raise NotFound(f"no budget with id '{budget_id[:64]}'", code="budget_not_found")


async def list_budgets(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    q = ctx.query()
    data = []
    for b in gw.spend.enforcer.budgets:
        if "scope" in q and b.scope != q["scope"]:
            continue
        if "subject" in q and b.subject != q["subject"]:
            continue
        data.append(await gw.spend.enforcer.status(b))
    await ctx.respond_json(200, {"object": "list", "data": data})


async def create_budget(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    spec = parse_budget(await _body(ctx, gw))
    b = await gw.spend.enforcer.create(**spec)
    await ctx.respond_json(201, await gw.spend.enforcer.status(b))


async def get_budget(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    await ctx.respond_json(
        200, await gw.spend.enforcer.status(_find(gw, ctx.path_params["budget_id"]))
    )


async def delete_budget(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    budget_id = ctx.path_params["budget_id"]
    if budget_id.startswith("cfg-"):
        raise InvalidRequest(
            "budgets from the configuration file are changed there", param="budget_id"
        )
    if not await gw.spend.enforcer.delete(budget_id):
        raise NotFound(f"no budget with id '{budget_id[:64]}'", code="budget_not_found")
    await ctx.respond_json(200, {"id": budget_id, "deleted": True})


async def budget_alerts(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    data = [a.__dict__ if hasattr(a, "__dict__") else _alert(a) for a in gw.spend.enforcer.alerts()]
    await ctx.respond_json(200, {"object": "list", "data": data})


def _alert(a: Any) -> dict[str, Any]:
    return {f: getattr(a, f) for f in a.__slots__}
