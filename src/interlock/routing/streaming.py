"""The streamed path of the executor: attempts until a stream's first chunk, then the
pump that relays it.

Until the first chunk with content exists, a failure moves on to the next deployment
unseen by the client; after it, a failure reaches the client as a final error event. A
stream that ends early (the client left, the upstream broke off, a deadline) is counted
for what the provider generated: what arrived is decoded before the upstream is closed.
An attempt abandoned before its first chunk is read on to its end and handed over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator

from interlock.errors import DeadlineExceeded, UpstreamError, UpstreamTimeout
from interlock.providers.base import StreamDecoder, warnings_header
from interlock.providers.registry import Deployment
from interlock.providers.transport import PendingStream, UpstreamStream
from interlock.routing.attempts import ExecutorBase, Plan, Tries, as_client_deadline
from interlock.types import (
    Chunk,
    GatewayRequest,
    GatewayResponse,
    GatewayStream,
)


class StreamingPath(ExecutorBase):
    """``Executor.stream``: the streamed path."""

    async def stream(self, req: GatewayRequest, plan: Plan) -> GatewayStream:
        tries = Tries(attempts=plan.attempts)
        self._budget.on_request()
        while (dep := await self._next_try(plan, tries)) is not None:
            if not self._health.acquire(dep.name, plan.prompt_tokens):
                tries.n -= 1
                continue
            started = self._clock()
            started_at = time.time()
            upstream: UpstreamStream | None = None
            pending: PendingStream | None = None
            decoder: StreamDecoder | None = None
            until = asyncio.get_running_loop().time() + dep.timeouts.total_s
            try:
                call = dep.adapter.build(req, dep.target)
                await dep.auth.apply(call)
                timeouts = self._timeouts_for(dep, plan, req, stream=True)
                if plan.on_abandoned is None:
                    upstream = await self._transport.open(call, timeouts, dep.provider)
                else:
                    got = await self._transport.open_kept(call, timeouts, dep.provider, until)
                    if isinstance(got, PendingStream):
                        pending = got
                        raise UpstreamTimeout(f"provider {dep.provider} did not answer in time")
                    upstream = got
                if upstream.status >= 300:
                    body = await upstream.read_all()
                    raise dep.adapter.error(upstream.status, upstream.headers, body)
                decoder = dep.adapter.stream_decoder(req, dep.target)
                source = upstream.chunks()
                # Until the first chunk with content exists, failing over is invisible to
                # the client (a bare role chunk is held back with it).
                first: list[Chunk] = []
                ended = False
                while not any(_substantive(c) for c in first):
                    data = await anext(source, None)
                    if data is None:
                        ended = True
                        first += decoder.close()
                        break
                    first += decoder.feed(data)
            except UpstreamError as caught:
                err = self._blame(caught, dep, plan, started)
                kept = pending or upstream
                if (
                    plan.on_abandoned is not None
                    and isinstance(err, UpstreamTimeout)
                    and kept is not None
                    and not (isinstance(kept, UpstreamStream) and kept.status >= 300)
                ):
                    # Abandoned before its first chunk: the provider may still be
                    # generating (and billing) it, so it is read to its end and charged.
                    why = "deadline" if isinstance(err, DeadlineExceeded) else "timeout"
                    later = self._stream_later(kept, decoder, req, dep, until)
                    self._abandon(plan, why, req, dep, started_at, later)
                elif upstream is not None:
                    upstream.close()
                self._release_error(dep, err, started)
                self._failed(dep, err, started, tries.attempts)
                tries.last = err
                if not err.retryable:
                    if err is not caught:
                        raise err from None
                    raise
                continue
            except BaseException:
                if upstream is not None:
                    upstream.close()
                self._health.release(
                    dep.name, ok=False, duration_s=self._clock() - started, counts_as_failure=False
                )
                raise
            ttft = self._clock() - started
            self._health.first_byte(dep.name, ttft)
            self._note(dep, "ok", ttft, tries.attempts)
            result = GatewayStream(
                chunks=_empty(), deployment=dep.name, provider=dep.provider, attempts=tries.attempts
            )
            if call.warnings:
                result.headers.append(warnings_header(call.warnings))
            result.chunks = self._pump(
                result,
                dep,
                started,
                upstream,
                source,
                decoder,
                first,
                ended,
                plan.deadline,
                plan.client_deadline,
            )
            return result
        raise self._no_deployment(plan, tries)

    async def _pump(
        self,
        result: GatewayStream,
        dep: Deployment,
        started: float,
        upstream: UpstreamStream,
        source: AsyncIterator[bytes],
        decoder: StreamDecoder,
        first: list[Chunk],
        ended: bool,
        deadline: float,
        client_deadline: bool = False,
    ) -> AsyncGenerator[list[Chunk], None]:
        failure: UpstreamError | None = None
        try:
            if first:
                yield first
            if not ended:
                async for data in source:
                    # One batch per upstream read: one write to the client, not one per event.
                    batch = decoder.feed(data)
                    if batch:
                        yield batch
                    if self._clock() > deadline:
                        late = UpstreamTimeout(
                            f"provider {dep.provider} stream exceeded the request's total time"
                        )
                        raise as_client_deadline(late) if client_deadline else late
                tail = decoder.close()
                if tail:
                    yield tail
            result.completed = True
        except UpstreamError as err:
            err.message = self._redact(err.message)
            failure = err
            raise
        finally:
            hung_up = False
            if not result.completed:
                # The provider bills what it generated: decode what already arrived and was
                # not read, and note whether the gateway is the one hanging up on a live
                # stream (the client left, a deadline fired): then more was in flight.
                hung_up = not upstream.ended
                _feed_rest(decoder, upstream.drain())
            upstream.close()
            duration = self._clock() - started
            if failure is not None:
                self._release_error(dep, failure, started, streamed=True)
            else:
                # A client that left mid-stream says nothing about the deployment.
                self._health.release(
                    dep.name,
                    ok=result.completed,
                    duration_s=duration,
                    counts_as_failure=False,
                    streamed=True,
                )
            if result.completed and decoder.usage is not None:
                result.usage = decoder.usage
            else:
                # Tokenized in a worker thread (tiktoken releases the GIL): a long prompt is
                # milliseconds of CPU the event loop need not wait for.
                try:
                    result.usage = await asyncio.to_thread(decoder.partial_usage, hung_up)
                except asyncio.CancelledError:
                    # Cancelled again (shutdown): count here rather than lose the charge;
                    # counting only reads the decoder, so the abandoned thread is harmless.
                    result.usage = decoder.partial_usage(hung_up)
                    raise

    @staticmethod
    async def _stream_later(
        upstream: UpstreamStream | PendingStream,
        decoder: StreamDecoder | None,
        req: GatewayRequest,
        dep: Deployment,
        until: float,
    ) -> GatewayResponse | None:
        """An abandoned stream's usage, read to its end (see Abandoned): ``upstream`` is
        open, with ``decoder`` holding what was already read, or still pending."""
        if isinstance(upstream, PendingStream):
            opened = await upstream.stream()
            if opened is None:
                return None  # not even the headers before the bound: a hang
            upstream = opened
        try:
            if upstream.status >= 300:
                body = await upstream.read_all()
                raise dep.adapter.error(upstream.status, upstream.headers, body)
            if decoder is None:
                decoder = dep.adapter.stream_decoder(req, dep.target)
            async for data in upstream.rest(until):
                _feed_rest(decoder, data)
            cut = not upstream.ended
            complete = False
            if not cut:
                try:
                    decoder.close()
                    complete = True
                except UpstreamError:
                    pass  # broke off: counted so far
        finally:
            upstream.close()
        usage = decoder.usage if complete else None
        if usage is None:
            # Counted in a worker thread, as for any stream that ended early (_pump).
            usage = await asyncio.to_thread(decoder.partial_usage, cut)
        return GatewayResponse(200, b"", usage, dep.name, dep.provider)


def _feed_rest(decoder: StreamDecoder, data: bytes) -> None:
    """Decode the last bytes of a stream that ended early, for the count only."""
    if not data:
        return
    try:
        decoder.feed(data)
    except Exception:  # noqa: S110 - a half event or the provider's error: counted so far
        pass


def _substantive(chunk: Chunk) -> bool:
    """Whether a chunk carries generated content (not just the assistant role)."""
    choices = chunk.obj.get("choices")
    if not choices:
        return chunk.obj.get("usage") is not None
    for choice in choices:
        if not isinstance(choice, dict):
            return True
        if choice.get("finish_reason") is not None:
            return True
        delta = choice.get("delta")
        if (
            not isinstance(delta, dict)
            or delta.get("content")
            or delta.get("tool_calls")
            or delta.get("refusal")
        ):
            return True
        if choice.get("text"):
            return True
    return False


async def _empty() -> AsyncGenerator[list[Chunk], None]:
    return
    yield
