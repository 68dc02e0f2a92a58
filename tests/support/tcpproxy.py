"""A TCP proxy a test can cut: a database outage without touching the database server."""

from __future__ import annotations

import asyncio
import contextlib
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = listen_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._thawed: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _gate(self) -> asyncio.Event:
        if self._thawed is None:
            self._thawed = asyncio.Event()
            self._thawed.set()
        return self._thawed

    def _run(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                await self._gate().wait()  # frozen: bytes go nowhere, nobody is told
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._gate().wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._conns.update((writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        self._conns.discard(writer)
        self._conns.discard(up_writer)

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in list(self._conns):
            w.transport.abort()
        self._conns.clear()

    def start(self) -> None:
        """Accept connections (again)."""
        self._run(self._start())

    def cut(self) -> None:
        """Drop every connection and refuse new ones: the database is 'down'."""
        self._run(self._stop())

    def freeze(self) -> None:
        """Keep every connection open but forward nothing: the server 'hangs'."""

        async def go() -> None:
            self._gate().clear()

        self._run(go())

    def thaw(self) -> None:
        async def go() -> None:
            self._gate().set()

        self._run(go())

    def close(self) -> None:
        self.thaw()
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
