"""Admin API: virtual keys (create, list, get, update, revoke). Admin keys only."""

from __future__ import annotations

from typing import Any

from interlock.api.budget_spec import parse_budget
from interlock.api.http import Ctx, parse_json_object
from interlock.errors import InvalidRequest, NotFound, PermissionDenied
from interlock.gateway import Gateway
from interlock.storage.keys import KeyRecord
from interlock.types import Principal


async def require_admin(ctx: Ctx, gw: Gateway) -> Principal:
    principal = await gw.authenticate(ctx.bearer())
    if not principal.is_admin:
        raise PermissionDenied("this endpoint needs an admin key", code="admin_required")
    return principal


async def _json(ctx: Ctx, gw: Gateway) -> dict[str, Any]:
    cfg = gw.settings.server
    raw = await ctx.read_body(cfg.max_body_bytes)
    return parse_json_object(ctx, raw, cfg.max_json_depth)


def _found(rec: KeyRecord | None, key_id: str) -> KeyRecord:
    if rec is None:
        raise NotFound(f"no key with id '{key_id[:64]}'", code="key_not_found")
    return rec


async def list_keys(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    include = ctx.query().get("include_revoked", "").lower() in ("1", "true", "yes")
    records = await gw.keys.list(include_revoked=include)
    await ctx.respond_json(200, {"object": "list", "data": [r.public() for r in records]})


async def create_key(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    body = await _json(ctx, gw)
    allowed = {
        "name",
        "user",
        "team",
        "tags",
        "models",
        "admin",
        "metadata",
        "budgets",
        "rate_limits",
    }
    for field in body:
        if field not in allowed:
            raise InvalidRequest(
                f"unknown field '{field[:64]}'", param=field[:64], code="unknown_field"
            )
    specs = body.pop("budgets", None) or []
    if not isinstance(specs, list):
        raise InvalidRequest("'budgets' must be a list", param="budgets")
    # Budgets of a key are the key's own: scope and subject are implied.
    parsed = [
        parse_budget(
            {**spec, "scope": "key", "subject": "pending"} if isinstance(spec, dict) else spec,
            f"budgets[{i}]",
        )
        for i, spec in enumerate(specs)
    ]
    rec, token = await gw.keys.create(**body)
    budgets = []
    for spec in parsed:
        b = await gw.spend.enforcer.create(**{**spec, "subject": rec.key_id})
        budgets.append(await gw.spend.enforcer.status(b))
    # The only time the secret is ever shown.
    await ctx.respond_json(201, {**rec.public(), "budgets": budgets, "key": token})


async def get_key(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    key_id = ctx.path_params["key_id"]
    await ctx.respond_json(200, _found(await gw.keys.get(key_id), key_id).public())


async def update_key(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    key_id = ctx.path_params["key_id"]
    body = await _json(ctx, gw)
    rec = _found(await gw.keys.update(key_id, body), key_id)
    await ctx.respond_json(200, rec.public())


async def revoke_key(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    key_id = ctx.path_params["key_id"]
    rec = _found(await gw.keys.revoke(key_id), key_id)
    await ctx.respond_json(200, rec.public())
