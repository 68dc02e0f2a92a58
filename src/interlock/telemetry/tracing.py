"""OpenTelemetry spans for the request path, exported over OTLP/HTTP when configured.

Off by default, and then nothing of OpenTelemetry is even imported: :meth:`Tracing.span`
hands back one shared no-op context manager, so the request path pays a method call.
On, each request gets a server span (continuing the caller's W3C ``traceparent``) with
children for auth, cache lookup, routing, every upstream attempt and accounting; the
trace id goes back in the ``traceparent`` and ``x-interlock-trace-id`` response headers
and into the request's log line.

The provider is this object's own, not OpenTelemetry's global one, so two gateways in
one process (tests) never share spans. Span attributes carry ids and labels only: never
a key, a prompt or an upstream error text.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from interlock.settings import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

_NULL: AbstractContextManager[None] = contextlib.nullcontext()
Attr = str | int | float | bool


class TracingUnavailable(RuntimeError):
    """Tracing is enabled but the optional OpenTelemetry packages are not installed."""


class Tracing:
    """Spans for one gateway; ``enabled`` False makes every call a no-op."""

    def __init__(self, cfg: TracingSettings, exporter: SpanExporter | None = None) -> None:
        self.enabled = cfg.enabled or exporter is not None
        self._provider: Any = None
        self._tracer: Any = None
        self._propagator: Any = None
        if self.enabled:
            self._setup(cfg, exporter)

    def _setup(self, cfg: TracingSettings, exporter: SpanExporter | None) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError:
            raise TracingUnavailable(
                "telemetry.tracing.enabled is true but OpenTelemetry is not installed "
                "(pip install 'interlock[otel]')"
            ) from None
        provider = TracerProvider(
            resource=Resource.create({"service.name": cfg.service_name}),
            sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)),
        )
        if exporter is not None:
            # Tests hand in an in-memory exporter: export each span as it ends.
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        elif cfg.otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = cfg.otlp_endpoint.rstrip("/")
            if not endpoint.endswith("/v1/traces"):
                endpoint += "/v1/traces"
            otlp = OTLPSpanExporter(endpoint=endpoint, headers=dict(cfg.otlp_headers))
            # Spans leave in batches from a background thread, off the event loop.
            provider.add_span_processor(BatchSpanProcessor(otlp, schedule_delay_millis=1000))
        self._provider = provider
        self._tracer = provider.get_tracer("interlock")
        self._propagator = TraceContextTextMapPropagator()

    def span(self, name: str, **attrs: Attr) -> AbstractContextManager[Any]:
        """A child span of the current one (a no-op when tracing is off)."""
        if not self.enabled:
            return _NULL
        cm: AbstractContextManager[Any] = self._tracer.start_as_current_span(name, attributes=attrs)
        return cm

    @contextlib.contextmanager
    def request(
        self, name: str, traceparent: str | None, attrs: Mapping[str, Attr]
    ) -> Iterator[Any]:
        """The server span of one HTTP request, continuing the caller's trace if any."""
        from opentelemetry.trace import SpanKind

        parent = self._propagator.extract({"traceparent": traceparent}) if traceparent else None
        with self._tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=dict(attrs)
        ) as span:
            yield span

    def attempt(
        self, deployment: str, provider: str, outcome: str, elapsed_s: float, n: int
    ) -> None:
        """One finished upstream attempt as a span, timed after the fact (the executor
        measures attempts itself; this keeps span bookkeeping out of its retry loop)."""
        if not self.enabled:
            return
        end = time.time_ns()
        span = self._tracer.start_span(
            "upstream.attempt",
            start_time=end - int(elapsed_s * 1e9),
            attributes={
                "interlock.deployment": deployment,
                "interlock.provider": provider,
                "interlock.outcome": outcome,
                "interlock.attempt": n,
            },
        )
        if outcome != "ok":
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end(end_time=end)

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()


def trace_headers(span: Any) -> tuple[str, str]:
    """(traceparent, trace id) of a span, for the response headers and the log line."""
    sc = span.get_span_context()
    trace_id = f"{sc.trace_id:032x}"
    return f"00-{trace_id}-{sc.span_id:016x}-{int(sc.trace_flags):02x}", trace_id
