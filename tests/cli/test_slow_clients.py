"""Slow clients against a real ``interlock serve``: a request head or body trickled in is
cut at its timeout (408 in the OpenAI error shape, connection closed), a connection that
sends nothing is closed, connections past the cap get 503, and everyone else is served
meanwhile."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config
from tests.support.rawhttp import Answer, Dropped, read_answer, request_bytes

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
HEAD_S = 1.0
BODY_S = 1.0
CAP = 24


@pytest.fixture(scope="module")
def gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp: Path = tmp_path_factory.mktemp("slow")
    cfg = sim_config(
        sim_url,
        tmp / "s",
        server={"header_timeout_s": HEAD_S, "body_timeout_s": BODY_S, "max_connections": CAP},
    )
    gw = GatewayProcess(cfg, tmp / "g").start(timeout=60)
    try:
        yield gw
    finally:
        gw.stop()


def _connect(gw: GatewayProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.port), timeout=10)


def _trickle_until_closed(sock: socket.socket, data: bytes, every_s: float) -> tuple[float, bytes]:
    """Send ``data`` a byte at a time until the server closes; returns (seconds, what it
    sent back)."""
    t = time.monotonic()
    got = b""
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        sock.settimeout(every_s)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        got += chunk
        if not chunk:
            break
        # an answer arrived: read to the close
        sock.settimeout(5)
        while chunk:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            got += chunk
        break
    return time.monotonic() - t, got


def _served(gw: GatewayProcess) -> float:
    t = time.monotonic()
    r = httpx.post(f"{gw.url}/v1/chat/completions", json=BODY, headers=ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    return time.monotonic() - t


def test_a_trickled_head_gets_408_within_the_header_timeout(
    gateway: GatewayProcess, sim: SimControl
) -> None:
    head = request_bytes("POST", "/v1/chat/completions", headers={"x-pad": "a" * 200})
    with _connect(gateway) as sock:
        seconds, got = _trickle_until_closed(sock, head, every_s=0.1)
    assert HEAD_S - 0.05 <= seconds < HEAD_S + 1.0, seconds
    assert got.startswith(b"HTTP/1.1 408 ")
    assert b'"code":"request_timeout"' in got and b"connection: close" in got.lower()


def test_a_silent_connection_is_closed(gateway: GatewayProcess) -> None:
    with _connect(gateway) as sock:
        t = time.monotonic()
        sock.settimeout(HEAD_S + 2)
        assert sock.recv(1024) == b""  # closed, nothing said: no request to answer
        assert time.monotonic() - t < HEAD_S + 1.0


def test_a_trickled_body_gets_408_within_the_body_timeout(
    gateway: GatewayProcess, sim: SimControl
) -> None:
    body = b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}]}'
    raw = request_bytes(
        "POST", "/v1/chat/completions", body=body,
        headers={"authorization": ADMIN["authorization"], "content-type": "application/json"},
    )  # fmt: skip
    head, _, payload = raw.partition(b"\r\n\r\n")
    with _connect(gateway) as sock:
        sock.sendall(head + b"\r\n\r\n")
        seconds, got = _trickle_until_closed(sock, payload, every_s=0.15)
    assert BODY_S - 0.05 <= seconds < BODY_S + 1.0, seconds
    assert got.startswith(b"HTTP/1.1 408 "), got[:200]
    assert b'"code":"request_timeout"' in got and b'"type":"invalid_request_error"' in got
    assert sim.ledger()["totals"]["requests"] == 0  # nothing went upstream


def test_slow_clients_do_not_stop_others_being_served(
    gateway: GatewayProcess, sim: SimControl
) -> None:
    baseline = min(_served(gateway) for _ in range(3))
    slow = [_connect(gateway) for _ in range(CAP // 2)]
    try:
        for sock in slow:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        during = [_served(gateway) for _ in range(10)]
        assert max(during) < baseline + 0.5, (baseline, during)
        time.sleep(HEAD_S + 0.5)
        for sock in slow:  # every one was cut at the header timeout
            sock.settimeout(2)
            assert sock.recv(65536).startswith(b"HTTP/1.1 408 ")
    finally:
        for sock in slow:
            sock.close()


def test_connections_past_the_cap_get_503_then_service_resumes(
    gateway: GatewayProcess, sim: SimControl
) -> None:
    held = [_connect(gateway) for _ in range(CAP)]
    try:
        time.sleep(0.2)
        with _connect(gateway) as extra:
            extra.sendall(request_bytes("GET", "/healthz", headers={"connection": "keep-alive"}))
            answer: Answer = read_answer(extra, time.monotonic() + 5)
        assert answer.status == 503
        assert answer.json()["error"]["code"] == "too_many_connections"  # type: ignore[index]
        assert answer.headers["retry-after"] == "1" and answer.headers["connection"] == "close"
    except Dropped as exc:
        raise AssertionError("a connection past the cap was dropped unanswered") from exc
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    _served(gateway)
