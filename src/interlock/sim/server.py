"""The simulated provider's aiohttp application: model routes plus the control API."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from interlock.sim import usage
from interlock.sim.config import ConfigError, SimConfig
from interlock.sim.formats import anthropic, bedrock, gemini, openai
from interlock.sim.runtime import STATE_KEY, SimState, json_response, state_of

__all__ = ["create_app"]

MAX_BODY = 64 * 1024 * 1024


def _control_error(message: str, status: int = 400) -> web.Response:
    return json_response({"error": {"message": message, "type": "invalid_request_error"}}, status)


async def _json_or_empty(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError("body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ConfigError("body must be a JSON object")
    return data


async def health(request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


async def get_config(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).cfg.to_dict())


async def get_faults(request: web.Request) -> web.StreamResponse:
    """The active faults with how many matching requests each still applies to."""
    return json_response(state_of(request).faults.state())


async def put_config(request: web.Request) -> web.StreamResponse:
    st = state_of(request)
    try:
        partial = await _json_or_empty(request)
        st.set_config(st.cfg.updated(partial))
    except ConfigError as exc:
        return _control_error(str(exc))
    return json_response(st.cfg.to_dict())


async def reset(request: web.Request) -> web.StreamResponse:
    """Clear ledger, request log and faults. Body (optional): config keys to set, and
    ``"initial": true`` to start from the configuration the server was started with."""
    st = state_of(request)
    try:
        partial = await _json_or_empty(request)
        base = st.initial if partial.pop("initial", False) else st.cfg
        partial.setdefault("faults", [])
        cfg = base.updated(partial)
    except ConfigError as exc:
        return _control_error(str(exc))
    st.reset(cfg)
    return json_response(cfg.to_dict())


async def get_ledger(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).ledger.snapshot())


async def get_requests(request: web.Request) -> web.StreamResponse:
    return json_response(state_of(request).requests())


async def _on_shutdown(app: web.Application) -> None:
    app[STATE_KEY].closing = True


def create_app(cfg: SimConfig | None = None) -> web.Application:
    """The simulator as an aiohttp application (run it with ``aiohttp.web`` or :func:`run_sim`)."""
    app = web.Application(client_max_size=MAX_BODY)
    app[STATE_KEY] = SimState(cfg if cfg is not None else SimConfig())
    openai.add_routes(app)
    anthropic.add_routes(app)
    gemini.add_routes(app)
    bedrock.add_routes(app)
    usage.add_routes(app)  # OpenAI's organization usage API, from the ledger
    app.on_shutdown.append(_on_shutdown)
    app.router.add_get("/_sim/health", health)
    app.router.add_get("/_sim/config", get_config)
    app.router.add_put("/_sim/config", put_config)
    app.router.add_get("/_sim/faults", get_faults)
    app.router.add_post("/_sim/reset", reset)
    app.router.add_get("/_sim/ledger", get_ledger)
    app.router.add_get("/_sim/requests", get_requests)
    return app
