"""A minimal pass-through relay: the floor of Python proxying on Interlock's own stack.

uvicorn + uvloop + httptools serve a raw ASGI app (no framework) that forwards the
request body to one upstream through one pooled HTTP client and sends the answer back:
whole (with a Content-Length) when the upstream sent one, chunk by chunk when it did not
or when it is an event stream (SSE). No auth,
no parsing, no metrics: whatever Interlock adds on top of this is the gateway's cost.

    python bench/relay.py --port 9000 --upstream http://127.0.0.1:9001
    python bench/relay.py --port 9000 --upstream URL --client httpx      # the httpx variant
    python bench/relay.py --port 9000 --app hello                        # a trivial app
    python bench/relay.py --port 9000 --upstream URL --server granian    # served by granian

The same apps are importable (``relay:app_from_env``, configured by the ``RELAY_*``
environment variables) so that granian can serve them from its own worker process.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HELLO = b'{"ok":true}'
_FORWARDED = (b"content-type", b"authorization")


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        msg = await receive()
        if msg["type"] != "http.request":  # http.disconnect
            return b""
        parts.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(parts)


async def _lifespan(
    receive: Receive, send: Send, on_shutdown: Callable[[], Awaitable[None]]
) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await on_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _nothing() -> None:
    return None


async def hello_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The trivial app the server comparison serves: read the body, answer a fixed JSON."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send, _nothing)
        return
    await _read_body(receive)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"11")],
        }
    )
    await send({"type": "http.response.body", "body": _HELLO})


class AiohttpRelay:
    """Forward with one pooled ``aiohttp.ClientSession`` (Interlock's upstream client)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._session: Any = None

    def _client(self) -> Any:
        if self._session is None:  # created lazily: it must live on the serving loop
            import aiohttp

            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.close)
            return
        body = await _read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k in _FORWARDED}
        url = self.upstream + scope["path"]
        async with self._client().request(
            scope["method"], url, data=body or None, headers=headers
        ) as resp:
            out = [(b"content-type", resp.headers.get("content-type", "").encode())]
            # Buffer only what is not an event stream: SSE must flow through as it comes.
            if resp.content_length is not None and resp.content_type != "text/event-stream":
                data = await resp.read()
                out.append((b"content-length", str(len(data)).encode()))
                await send({"type": "http.response.start", "status": resp.status, "headers": out})
                await send({"type": "http.response.body", "body": data})
                return
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


class HttpxRelay:
    """The same relay with one pooled ``httpx.AsyncClient`` (the comparison's other side)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._client_obj: Any = None

    def _client(self) -> Any:
        if self._client_obj is None:
            import httpx

            self._client_obj = httpx.AsyncClient(
                timeout=None, trust_env=False, limits=httpx.Limits(max_connections=None)
            )
        return self._client_obj

    async def close(self) -> None:
        if self._client_obj is not None:
            await self._client_obj.aclose()
            self._client_obj = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, self.close)
            return
        body = await _read_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k in _FORWARDED}
        client = self._client()
        req = client.build_request(
            scope["method"], self.upstream + scope["path"], content=body or None, headers=headers
        )
        resp = await client.send(req, stream=True)
        try:
            out = [(b"content-type", resp.headers.get("content-type", "").encode())]
            ctype = resp.headers.get("content-type", "")
            if "content-length" in resp.headers and not ctype.startswith("text/event-stream"):
                data = await resp.aread()
                out.append((b"content-length", str(len(data)).encode()))
                await send(
                    {"type": "http.response.start", "status": resp.status_code, "headers": out}
                )
                await send({"type": "http.response.body", "body": data})
                return
            await send({"type": "http.response.start", "status": resp.status_code, "headers": out})
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            await resp.aclose()


def make_app(app: str, upstream: str, client: str) -> ASGIApp:
    if app == "hello":
        return hello_app
    if client == "httpx":
        return HttpxRelay(upstream)
    return AiohttpRelay(upstream)


def app_from_env() -> ASGIApp:
    """Factory for servers that import the app by name (granian)."""
    return make_app(
        os.environ.get("RELAY_APP", "relay"),
        os.environ.get("RELAY_UPSTREAM", "http://127.0.0.1:9"),
        os.environ.get("RELAY_CLIENT", "aiohttp"),
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", default="http://127.0.0.1:9", help="base URL, no path")
    p.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp")
    p.add_argument("--app", choices=("relay", "hello"), default="relay")
    p.add_argument("--server", choices=("uvicorn", "granian"), default="uvicorn")
    args = p.parse_args(argv)
    if args.server == "granian":
        env = dict(
            os.environ, RELAY_APP=args.app, RELAY_UPSTREAM=args.upstream, RELAY_CLIENT=args.client
        )
        granian = Path(sys.executable).with_name("granian")
        cmd = [
            str(granian),
            "--interface",
            "asgi",
            "--loop",
            "uvloop",
            "--http",
            "1",
            "--workers",
            "1",
            "--runtime-mode",
            "st",
            "--no-ws",
            "--log-level",
            "warning",
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
            "--factory",
            "--working-dir",
            str(Path(__file__).parent),
            "relay:app_from_env",
        ]
        os.execve(str(granian), cmd, env)  # replaces this process: signals reach granian
        return
    import uvicorn

    uvicorn.run(
        make_app(args.app, args.upstream, args.client),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
