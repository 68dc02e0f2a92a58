"""The small slice of ASGI the API needs: read a capped body, send JSON, send SSE.

The API is plain ASGI rather than a framework's Request/Response objects because it is
the hot path: each request costs two ``send`` calls and one dict of headers, which the
benchmark in bench/core.py measures (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

import orjson

from interlock.errors import (
    InterlockError,
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    error_body,
)
from interlock.telemetry.redact import redact_key_shapes

if TYPE_CHECKING:
    from interlock.api.services import Services

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_CT = (b"content-type", b"application/json")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Ctx:
    """One HTTP request: its scope, channels, headers and the response headers to add."""

    __slots__ = (
        "_headers",
        "body_timeout_s",
        "error_code",
        "model",
        "path_params",
        "receive",
        "request_id",
        "response_headers",
        "scope",
        "send",
        "services",
        "started",
        "status",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.started = time.perf_counter()
        self._headers: dict[bytes, bytes] | None = None
        self.path_params: dict[str, str] = {}
        # The whole body must arrive within this of the first read (server.body_timeout_s,
        # set by the app); None: no bound (in-process callers).
        self.body_timeout_s: float | None = None
        # What the composition root (app.py) built next to the gateway: the job runtime,
        # the dashboard's spend cache. None where none runs (in-process callers).
        self.services: Services | None = None
        self.status = 0
        self.model = "-"  # metrics label: a configured alias, never raw client input
        self.error_code: str | None = None
        # Always the gateway's own id: it keys the ledger, so a client cannot make two
        # requests share one (and lose a record).
        rid = _next_request_id()
        self.request_id = rid
        self.response_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", rid.encode())]

    @property
    def headers(self) -> dict[bytes, bytes]:
        if self._headers is None:
            self._headers = {k.lower(): v for k, v in self.scope["headers"]}
        return self._headers

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else None

    def bearer(self) -> str | None:
        auth = self.headers.get(b"authorization")
        if auth is not None:
            scheme, _, token = auth.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
        # Anthropic-style and Azure-style clients send the key in their own header.
        for name in (b"x-api-key", b"api-key"):
            value = self.headers.get(name)
            if value:
                return value.decode("latin-1").strip()
        return None

    def query(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        raw = self.scope.get("query_string", b"").decode("latin-1")
        return dict(parse_qsl(raw, keep_blank_values=True))

    async def read_body(self, limit: int) -> bytes:
        """The whole body, at most ``limit`` bytes (413), arriving within
        ``body_timeout_s`` (408 request_timeout, and the connection is closed): a client
        that trickles its body in cannot hold a worker's connection indefinitely."""
        declared = self.headers.get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise PayloadTooLarge(f"request body is larger than {limit} bytes")
            except ValueError:
                raise InvalidRequest("invalid Content-Length header") from None
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    msg = await self.receive()
                    if msg["type"] == "http.disconnect":
                        raise ClientGone
                    body = msg.get("body", b"")
                    if body:
                        size += len(body)
                        if size > limit:
                            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
                        chunks.append(body)
                    if not msg.get("more_body", False):
                        break
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {self.body_timeout_s:g}s"
            ) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def respond(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.status = status
        out = [JSON_CT, (b"content-length", str(len(body)).encode()), *self.response_headers]
        if headers:
            out.extend(headers)
        await self.send({"type": "http.response.start", "status": status, "headers": out})
        await self.send({"type": "http.response.body", "body": body})

    async def respond_json(self, status: int, data: Any) -> None:
        await self.respond(status, orjson.dumps(data))

    async def respond_error(self, err: InterlockError) -> None:
        self.error_code = err.code
        # Messages may quote client input (a model name); a pasted key is not repeated.
        err.message = redact_key_shapes(err.message)
        await self.respond(err.status, error_body(err), err.headers())

    async def start_stream(self, status: int = 200) -> None:
        self.status = status
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": SSE_HEADERS + self.response_headers,
            }
        )

    async def stream_write(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def stream_end(self, data: bytes = b"") -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": False})


_ID_PREFIX = "req_" + secrets.token_hex(6)
_ids = itertools.count(1)


def _next_request_id() -> str:
    """Unique per process (random prefix) and cheap (a counter): 48 random bits per
    process make a collision between processes about as likely as a UUID's."""
    return f"{_ID_PREFIX}{next(_ids):012x}"


class ClientGone(Exception):
    """The client disconnected before the request was read."""


def parse_json_object(ctx: Ctx, body: bytes, max_depth: int) -> dict[str, Any]:
    """Parse a JSON object body, with the checks a public endpoint needs."""
    ctype = ctx.headers.get(b"content-type")
    if ctype is not None:
        media = ctype.split(b";", 1)[0].strip().lower()
        if media != b"application/json" and not media.endswith(b"+json"):
            raise UnsupportedMediaType(
                "Content-Type must be application/json", code="unsupported_media_type"
            )
    if not body or not body.strip():
        raise InvalidRequest("request body is empty; expected a JSON object", code="empty_body")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc):
            raise InvalidRequest("JSON nesting is too deep", code="json_too_deep") from None
        if "utf-8" in str(exc).lower():
            raise InvalidRequest("request body is not valid UTF-8", code="invalid_utf8") from None
        raise InvalidRequest(
            f"request body is not valid JSON ({_short(exc)})", code="invalid_json"
        ) from None
    except RecursionError:
        raise InvalidRequest("JSON nesting is too deep", code="json_too_deep") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object", code="invalid_json")
    # Cheap pre-check: a body with fewer brackets than the limit cannot be too deep.
    if body.count(b"[") + body.count(b"{") > max_depth and _depth(data) > max_depth:
        raise InvalidRequest(
            f"JSON nesting is deeper than {max_depth} levels", code="json_too_deep"
        )
    return data


def _short(exc: Exception) -> str:
    return str(exc).split(":", 1)[0][:100]


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return deepest
