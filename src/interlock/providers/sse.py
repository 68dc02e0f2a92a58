"""Incremental Server-Sent Events parsing.

Written by hand because it sits on the streaming hot path: it splits on event
boundaries without copying more than the unfinished tail and without a generic
line-reader; the format (WHATWG SSE) is small and stable.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class SSEEvent:
    event: str
    data: bytes


class SSEParser:
    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[SSEEvent]:
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            ev = _parse_block(buf[start:end])
            if ev is not None:
                events.append(ev)
            start = end + 2
        self._buf = buf[start:]
        return events

    @property
    def pending(self) -> bytes:
        """Bytes received after the last complete event."""
        return self._buf

    def flush(self) -> list[SSEEvent]:
        """End of input: a final block without the blank line still counts."""
        rest, self._buf = self._buf.strip(b"\n"), b""
        if not rest:
            return []
        ev = _parse_block(rest)
        return [ev] if ev is not None else []


def _parse_block(block: bytes) -> SSEEvent | None:
    # The shape of nearly every event on the hot path: one "data: ..." line.
    if block.startswith(b"data: ") and b"\n" not in block:
        return SSEEvent("message", block[6:])
    event = "message"
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if not data:
        return None
    return SSEEvent(event, b"\n".join(data))


def encode(data: bytes, event: str | None = None) -> bytes:
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"
