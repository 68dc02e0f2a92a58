"""Run `interlock serve` with experimental hot-path patches applied (bench only).

    python bench/patched_interlock.py --patches coalesce,lazy-sse serve --config F --port P

The patches are monkeypatches that stand in for source changes, so a proposed fix can be
measured (bench/experiments.py) before anyone edits src/. They are measurement devices,
not implementations: ``coalesce`` and ``lazy-sse`` in particular only keep the
`/v1/chat/completions` OpenAI stream path correct.

- ``coalesce``: one ASGI send per upstream read instead of one per SSE event (the
  decoder merges the events of one read into one chunk whose raw bytes hold them all).
- ``lazy-sse``: parse a stream event with orjson only if it can carry usage or an error.
- ``metrics-cache``: cache prometheus label children instead of ``labels()`` per call.
- ``no-metrics``: no Prometheus work at all on the request path (an upper bound).
- ``no-timeouts``: drop the per-request ``asyncio.timeout`` scopes in the transport
  (an upper bound on what cheaper deadline handling could save).
- ``no-proxy-headers``: run uvicorn with ``proxy_headers=False`` (no middleware layer).
- ``no-ledger``: no ledger record at all (spool + background database flush); an upper
  bound on what the spend ledger costs per request.
- ``ledger-no-db-insert``: spool and drain as usual but skip the database INSERT, which
  splits the ledger's cost into spooling and database work.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

PATCHES: dict[str, Callable[[], None]] = {}


def patch(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def register(fn: Callable[[], None]) -> Callable[[], None]:
        PATCHES[name] = fn
        return fn

    return register


@patch("coalesce")
def _coalesce() -> None:
    from interlock.providers import openai_compat
    from interlock.types import Chunk

    original = openai_compat.OpenAIStreamDecoder.feed

    def feed(self: Any, data: bytes) -> list[Chunk]:
        chunks = original(self, data)
        if len(chunks) <= 1 or any(c.raw is None for c in chunks):
            return list(chunks)
        # The route writes b"data: " + raw + b"\n\n": joining the raws with the separator
        # in between yields every event, in order, in one write.
        raw = b"\n\ndata: ".join(c.raw for c in chunks if c.raw is not None)
        return [Chunk(chunks[-1].obj, raw)]

    openai_compat.OpenAIStreamDecoder.feed = feed  # type: ignore[method-assign]


@patch("lazy-sse")
def _lazy_sse() -> None:
    from interlock.providers import openai_compat
    from interlock.types import Chunk

    original = openai_compat.OpenAIStreamDecoder._event

    def _event(self: Any, data: bytes) -> Chunk | None:
        if data == b"[DONE]" or b'"usage"' in data or b'"error"' in data:
            result: Chunk | None = original(self, data)
            return result
        self._chars += len(data) // 8  # a crude stand-in for the content-length estimate
        return Chunk({}, data)

    openai_compat.OpenAIStreamDecoder._event = _event  # type: ignore[method-assign]


@patch("metrics-cache")
def _metrics_cache() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    original = MetricWrapperBase.labels
    cache: dict[tuple[int, tuple[object, ...]], Any] = {}

    def labels(self: Any, *values: object, **kw: object) -> Any:
        if kw:
            return original(self, *values, **kw)
        key = (id(self), values)
        child = cache.get(key)
        if child is None:
            child = cache[key] = original(self, *values)
        return child

    MetricWrapperBase.labels = labels  # type: ignore[assignment]


@patch("no-metrics")
def _no_metrics() -> None:
    from interlock.telemetry import metrics

    class _Nop:
        def inc(self, *a: object) -> None: ...
        def dec(self, *a: object) -> None: ...
        def observe(self, *a: object) -> None: ...

    nop = _Nop()

    class _Family:
        def labels(self, *a: object) -> _Nop:
            return nop

    original_init = metrics.Metrics.__init__

    def __init__(self: Any, *a: Any, **kw: Any) -> None:
        original_init(self, *a, **kw)
        self.in_flight = _Family()

    metrics.Metrics.__init__ = __init__  # type: ignore[method-assign]
    for name in ("observe_request", "observe_attempt", "observe_tokens", "observe_ttft"):
        setattr(metrics.Metrics, name, lambda self, *a, **kw: None)


@patch("no-timeouts")
def _no_timeouts() -> None:
    import asyncio
    import types

    from interlock.providers import transport

    shim = types.SimpleNamespace(**{k: getattr(asyncio, k) for k in dir(asyncio) if k[:1] != "_"})
    shim.timeout = lambda _s: contextlib.nullcontext()
    transport.asyncio = shim  # type: ignore[attr-defined]


@patch("no-proxy-headers")
def _no_proxy_headers() -> None:
    import uvicorn

    original = uvicorn.run

    def run(*a: Any, **kw: Any) -> None:
        kw.setdefault("proxy_headers", False)
        original(*a, **kw)

    uvicorn.run = run


@patch("no-ledger")
def _no_ledger() -> None:
    from interlock.spend import ledger

    ledger.LedgerWriter.record = lambda self, rec: None  # type: ignore[method-assign]


@patch("ledger-no-db-insert")
def _ledger_no_db_insert() -> None:
    from interlock.storage import ledger

    async def insert_many(self: Any, rows: list[dict[str, Any]]) -> None:
        return None

    ledger.LedgerStore.insert_many = insert_many  # type: ignore[method-assign]


def main() -> None:
    argv = sys.argv[1:]
    names: list[str] = []
    if argv[:1] == ["--patches"]:
        names = [n for n in argv[1].split(",") if n and n != "none"]
        argv = argv[2:]
    for name in names:
        PATCHES[name]()
    from interlock.cli.main import main as interlock_main

    sys.argv = ["interlock", *argv]
    interlock_main()


if __name__ == "__main__":
    main()
