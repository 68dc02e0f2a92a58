"""``create_app(settings)``: the ASGI application; its lifespan opens and closes the Gateway."""

from __future__ import annotations

import logging
import os
import time

from interlock.api.http import ClientGone, Ctx, Receive, Scope, Send
from interlock.api.observe import Observed
from interlock.api.router import resolve
from interlock.api.services import Services
from interlock.errors import InterlockError
from interlock.gateway import Gateway
from interlock.settings import Settings
from interlock.telemetry import logs
from interlock.telemetry.metrics import mark_process_dead

log = logging.getLogger("interlock.app")


class InterlockApp:
    def __init__(self, settings: Settings, gateway: Gateway | None = None) -> None:
        self.settings = settings
        self.gateway = gateway or Gateway(settings)
        self.services = Services.build(self.gateway)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    logs.configure(self.gateway.settings.telemetry.logs, self.gateway.redact)
                    await self.gateway.start()
                    await self.services.jobs.start(run_pool=self.gateway.settings.jobs.run_in_serve)
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.services.jobs.close()  # drains the worker pool first
                await self.gateway.close()
                mark_process_dead(os.getpid())
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = Ctx(scope, receive, send)
        ctx.body_timeout_s = self.settings.server.body_timeout_s
        ctx.services = self.services
        gw = self.gateway
        ctx.response_headers.append((b"x-interlock-degradation", gw.ladder.label))
        route = "unmatched"
        gauge = gw.metrics.in_flight.labels("all")
        gauge.inc()
        obs = Observed(ctx, gw)
        try:
            match = resolve(scope["method"], scope["path"], ctx.path_params)
            route = obs.info.route = match.route
            await match.handler(ctx, gw)
        except InterlockError as err:
            if ctx.status == 0:
                await ctx.respond_error(err)
        except ClientGone:
            ctx.status = 499
        except Exception:
            # Never a stack trace or an upstream detail to the client.
            log.exception("unhandled error (request %s)", ctx.request_id)
            if ctx.status == 0:
                await ctx.respond_error(InterlockError("internal error"))
        finally:
            gauge.dec()
            elapsed = time.perf_counter() - ctx.started
            gw.metrics.observe_request(route, ctx.model, ctx.status, elapsed)
            # The degradation ladder is fed by the gateway's request path, with upstream
            # outcomes only (routing/ladder.py), not from here: a 500 is our bug, a 4xx
            # the client's, and neither may degrade other tenants.
            obs.finish(ctx, gw, route, elapsed)


def create_app(settings: Settings, gateway: Gateway | None = None) -> InterlockApp:
    return InterlockApp(settings, gateway)
