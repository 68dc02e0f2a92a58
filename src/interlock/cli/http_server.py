"""The HTTP server around the app: uvicorn, with slow-client limits and a drain that never
accepts a request only to drop it.

uvicorn (httptools) has no read timeout for a request head, no connection cap that
answers in our error format, and on SIGTERM closes its listening socket at once: with
several workers the supervisor still holds the socket, so connections keep landing in
the kernel's accept queue that no process will ever accept, and are reset when the
supervisor exits. Here:

* **Header timeout.** :class:`GuardedHttpToolsProtocol` closes a connection whose request
  head is not complete ``server.header_timeout_s`` after it began (after the connection
  opened, for its first request); a partly sent head gets a 408 first. Between requests,
  uvicorn's keep-alive timeout applies as before. (The body's own timeout is in
  ``api/http.py`` ``read_body``, so it is answered with a 408 in our error format.)
* **Connection cap.** A process holds at most ``server.max_connections``; a connection
  past it is answered ``503 too_many_connections`` (Connection: close) as soon as its
  request head is in, or closed by the header timeout.
* **Drain.** On SIGTERM (or a first Ctrl-C) :class:`GatewayServer` keeps listening and
  answers every new request ``503 draining`` with ``Retry-After`` and ``Connection:
  close``, while requests in flight — streams included — finish, for at most
  ``server.drain_timeout_s``. Then, in a lull (no new connection for 0.1 s, clients
  having been told Retry-After; 3 s into the drain at the latest), it takes its listening
  socket out of the event loop, accepts what is still queued in the kernel (those get the
  same 503), and closes it; once it has answered them (2 s at most) it shuts down as
  uvicorn does. A repeated SIGTERM changes nothing; a second Ctrl-C skips the drain.
* **Several workers.** :class:`Supervisor` (uvicorn's multiprocess supervisor) closes
  its own copy of the listening socket before it signals the workers, so the socket
  lives exactly as long as some worker still accepts on it: a connection is either
  accepted and answered, or refused by the kernel once the last worker has closed it.

Why answer 503 rather than stop accepting at SIGTERM: closing a listening socket resets
every connection already queued on it, and a load balancer needs a few seconds to take
the instance out; a 503 with Retry-After is an answer a client can act on. The only
connections that can still be reset are those whose handshake is under way at the very
close (the kernel drops them with the socket, though the client may already count them
as established): closing in a lull is what keeps that window empty.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from interlock.errors import InterlockError, RequestTimeout, ServiceUnavailable, error_body
from interlock.resilience.backoff import Backoff

log = logging.getLogger("interlock.server")


# After the listener is closed, how long connections swept from its queue (and requests
# still running past the drain timeout) get to be answered before shutdown proper.
_SWEPT_GRACE_S = 2.0
# The listener is closed in a lull: once no connection has arrived for QUIET_S (clients
# that got a 503 wait its Retry-After), or QUIET_MAX_S into the drain at the latest. A
# connection whose handshake is under way at the close is reset by the kernel, even one
# the client already thinks is established: closing in a lull is what avoids that.
_QUIET_S = 0.1
_QUIET_MAX_S = 3.0
# A worker slot whose replacement failed to start is retried after 1 s, doubling to 30 s.
_RESTART = Backoff(1.0, 30.0)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    header_timeout_s: float = 10.0
    max_connections: int = 1000
    drain_timeout_s: float = 30.0


class _Guard:
    """What every connection of one server (one process) shares."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.draining = False
        self.last_connection = 0.0  # time.monotonic() of the latest connection


def _refusal(err: InterlockError) -> Any:
    """An ASGI app that answers ``err`` and closes the connection."""
    body = error_body(err)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *err.headers(),
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": err.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


_DRAINING = _refusal(
    ServiceUnavailable(
        "this server is shutting down; retry the request", code="draining", retry_after=1
    )
)
_TOO_MANY = _refusal(
    ServiceUnavailable(
        "this server has too many open connections; retry the request",
        code="too_many_connections",
        retry_after=1,
    )
)


