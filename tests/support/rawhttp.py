"""HTTP/1.1 over raw sockets, for tests that must tell apart what a client library hides:
a refused connection, an answer, and a connection accepted then dropped unanswered."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

import orjson


def request_bytes(
    method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "host: test"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method == "POST":
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        data = orjson.loads(self.body)
        assert isinstance(data, dict)
        return data


class Dropped(Exception):
    """The connection was established, then closed or reset with no status line."""


def read_answer(sock: socket.socket, deadline: float) -> Answer:
    """Read one response (Content-Length or chunked); raises Dropped when the server
    closes or resets the connection before a status line."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise Dropped(f"reset after {len(buf)} bytes") from exc
        if not data:
            raise Dropped(f"closed after {len(buf)} bytes")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(status_line.split()[1])

    def more() -> bytes:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise EOFError
        return data

    if "content-length" in headers:
        need = int(headers["content-length"])
        while len(rest) < need:
            rest += more()
        return Answer(status, headers, rest[:need])
    if headers.get("transfer-encoding") == "chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            rest += more()
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2 :]
        return Answer(status, headers, body)
    return Answer(status, headers, rest)


def exchange(port: int, raw: bytes, *, timeout: float = 30.0) -> Answer | None:
    """One request on a new connection. None: the connection was refused (never
    accepted). Raises Dropped for a connection accepted and dropped unanswered."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except (ConnectionRefusedError, ConnectionResetError):
        # Reset during the handshake (the listener closed with it half-open): the
        # connection was never established, so never accepted either.
        return None
    with sock:
        try:
            sock.sendall(raw)
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise Dropped("reset while sending") from exc
        return read_answer(sock, deadline)
