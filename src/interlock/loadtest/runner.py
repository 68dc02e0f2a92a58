"""The engine: send each request at its intended time and record what happened.

One coroutine walks the schedule and starts a task per request when it is due; it
never waits for answers, so the arrival rate is the schedule's whatever the target
does. Each latency is measured from the request's *actual* send: the moment its bytes
are handed to the HTTP client (a wait for a free connection in the pool is after that,
so it counts against the target). How far each actual send was from its intended time
is the dispatch ``lag``, reported on its own: the generator's precision, not the
target's latency. Measuring from the intended time instead mixed the two, and a timer
that wakes early (uvloop's can, by up to ~0.4 ms) made answers look impossibly fast.

The run is bounded twice: the schedule ends (count or duration), then in-flight
requests get at most ``timeout_s`` before they are cancelled and counted unfinished.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from interlock.loadtest.http import Disconnected, Pool, ProtocolError
from interlock.loadtest.schedule import Schedule
from interlock.loadtest.workload import Kind, Workload

__all__ = ["Live", "Outcome", "RunConfig", "RunResult", "run"]

_CODE = re.compile(r"[^a-z0-9_]")
# Yield to the event loop at least this often while catching up on overdue sends, so
# in-flight responses keep being read during a burst.
_BURST = 32


@dataclass(slots=True)
class Outcome:
    kind: Kind
    intended_s: float  # offset of the intended send time from the start
    lag_s: float  # actual send - intended send (negative: a timer woke early)
    latency_s: float | None = None  # actual send → response complete; None: unfinished
    ttft_s: float | None = None  # actual send → first streamed event (streams only)
    error: str | None = None  # None: success
    output_tokens: int = 0


@dataclass
class Live:
    """Counters the progress bar reads while the run goes on."""

    planned: int
    sent: int = 0
    done: int = 0
    errors: int = 0
    recent_ms: list[float] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return self.sent - self.done


@dataclass(frozen=True)
class RunConfig:
    base_url: str  # the /v1 base
    schedule: Schedule
    workload: Workload
    api_key: str | None = None
    timeout_s: float = 30.0
    connections: int = 256
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class RunResult:
    outcomes: list[Outcome]
    started_at: str  # ISO 8601, UTC
    first_send_s: float  # actual send time of the first request, from the start
    last_send_s: float
    wall_s: float  # start → last answer (or cancellation)
    stopped_early: bool = False


def default_connections(peak_rate: float, timeout_s: float) -> int:
    """A pool big enough for the rate at a slow-but-plausible 1 s latency, capped so a
    high rate does not exhaust file descriptors; beyond it requests wait for a
    connection, and that wait counts in their latency."""
    return int(min(max(peak_rate * min(timeout_s, 1.0), 32), 2048))


async def run(
    config: RunConfig,
    on_tick: Callable[[Live], None] | None = None,
    stop: asyncio.Event | None = None,
) -> RunResult:
    stop = stop or asyncio.Event()
    live = Live(planned=config.schedule.expected_count())
    headers = {"content-type": "application/json", **dict(config.headers)}
    if config.api_key:
        headers["authorization"] = f"Bearer {config.api_key}"
    pool = Pool(config.base_url, config.connections, headers)
    outcomes: list[Outcome] = []
    tasks: set[asyncio.Task[None]] = set()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    clock = time.perf_counter
    ticker = asyncio.create_task(_tick(live, on_tick)) if on_tick else None
    start = clock() + 0.02
    burst = 0
    try:
        for i, offset in enumerate(config.schedule.offsets()):
            if stop.is_set():
                break
            # Build the request before it is due, so its cost is not in the dispatch lag.
            req = config.workload.request(i)
            data = pool.encode(req.path, req.body)
            due = start + offset
            delay = due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
                burst = 0
            elif (burst := burst + 1) >= _BURST:
                await asyncio.sleep(0)
                burst = 0
            # the dispatch time; _send replaces it with the hand-off to the client
            outcome = Outcome(req.kind, offset, clock() - due)
            outcomes.append(outcome)
            task = asyncio.create_task(
                _send(pool, req.kind, data, due, outcome, live, config.timeout_s)
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            live.sent += 1
        if tasks:
            # Every request has its own timeout; this bound only guards the guard.
            await asyncio.wait(set(tasks), timeout=config.timeout_s + 1.0)
    finally:
        for task in list(tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        pool.close()
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        if on_tick is not None:
            on_tick(live)
    wall = clock() - start
    sends = [o.intended_s + o.lag_s for o in outcomes]
    first, last = (min(sends), max(sends)) if sends else (0.0, 0.0)
    return RunResult(outcomes, started_at, first, last, wall, stop.is_set())


async def _tick(live: Live, on_tick: Callable[[Live], None] | None) -> None:
    assert on_tick is not None
    while True:
        await asyncio.sleep(0.25)
        on_tick(live)


async def _send(pool: Pool, kind: Kind, data: bytes, due: float, out: Outcome, live: Live,
                timeout_s: float) -> None:  # fmt: skip
    clock = time.perf_counter
    sent = clock()
    out.lag_s = sent - due
    sse = _SseReader(sent, out) if kind == "stream" else None
    try:
        async with asyncio.timeout(timeout_s):
            resp = await pool.post(data, sse, collect=sse is None)
        if resp.status != 200:
            out.error = _http_error(resp.status, resp.body)
        elif sse is not None:
            sse.finish()
        else:
            out.output_tokens = _completion_tokens(resp.body)
    except TimeoutError:
        out.error = "timeout"
    except Disconnected:
        out.error = "disconnected"
    except ProtocolError:
        out.error = "protocol_error"
    except OSError:
        out.error = "connect_error"
    except Exception as exc:  # a bug here must cost one outcome, never the run
        out.error = "client_error:" + type(exc).__name__
    except asyncio.CancelledError:
        out.error = "unfinished"
        live.done += 1
        live.errors += 1
        raise
    out.latency_s = clock() - sent
    live.done += 1
    if out.error is not None:
        live.errors += 1
    else:
        recent = live.recent_ms
        recent.append(out.latency_s * 1000)
        if len(recent) > 2000:
            del recent[:1000]


class _SseReader:
    """Reads SSE as the chunks arrive: first ``data:`` event = TTFT; an error event, or
    a stream without ``[DONE]``, is a failure even though the status was 200."""

    __slots__ = ("_buf", "_done", "_out", "_sent")

    def __init__(self, sent: float, out: Outcome) -> None:
        self._sent, self._out = sent, out
        self._buf = b""
        self._done = False

    def __call__(self, chunk: bytes) -> None:
        out = self._out
        if out.ttft_s is None and b"data:" in chunk:
            out.ttft_s = time.perf_counter() - self._sent
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self._done = True
            elif payload.startswith(b'{"error"'):
                out.error = "stream_error"
            elif b'"content"' in payload:
                out.output_tokens += 1

    def finish(self) -> None:
        self(b"\n")
        if not self._done and self._out.error is None:
            self._out.error = "stream_incomplete"


def _completion_tokens(body: bytes) -> int:
    try:
        usage = orjson.loads(body).get("usage") or {}
        return int(usage.get("completion_tokens") or 0)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 0


def _http_error(status: int, body: bytes) -> str:
    """``http_429:rate_limited``: the status plus the OpenAI error ``code`` when there is
    one (sanitised: the label must stay a short identifier, whatever the server sent)."""
    code = ""
    with contextlib.suppress(Exception):
        err = orjson.loads(body).get("error")
        if isinstance(err, dict) and isinstance(err.get("code"), str):
            code = _CODE.sub("_", err["code"].lower())[:40]
    return f"http_{status}:{code}" if code else f"http_{status}"