def _raw_408() -> bytes:
    body = error_body(RequestTimeout("the request head did not arrive in time"))
    return (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout, a connection cap and the
    drain's 503 (see the module docstring)."""

    def __init__(self, *args: Any, guard: _Guard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = False  # bytes of a request head arrived, the head is not complete
        self._fresh = True  # no request has begun on this connection yet
        self._over_cap = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._guard.last_connection = time.monotonic()
        self._over_cap = len(self.connections) > self._guard.limits.max_connections
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self._guard.limits.header_timeout_s, self._head_timeout
            )

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._fresh = False
        self._arm()  # a keep-alive connection's next request: its head starts now

    def on_headers_complete(self) -> None:
        self._disarm()
        self._in_head = False
        refusal = _TOO_MANY if self._over_cap else _DRAINING if self._guard.draining else None
        if refusal is None:
            super().on_headers_complete()
            return
        app = self.app
        self.app = refusal
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        # A 408 only for a head that started and has no response under way; a connection
        # that never sent a byte is simply closed (a 408 there could be read as the
        # answer to a request the client sends later).
        if self._in_head and (self.cycle is None or self.cycle.response_complete):
            self.transport.write(_raw_408())
        self.transport.close()

    @property
    def busy(self) -> bool:
        """A request is arriving or being answered on this connection — or the
        connection is new and its first request is surely on its way (closing it now
        would reset a request the client has already sent)."""
        if self.transport is None or self.transport.is_closing():
            return False
        return (
            self._fresh
            or self._in_head
            or (self.cycle is not None and not self.cycle.response_complete)
        )

    def stop_keep_alive(self) -> None:
        """The answer under way is this connection's last (the drain began)."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False


class GatewayServer(uvicorn.Server):
    """uvicorn's server with the guarded protocol and the drain (module docstring)."""

    def __init__(self, config: uvicorn.Config, limits: ServerLimits) -> None:
        super().__init__(config)
        self.guard = _Guard(limits)
        self._drain_started = 0.0
        self._closed_at: float | None = None
        self._handoffs: set[asyncio.Task[Any]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # config.load() has resolved the protocol class; every connection shares a guard.
        self.config.http_protocol_class = functools.partial(  # type: ignore[assignment]
            GuardedHttpToolsProtocol, guard=self.guard
        )
        await super().startup(sockets=sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.guard.draining or self.should_exit:
            if sig == signal.SIGINT:
                super().handle_exit(sig, frame)  # a second Ctrl-C: stop now
            return
        self._captured_signals.append(sig)  # re-raised after shutdown, like uvicorn does
        self.guard.draining = True
        self._drain_started = time.monotonic()
        for conn in list(self.server_state.connections):
            if isinstance(conn, GuardedHttpToolsProtocol):
                conn.stop_keep_alive()

    async def on_tick(self, counter: int) -> bool:
        if self.guard.draining and not self.should_exit and self.started:
            self._drain_step()
        return await super().on_tick(counter)

    def _drain_step(self) -> None:
        limits = self.guard.limits
        now = time.monotonic()
        if self._closed_at is None:
            waited = now - self._drain_started
            if waited < limits.drain_timeout_s:
                if self.server_state.tasks:
                    return  # requests in flight: keep answering newcomers with 503
                if now - self.guard.last_connection < _QUIET_S and waited < _QUIET_MAX_S:
                    return  # connections still arriving: wait for a lull to close in
            self._close_listeners()
            self._closed_at = now
            return
        busy = any(
            isinstance(c, GuardedHttpToolsProtocol) and c.busy
            for c in self.server_state.connections
        )
        if busy and now - self._closed_at < min(limits.header_timeout_s, _SWEPT_GRACE_S):
            return  # connections swept from the accept queue are still being answered
        self.should_exit = True

    def _close_listeners(self) -> None:
        """Take the listening sockets out of the loop, answer what the kernel still has
        queued, then close them."""
        loop = asyncio.get_running_loop()
        dups: list[socket.socket] = []
        for server in self.servers:
            for ts in server.sockets or ():
                dups.append(socket.socket(fileno=os.dup(ts.fileno())))
            server.close()  # the loop stops accepting; the duplicates keep the queue
        swept = 0
        for sock in dups:
            sock.setblocking(False)
            while True:
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                conn.setblocking(False)
                swept += 1
                task = loop.create_task(loop.connect_accepted_socket(self._new_protocol, conn))
                self._handoffs.add(task)
                task.add_done_callback(self._handoffs.discard)
            sock.close()
        log.info("drain: listener closed (%d queued connections answered)", swept)

    def _new_protocol(self) -> asyncio.Protocol:
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
            _loop=asyncio.get_running_loop(),
        )
        return protocol


class _Worker(Process):
    """A worker process whose server is a :class:`GatewayServer`."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket.socket], limits: ServerLimits
    ) -> None:
        self.limits = limits
        self.ready_seen = False  # the supervisor saw it finish startup
        super().__init__(config, sockets)

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = GatewayServer(self.config, self.limits)
        return self._server


class Supervisor(Multiprocess):
    """uvicorn's multiprocess supervisor, with :class:`GatewayServer` workers and its own
    copy of the listening socket closed before the workers are told to drain."""

    def __init__(
        self, config: uvicorn.Config, sockets: list[socket.socket], limits: ServerLimits
    ) -> None:
        super().__init__(config, sockets)
        self.limits = limits
        self._failures: dict[int, int] = {}  # slot -> replacements that failed to start
        self._retry_at: dict[int, float] = {}  # slot -> when to try that slot again

    def _new(self) -> _Worker:
        return _Worker(self.config, self.sockets, self.limits)

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            process = self._new()
            process.start()
            self.processes.append(process)

    def terminate_all(self) -> None:
        # From now on only the workers hold the socket: when the last one has drained
        # and closed it, the kernel refuses connections instead of queueing them for a
        # process that never accepts.
        for sock in self.sockets:
            sock.close()
        super().terminate_all()

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            assert isinstance(process, _Worker)
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                if not process.ready_seen and process.is_ready(timeout=1):
                    process.ready_seen = True
                    self._failures.pop(idx, None)  # it started: the backoff starts over
                continue
            process.kill()
            process.join()
            if self.should_exit.is_set():
                return
            if process.exitcode == 3 or not process.ready_seen:  # it never started
                if not any(p is not process and p.is_alive(1) for p in self.processes):
                    # Nothing serves: a new worker would fail the same way; the process
                    # manager (systemd, Kubernetes) restarts the gateway with its backoff.
                    log.error("worker [%s] failed to start; no worker serves; stopping",
                              process.pid)  # fmt: skip
                    self.should_exit.set()
                    return
                # A replacement failed to start (something it needs at startup is down)
                # while other workers serve: they go on serving; this slot is retried with
                # backoff (1 s doubling to 30 s) instead of taking the gateway down.
                failures = self._failures.get(idx, 0)
                due = self._retry_at.setdefault(idx, time.monotonic() + _RESTART.ceiling(failures))
                if time.monotonic() < due:
                    continue
                del self._retry_at[idx]
                self._failures[idx] = failures + 1
                log.error("worker [%s] failed to start while others serve; starting another "
                          "(attempt %d)", process.pid, failures + 2)  # fmt: skip
            else:
                log.info("worker [%s] died; starting another", process.pid)
            process = self._new()
            process.start()
            self.processes[idx] = process

    def restart_all(self) -> None:  # SIGHUP
        for idx, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._new()
            new.start()
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                return
            new.ready_seen = True
            old.terminate()
            old.join()
            self.processes[idx] = new

    def handle_ttin(self) -> None:
        self.processes_num += 1
        process = self._new()
        process.start()
        self.processes.append(process)


def run(config: uvicorn.Config, limits: ServerLimits) -> None:
    """Serve ``config`` (one process, or ``config.workers`` under the supervisor)."""
    if config.workers > 1:
        Supervisor(config, [config.bind_socket()], limits).run()
        return
    config.load_app()
    server = GatewayServer(config, limits)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE


__all__ = ["GatewayServer", "GuardedHttpToolsProtocol", "ServerLimits", "Supervisor", "run"]
