"""Tracing: a request continues the caller's trace, its span tree covers auth, cache,
route, each upstream attempt and accounting, and the trace id comes back in headers.

The gateway runs in this process (uvicorn on a real port, real HTTP) so an in-memory
span exporter can read what it produced.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from interlock.app import create_app
from interlock.gateway import Gateway
from interlock.settings import TracingSettings, parse_settings
from interlock.telemetry.tracing import Tracing
from tests.support.gateway import MASTER_KEY, free_port, sim_config

PARENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{PARENT_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def traced(sim_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[str, InMemorySpanExporter]]:  # fmt: skip
    work: Path = tmp_path_factory.mktemp("tracing")
    raw = sim_config(sim_url, work / "state")
    raw["models"]["fb"] = {"deployments": ["dead-chat", "sim-small"]}
    settings = parse_settings(raw)
    exporter = InMemorySpanExporter()
    gw = Gateway(settings, tracing=Tracing(TracingSettings(), exporter=exporter))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, gw), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", exporter
    finally:
        server.should_exit = True
        thread.join(15)


def test_a_request_is_one_trace_from_auth_to_accounting(
    traced: tuple[str, InMemorySpanExporter],
) -> None:
    url, exporter = traced
    exporter.clear()
    body = {"model": "fb", "messages": [{"role": "user", "content": "trace me"}]}
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=30,
                   headers={"authorization": f"Bearer {MASTER_KEY}", "traceparent": TRACEPARENT})  # fmt: skip
    assert r.status_code == 200, r.text
    # The caller's trace continues, and says so in the response.
    assert r.headers["x-interlock-trace-id"] == PARENT_TRACE
    assert r.headers["traceparent"].startswith(f"00-{PARENT_TRACE}-")

    def ours() -> list[object]:
        return [s for s in exporter.get_finished_spans()
                if f"{s.context.trace_id:032x}" == PARENT_TRACE]  # fmt: skip

    # The server span ends just after the last byte is sent.
    deadline = time.monotonic() + 5
    while not any(s.name.startswith("POST") for s in ours()) and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.02)
    spans = ours()
    by_name: dict[str, list[object]] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    assert {"POST /v1/chat/completions", "auth", "route", "upstream.attempt", "accounting"} <= set(
        by_name
    )
    server = by_name["POST /v1/chat/completions"][0]
    assert server.parent is not None and f"{server.parent.span_id:016x}" == "00f067aa0ba902b7"  # type: ignore[attr-defined]
    attempts = by_name["upstream.attempt"]
    # dead-chat failed, sim-small answered: one span each, outcome recorded.
    outcomes = sorted(a.attributes["interlock.outcome"] for a in attempts)  # type: ignore[attr-defined]
    assert len(attempts) == 2 and "ok" in outcomes
    assert server.attributes["interlock.deployment"] == "sim-small"  # type: ignore[attr-defined]
    assert server.attributes["http.response.status_code"] == 200  # type: ignore[attr-defined]
    # Children hang off the server span (directly or through route/cache).
    ids = {s.context.span_id for s in spans}
    assert all(s.parent is not None and s.parent.span_id in ids | {server.parent.span_id}  # type: ignore[attr-defined]
               for s in spans)  # fmt: skip


def test_a_request_without_traceparent_starts_a_trace(
    traced: tuple[str, InMemorySpanExporter],
) -> None:
    url, _ = traced
    r = httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert len(r.headers["x-interlock-trace-id"]) == 32
    assert r.headers["x-interlock-trace-id"] != PARENT_TRACE


def test_tracing_is_off_by_default_and_costs_no_span() -> None:
    off = Tracing(TracingSettings())
    assert not off.enabled
    with off.span("anything") as s:
        assert s is None
