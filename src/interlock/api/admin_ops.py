"""Admin API for operations: deployment health and the degradation level."""

from __future__ import annotations

from interlock.api.admin import require_admin
from interlock.api.http import Ctx, parse_json_object
from interlock.errors import InvalidRequest, NotFound
from interlock.gateway import Gateway
from interlock.resilience.degradation import Level


async def list_deployments(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    data = [gw.health.describe(name) for name in gw.deployments]
    await ctx.respond_json(200, {"object": "list", "data": data})


async def reset_deployment(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    name = ctx.path_params["deployment"]
    if name not in gw.deployments:
        raise NotFound(f"no deployment named '{name[:100]}'", code="deployment_not_found")
    gw.health.reset(name)
    await ctx.respond_json(200, gw.health.describe(name))


def _degradation(gw: Gateway) -> dict[str, object]:
    ladder = gw.ladder
    return {
        "level": ladder.effective.label,
        "mode": "forced" if ladder.state.forced is not None else "auto",
        "forced": ladder.state.forced.label if ladder.state.forced is not None else None,
        "local_level": ladder.state.level.label,
        "reason": ladder.state.reason,
        "signals": ladder.signals,
        "shared_state": "redis" if gw.settings.state.backend == "redis" else "local",
        "shared_state_healthy": gw.shared.healthy,
    }


async def get_degradation(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    await ctx.respond_json(200, _degradation(gw))


async def put_degradation(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    cfg = gw.settings.server
    body = parse_json_object(ctx, await ctx.read_body(cfg.max_body_bytes), cfg.max_json_depth)
    value = body.get("level")
    if not isinstance(value, str):
        raise InvalidRequest(
            "'level' must be one of auto, full, limited, cached, minimal", param="level"
        )
    if value == "auto":
        level = None
    else:
        try:
            level = Level.parse(value)
        except ValueError:
            raise InvalidRequest(
                "'level' must be one of auto, full, limited, cached, minimal", param="level"
            ) from None
    await gw.ladder.set_forced(level)
    await ctx.respond_json(200, _degradation(gw))
