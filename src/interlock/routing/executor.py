"""Runs a request against a route: one attempt per deployment, in order, until one answers.

A failed attempt moves on to the next deployment only when the error is retryable
(connect error, timeout, 429, 5xx, malformed answer) and, for streams, only before the
first chunk reaches the client. Retries with backoff, circuit breakers and hedging are
layered on this loop by the resilience work.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from interlock.errors import UpstreamError
from interlock.providers.base import StreamDecoder
from interlock.providers.registry import Deployment
from interlock.providers.transport import Transport, UpstreamStream
from interlock.routing.catalog import Route
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.redact import Redactor
from interlock.types import Attempt, Chunk, GatewayRequest, GatewayResponse, GatewayStream, Usage


class Executor:
    def __init__(
        self,
        transport: Transport,
        metrics: Metrics,
        redactor: Redactor,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._transport = transport
        self._metrics = metrics
        self._redact = redactor
        self._clock = clock

    def _failed(
        self, dep: Deployment, err: UpstreamError, started: float, attempts: list[Attempt]
    ) -> None:
        err.message = self._redact(
            err.message.replace("provider upstream", f"provider {dep.provider}")
        )
        elapsed = self._clock() - started
        attempts.append(Attempt(dep.name, dep.provider, err.code, elapsed))
        self._metrics.observe_attempt(dep.provider, dep.name, err.code, elapsed)

    async def complete(self, req: GatewayRequest, route: Route) -> GatewayResponse:
        attempts: list[Attempt] = []
        last: UpstreamError | None = None
        for dep in route.deployments:
            started = self._clock()
            try:
                call = dep.adapter.build(req, dep.target)
                await dep.auth.apply(call)
                reply = await self._transport.request(call, dep.timeouts, dep.provider)
                if reply.status >= 300:
                    raise dep.adapter.error(reply.status, reply.headers, reply.body)
                done = dep.adapter.parse(req, dep.target, reply.status, reply.body)
            except UpstreamError as err:
                self._failed(dep, err, started, attempts)
                last = err
                if not err.retryable:
                    raise
                continue
            elapsed = self._clock() - started
            attempts.append(Attempt(dep.name, dep.provider, "ok", elapsed))
            self._metrics.observe_attempt(dep.provider, dep.name, "ok", elapsed)
            return GatewayResponse(200, done.body, done.usage, dep.name, dep.provider, attempts)
        assert last is not None
        raise last

    async def stream(self, req: GatewayRequest, route: Route) -> GatewayStream:
        attempts: list[Attempt] = []
        last: UpstreamError | None = None
        for dep in route.deployments:
            started = self._clock()
            upstream: UpstreamStream | None = None
            try:
                call = dep.adapter.build(req, dep.target)
                await dep.auth.apply(call)
                upstream = await self._transport.open(call, dep.timeouts, dep.provider)
                if upstream.status >= 300:
                    body = await upstream.read_all()
                    raise dep.adapter.error(upstream.status, upstream.headers, body)
                decoder = dep.adapter.stream_decoder(req, dep.target)
                source = upstream.chunks()
                # Read until the first chunk exists: until then, failing over is invisible
                # to the client.
                first: list[Chunk] = []
                ended = False
                while not first:
                    data = await anext(source, None)
                    if data is None:
                        ended = True
                        first = decoder.close()
                        break
                    first = decoder.feed(data)
            except UpstreamError as err:
                if upstream is not None:
                    upstream.close()
                self._failed(dep, err, started, attempts)
                last = err
                if not err.retryable:
                    raise
                continue
            except BaseException:
                if upstream is not None:
                    upstream.close()
                raise
            ttft = self._clock() - started
            attempts.append(Attempt(dep.name, dep.provider, "ok", ttft))
            self._metrics.observe_attempt(dep.provider, dep.name, "ok", ttft)
            result = GatewayStream(
                chunks=_empty(), deployment=dep.name, provider=dep.provider, attempts=attempts
            )
            result.chunks = self._pump(result, upstream, source, decoder, first, ended)
            return result
        assert last is not None
        raise last

    async def _pump(
        self,
        result: GatewayStream,
        upstream: UpstreamStream,
        source: AsyncIterator[bytes],
        decoder: StreamDecoder,
        first: list[Chunk],
        ended: bool,
    ) -> AsyncGenerator[Chunk, None]:
        try:
            for chunk in first:
                yield chunk
            if not ended:
                async for data in source:
                    for chunk in decoder.feed(data):
                        yield chunk
                for chunk in decoder.close():
                    yield chunk
            result.completed = True
        except UpstreamError as err:
            err.message = self._redact(err.message)
            raise
        finally:
            upstream.close()
            result.usage = decoder.usage or Usage(estimated=True)


async def _empty() -> AsyncGenerator[Chunk, None]:
    return
    yield
