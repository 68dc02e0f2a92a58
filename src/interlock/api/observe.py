"""Observation at the edge: each request's span, trace headers, error type, gateway
overhead and its one structured log line.

The app opens a :class:`Observed` before routing (so the server span is the parent of
auth, cache, route, attempt and accounting spans) and closes it once the response is
complete, when the status, the error code and what accounting filled into the
:class:`~interlock.telemetry.requestinfo.RequestInfo` are all known.
"""

from __future__ import annotations

from typing import Any

from interlock.api.http import Ctx
from interlock.gateway import Gateway
from interlock.telemetry import requestinfo
from interlock.telemetry.errortypes import error_type
from interlock.telemetry.logs import AccessLog, request_fields
from interlock.telemetry.requestinfo import RequestInfo
from interlock.telemetry.tracing import trace_headers

access_log = AccessLog()


class Observed:
    __slots__ = ("_span_cm", "_token", "info", "span")

    def __init__(self, ctx: Ctx, gw: Gateway) -> None:
        self.info = RequestInfo(ctx.request_id)
        self._token = requestinfo.begin(self.info)
        self._span_cm: Any = None
        self.span: Any = None
        if gw.tracing.enabled:
            method = ctx.scope["method"]
            self._span_cm = gw.tracing.request(
                method,
                ctx.header(b"traceparent"),
                {"http.request.method": method, "interlock.request_id": ctx.request_id},
            )
            self.span = self._span_cm.__enter__()
            traceparent, trace_id = trace_headers(self.span)
            self.info.trace_id = trace_id
            ctx.response_headers.append((b"traceparent", traceparent.encode()))
            ctx.response_headers.append((b"x-interlock-trace-id", trace_id.encode()))

    def finish(self, ctx: Ctx, gw: Gateway, route: str, elapsed: float) -> None:
        info = self.info
        try:
            code = ctx.error_code
            if code is None and info.outcome not in (None, "ok"):
                code = info.outcome  # a stream that failed after its 200 went out
            etype = error_type(ctx.status, code)
            if etype is not None:
                gw.metrics.observe_error(route, etype)
            if info.upstream_s and not info.overhead_done and not info.stream:
                gw.metrics.observe_overhead(route, elapsed - info.upstream_s)
            if access_log.enabled():
                access_log.emit(
                    request_fields(info, ctx.scope["method"], ctx.status, elapsed, etype)
                )
            if self.span is not None:
                self._end_span(ctx, route, etype)
        finally:
            requestinfo.end(self._token)

    def _end_span(self, ctx: Ctx, route: str, etype: str | None) -> None:
        from opentelemetry.trace import Status, StatusCode

        span, info = self.span, self.info
        span.update_name(f"{ctx.scope['method']} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", ctx.status)
        for key, value in (
            ("interlock.model", info.model),
            ("interlock.deployment", info.deployment),
            ("interlock.cache", info.cache),
            ("interlock.outcome", info.outcome),
            ("interlock.key_id", info.key_id),
            ("interlock.cost_usd", info.cost_usd),
            ("interlock.error_type", etype),
        ):
            if value is not None:
                span.set_attribute(key, value)
        if ctx.status >= 500 or (etype is not None and ctx.status >= 500):
            span.set_status(Status(StatusCode.ERROR, etype or "error"))
        self._span_cm.__exit__(None, None, None)
