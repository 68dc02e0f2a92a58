"""Encoder for the AWS event-stream binary framing (``application/vnd.amazon.eventstream``).

Message layout: prelude = total length (uint32 BE) + headers length (uint32 BE), then the
CRC32 of the prelude, the headers, the payload, and the CRC32 of everything before it.
Each header: name length (1 byte), name, value type (7 = string), value length (uint16
BE), value.
"""

from __future__ import annotations

import struct
from zlib import crc32

import orjson

__all__ = ["encode_event", "encode_headers", "encode_message"]

_STRING = 7


def encode_headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        n = name.encode("utf-8")
        v = value.encode("utf-8")
        out += struct.pack(">B", len(n)) + n + struct.pack(">BH", _STRING, len(v)) + v
    return bytes(out)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string ``headers`` and raw ``payload``."""
    hdr = encode_headers(headers)
    total = 12 + len(hdr) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hdr))
    body = prelude + struct.pack(">I", crc32(prelude)) + hdr + payload
    return body + struct.pack(">I", crc32(body))


def encode_event(event_type: str, data: object) -> bytes:
    """A Bedrock-style JSON event (``:message-type`` event)."""
    return encode_message(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        orjson.dumps(data),
    )
