"""Shared machinery of the simulated provider: state, request log, fault handling,
latency, and the generic non-stream / stream response pipeline used by every format."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from interlock.sim.config import SimConfig
from interlock.sim.engine import Choice, GenSpec, generate
from interlock.sim.faults import FaultDecision, FaultEngine
from interlock.sim.ledger import Ledger

__all__ = [
    "STATE_KEY",
    "BadRequest",
    "ErrorFn",
    "Renderer",
    "SimState",
    "StreamParts",
    "json_response",
    "run_faults",
    "serve",
    "state_of",
]

LOG_SIZE = 200
LOG_BODY_LIMIT = 64 * 1024

# (status, message, retry_after) -> an error response in the format's own shape
ErrorFn = Callable[[int, str, float | None], web.Response]


class BadRequest(Exception):
    """Raised by request parsers; becomes a 400 (or ``status``) in the format's shape."""

    def __init__(
        self, message: str, status: int = 400, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code


class SimState:
    """Everything mutable the simulator holds; one per application."""

    def __init__(self, cfg: SimConfig) -> None:
        self.initial = cfg
        self.cfg = cfg
        self.faults = FaultEngine(cfg.faults, cfg.seed)
        self.ledger = Ledger()
        self.log: deque[tuple[str, str, str, Any, bytes]] = deque(maxlen=LOG_SIZE)
        self._ids = itertools.count(1)
        self.closing = False  # set on application shutdown: hanging requests give up

    def next_id(self) -> str:
        return f"{next(self._ids):08x}"

    def set_config(self, cfg: SimConfig) -> None:
        rebuild = cfg.faults != self.cfg.faults or cfg.seed != self.cfg.seed
        self.cfg = cfg
        if rebuild:
            self.faults = FaultEngine(cfg.faults, cfg.seed)

    def reset(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.faults = FaultEngine(cfg.faults, cfg.seed)
        self.ledger.clear()
        self.log.clear()
        self._ids = itertools.count(1)

    async def read(self, request: web.Request) -> bytes:
        """Read the body and append the request to the log (cheap: raw values only)."""
        body = await request.read()
        self.log.append(
            (
                request.method,
                request.path,
                request.query_string,
                request.raw_headers,
                body[:LOG_BODY_LIMIT],
            )
        )
        return body

    def requests(self) -> list[dict[str, Any]]:
        out = []
        for method, path, query_string, raw_headers, body in self.log:
            out.append(
                {
                    "method": method,
                    "path": path,
                    "query_string": query_string,
                    "query": dict(parse_qsl(query_string, keep_blank_values=True)),
                    "headers": {
                        k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw_headers
                    },
                    "body": body.decode("utf-8", errors="replace"),
                }
            )
        return out


STATE_KEY: web.AppKey[SimState] = web.AppKey("interlock_sim_state", SimState)


def state_of(request: web.Request) -> SimState:
    return request.app[STATE_KEY]


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


@dataclass(slots=True)
class StreamParts:
    """A rendered stream: framing before content, content chunks (bytes, tokens), the end."""

    head: list[bytes]
    content: list[tuple[bytes, int]]
    tail: list[bytes]
    content_type: str = "text/event-stream"
    broken: bytes = b'data: {"id": "broken", "choices": [{"delta": \n\n'
    headers: dict[str, str] = field(default_factory=dict)


class Renderer(Protocol):
    def body(self, choices: list[Choice]) -> Any: ...

    def stream(self, choices: list[Choice]) -> StreamParts: ...


async def _wait_for_disconnect(request: web.Request, st: SimState, limit_s: float = 3600.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline and not st.closing:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await asyncio.sleep(0.05)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


async def run_faults(
    request: web.Request,
    st: SimState,
    *,
    fmt: str,
    model: str,
    stream: bool,
    error: ErrorFn,
) -> tuple[FaultDecision, web.StreamResponse | None]:
    """Apply latency and the faults that replace the answer (status, timeout, reset).

    Returns the decision (malformed / cut_stream are applied by :func:`serve`) and a
    response to send instead of the answer, if any.
    """
    decision = st.faults.decide(request.path, model, fmt, stream)
    if decision.latency_ms:
        await asyncio.sleep(decision.latency_ms / 1000)
    fault = decision.fault
    if fault is None:
        return decision, None
    ftype = fault["type"]
    if ftype == "status":
        status = int(fault["status"])
        st.ledger.record(
            st.cfg,
            id=st.next_id(),
            format=fmt,
            model=model,
            stream=stream,
            prompt_tokens=0,
            completion_tokens=0,
            status=status,
            completed=False,
            fault="status",
        )
        message = fault.get("message") or f"simulated error {status}"
        return decision, error(status, message, fault.get("retry_after"))
    if ftype == "timeout":
        st.ledger.record(
            st.cfg,
            id=st.next_id(),
            format=fmt,
            model=model,
            stream=stream,
            prompt_tokens=0,
            completion_tokens=0,
            status=0,
            completed=False,
            fault="timeout",
        )
        await _wait_for_disconnect(request, st)
        _abort(request)
        return decision, web.Response(status=504)
    if ftype == "reset":
        st.ledger.record(
            st.cfg,
            id=st.next_id(),
            format=fmt,
            model=model,
            stream=stream,
            prompt_tokens=0,
            completion_tokens=0,
            status=0,
            completed=False,
            fault="reset",
        )
        _abort(request)
        return decision, web.Response(status=502)
    return decision, None


async def serve(
    request: web.Request,
    st: SimState,
    *,
    fmt: str,
    spec: GenSpec,
    decision: FaultDecision,
    renderer_factory: Callable[[str], Renderer],
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Generate the answer for ``spec`` and send it, as JSON or as a stream."""
    cfg = st.cfg
    rid = st.next_id()
    renderer = renderer_factory(rid)
    choices = generate(cfg, spec)
    fault = decision.fault
    ftype = fault["type"] if fault is not None else None
    if cfg.ttft_ms:
        await asyncio.sleep(cfg.ttft_ms / 1000)

    if not spec.stream:
        completion = sum(c.completion_tokens for c in choices)
        if ftype == "malformed":
            st.ledger.record(
                cfg,
                id=rid,
                format=fmt,
                model=spec.model,
                stream=False,
                prompt_tokens=spec.prompt_tokens,
                completion_tokens=0,
                status=200,
                completed=False,
                fault="malformed",
            )
            return web.Response(
                body=b'{"id": "sim-broken", "choices": [{"message": <html',
                content_type="application/json",
                headers=headers,
            )
        if cfg.tokens_per_s and completion:
            await asyncio.sleep(completion / cfg.tokens_per_s)
        payload = orjson.dumps(renderer.body(choices))
        st.ledger.record(
            cfg,
            id=rid,
            format=fmt,
            model=spec.model,
            stream=False,
            prompt_tokens=spec.prompt_tokens,
            completion_tokens=completion,
            status=200,
        )
        return web.Response(body=payload, content_type="application/json", headers=headers)

    parts = renderer.stream(choices)
    resp = web.StreamResponse(
        headers={"Cache-Control": "no-cache", **(headers or {}), **parts.headers}
    )
    resp.content_type = parts.content_type
    sent_tokens = 0
    completed = False
    fault_name: str | None = None
    try:
        await resp.prepare(request)
        if ftype == "malformed":
            fault_name = "malformed"
            await resp.write(b"".join(parts.head) + parts.broken)
            await resp.write_eof()
        elif ftype == "cut_stream":
            fault_name = "cut_stream"
            assert fault is not None
            keep = parts.content[: int(fault.get("after_chunks", 0))]
            delay = 1.0 / cfg.tokens_per_s if cfg.tokens_per_s else 0.0
            buf = b"".join(parts.head)
            for i, (chunk, tokens) in enumerate(keep):
                if delay and i:
                    await resp.write(buf)
                    buf = b""
                    await asyncio.sleep(delay)
                buf += chunk
                sent_tokens += tokens
            await resp.write(buf)
            _abort(request)
        elif not cfg.tokens_per_s:
            sent_tokens = sum(t for _, t in parts.content)
            await resp.write(
                b"".join(parts.head) + b"".join(c for c, _ in parts.content) + b"".join(parts.tail)
            )
            completed = True
        else:
            delay = 1.0 / cfg.tokens_per_s
            buf = b"".join(parts.head)
            for i, (chunk, tokens) in enumerate(parts.content):
                if i:
                    await resp.write(buf)
                    buf = b""
                    await asyncio.sleep(delay)
                buf += chunk
                sent_tokens += tokens
            await resp.write(buf + b"".join(parts.tail))
            completed = True
    except ConnectionError:
        completed = False
    st.ledger.record(
        cfg,
        id=rid,
        format=fmt,
        model=spec.model,
        stream=True,
        prompt_tokens=spec.prompt_tokens,
        completion_tokens=sent_tokens,
        status=200,
        completed=completed,
        fault=fault_name,
    )
    return resp
