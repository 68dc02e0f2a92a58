"""Streaming: chunk-by-chunk passthrough, and a client disconnect cancels the upstream."""

from __future__ import annotations

import socket
import time

import httpx
import orjson

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess


def test_chunks_arrive_before_the_answer_is_complete(http: httpx.Client, sim: SimControl) -> None:
    sim.set_config(tokens_per_s=20)  # 20 chunks take about a second
    started = time.monotonic()
    body = {"model": "chat", "stream": True, "max_tokens": 20,
            "messages": [{"role": "user", "content": "go"}]}  # fmt: skip
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        first_at = time.monotonic() - started
        rest = [line for line in lines if line.startswith("data: ")]
    total = time.monotonic() - started
    assert orjson.loads(first[6:])["object"] == "chat.completion.chunk"
    assert rest[-1] == "data: [DONE]"
    assert first_at < total / 2  # not buffered until the end


def test_client_disconnect_cancels_upstream(gateway: GatewayProcess, sim: SimControl) -> None:
    sim.set_config(tokens_per_s=10)  # 400 tokens would take 40 s
    body = orjson.dumps({"model": "chat", "stream": True, "max_tokens": 400,
                         "messages": [{"role": "user", "content": "go"}]})  # fmt: skip
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {MASTER_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", gateway.port)) as s:
        s.sendall(request)
        received = b""
        while b"data: " not in received:
            received += s.recv(4096)
    # The client is gone. The simulator's ledger entry closes once the gateway drops
    # the upstream connection, long before the 40 s the answer would take.
    deadline = time.monotonic() + 5
    while True:
        entries = sim.ledger()["entries"]
        if entries and entries[-1].get("completed") is False:
            break
        assert time.monotonic() < deadline, f"upstream still streaming: {entries}"
        time.sleep(0.1)
    assert entries[-1]["completion_tokens"] < 100
