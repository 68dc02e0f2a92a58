"""Fault injection and latency shaping, observed over real HTTP."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from interlock.sim import SimControl

CHAT = {"model": "sim-small", "messages": [{"role": "user", "content": "hello"}]}


def test_status_fault_count_retry_after_and_match(http: httpx.Client, sim: SimControl) -> None:
    sim.set_faults(
        [
            {
                "type": "status",
                "status": 429,
                "retry_after": 2,
                "count": 2,
                "match": {"model": "sim-small", "path": "chat/completions"},
            }
        ]
    )
    other = http.post("/v1/chat/completions", json={**CHAT, "model": "sim-large"})
    assert other.status_code == 200
    for _ in range(2):
        r = http.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 429 and r.headers["Retry-After"] == "2"
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    ledger = sim.ledger()
    assert [e["status"] for e in ledger["entries"]] == [200, 429, 429, 200]
    assert ledger["totals"]["ok"] == 2 and ledger["totals"]["errors"] == 2
    assert sim.faults()[0]["remaining"] == 0


@pytest.mark.parametrize(
    ("status", "kind"), [(500, "api_error"), (529, "overloaded_error"), (429, "rate_limit_error")]
)
def test_status_fault_in_anthropic_shape(
    http: httpx.Client, sim: SimControl, anthropic_headers: dict[str, str], status: int, kind: str
) -> None:
    sim.set_faults([{"type": "status", "status": status}])
    r = http.post(
        "/v1/messages",
        headers=anthropic_headers,
        json={
            "model": "sim-small",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert r.status_code == status and r.json()["error"]["type"] == kind


def test_status_fault_gemini_and_bedrock_shapes(
    http: httpx.Client,
    sim: SimControl,
    gemini_headers: dict[str, str],
    bedrock_headers: dict[str, str],
) -> None:
    sim.set_faults([{"type": "status", "status": 429, "retry_after": 1.5}])
    g = http.post(
        "/v1beta/models/sim-small:generateContent",
        headers=gemini_headers,
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    )
    assert g.status_code == 429 and g.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert g.headers["Retry-After"] == "1.5"
    b = http.post(
        "/model/sim-small/converse",
        headers=bedrock_headers,
        json={"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
    )
    assert b.status_code == 429 and "message" in b.json()
    assert b.headers["x-amzn-ErrorType"].startswith("ThrottlingException")


def test_probability_is_deterministic_for_the_seed(http: httpx.Client, sim: SimControl) -> None:
    def pattern() -> list[int]:
        sim.reset(initial=True, faults=[{"type": "status", "status": 503, "probability": 0.5}])
        return [http.post("/v1/chat/completions", json=CHAT).status_code for _ in range(20)]

    first = pattern()
    assert first == pattern()
    assert 503 in first and 200 in first


def test_timeout_fault(http: httpx.Client, sim: SimControl) -> None:
    sim.set_faults([{"type": "timeout", "count": 1}])
    with pytest.raises(httpx.ReadTimeout):
        http.post("/v1/chat/completions", json=CHAT, timeout=0.5)
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200


def test_reset_fault(http: httpx.Client, sim: SimControl) -> None:
    sim.set_faults([{"type": "reset", "count": 1}])
    with pytest.raises(httpx.TransportError):
        http.post("/v1/chat/completions", json=CHAT)
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert [e["fault"] for e in sim.ledger()["entries"]] == ["reset", None]


def test_malformed_fault_plain_and_stream(
    http: httpx.Client, sim: SimControl, anthropic_headers: dict[str, str]
) -> None:
    sim.set_faults([{"type": "malformed", "count": 3}])
    r = http.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        orjson.loads(r.content)
    s = http.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert s.status_code == 200
    datas = [b[6:] for b in s.text.split("\n\n") if b.startswith("data: ")]
    with pytest.raises(ValueError):
        for d in datas:
            orjson.loads(d)
    a = http.post(
        "/v1/messages",
        headers=anthropic_headers,
        json={
            "model": "sim-small",
            "max_tokens": 5,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert "message_stop" not in a.text
    assert [e["completed"] for e in sim.ledger()["entries"]] == [False, False, False]


def _read_stream(
    client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[bytes, bool]:
    """The bytes received and whether the connection broke before the end."""
    received = b""
    try:
        with client.stream("POST", path, json=body, headers=headers) as r:
            for chunk in r.iter_bytes():
                received += chunk
    except httpx.TransportError:
        return received, True
    return received, False


def test_cut_stream_fault(
    http: httpx.Client, sim: SimControl, anthropic_headers: dict[str, str]
) -> None:
    sim.set_faults([{"type": "cut_stream", "after_chunks": 3}])
    # a non-stream request is not affected
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    data, broken = _read_stream(http, "/v1/chat/completions", {**CHAT, "stream": True})
    assert broken and b"[DONE]" not in data
    chunks = [orjson.loads(b[6:]) for b in data.decode().split("\n\n") if b.startswith("data: ")]
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) == 3
    data, broken = _read_stream(
        http,
        "/v1/messages",
        {
            "model": "sim-small",
            "max_tokens": 50,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
        anthropic_headers,
    )
    assert broken and data.count(b"event: content_block_delta") == 3
    assert b"message_stop" not in data
    entries = sim.ledger()["entries"]
    assert [(e["completed"], e["completion_tokens"]) for e in entries] == [
        (True, 16),
        (False, 3),
        (False, 3),
    ]


def test_latency_fault_and_ttft(http: httpx.Client, sim: SimControl) -> None:
    sim.set_faults([{"type": "latency", "ms": 300, "count": 1}])
    t0 = time.perf_counter()
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert time.perf_counter() - t0 >= 0.3
    t0 = time.perf_counter()
    http.post("/v1/chat/completions", json=CHAT)
    assert time.perf_counter() - t0 < 0.3
    sim.set_config(ttft_ms=250)
    t0 = time.perf_counter()
    http.post("/v1/chat/completions", json=CHAT)
    assert time.perf_counter() - t0 >= 0.25


def test_tokens_per_s_paces_stream(http: httpx.Client, sim: SimControl) -> None:
    sim.set_config(tokens_per_s=100, output_tokens=20)
    arrivals: list[float] = []
    t0 = time.perf_counter()
    with http.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        for _ in r.iter_lines():
            arrivals.append(time.perf_counter() - t0)
    # 19 gaps of 10 ms between 20 content chunks
    assert arrivals[-1] >= 0.18
