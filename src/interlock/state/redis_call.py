"""Bounded Redis calls whose deadline measures Redis, not this process's event loop.

A plain ``asyncio.timeout(t)`` around a Redis command charges the command for every
millisecond the event loop spent on other work: under a burst the loop runs hundreds
of callbacks between two polls, the reply sits read-ready in the socket, the timer
fires first, and a healthy Redis is declared unavailable (spurious 503s, rate limits
failing open). Every Redis caller in Interlock goes through :class:`RedisCalls`
instead, whose deadline has three parts:

* **Responsive time.** A call gets ``timeout_s`` of time during which this process's
  loop was free to read the answer. Time it was not is added back to the deadline: the
  time the loop's thread spent running code or waiting for a CPU to run on (Linux
  ``/proc/thread-self/schedstat``; elsewhere its CPU time). What remains is time the
  loop sat in its poll waiting for Redis.
* **A hard bound.** Whatever the loop does, a call ends after ``max_s`` of wall-clock
  time: a frozen Redis under a saturated loop still costs a request at most this much.
* **A grace read.** When the deadline passes, the call gets a few more turns of the
  loop (each one polls the sockets) before it is abandoned, so a reply that arrived in
  the same poll as the timer is read, not thrown away.

A call that times out or cannot connect marks Redis *down*. While it is down, calls fail
at once (no request queues behind a Redis known to be gone, and a frozen Redis is not
buried under reconnects), except one probe every ``probe_every_s``: the first call that
succeeds marks it up again. A Redis error reply (a script error, OOM) fails that call
only. Errors that are not Redis's (bugs) propagate unchanged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("interlock.state")
T = TypeVar("T")

# Turns of the loop a call still gets once its deadline has passed (each one polls I/O).
GRACE_ROUNDS = 3
# A deadline pushed back by less than this is treated as reached (timer jitter).
JITTER_S = 0.002


class RedisUnavailable(Exception):
    """Redis did not answer in time, could not be reached, or refused the command."""


class BusyClock:
    """Seconds this thread has spent running or runnable-but-waiting for a CPU.

    Read from ``/proc/thread-self/schedstat`` (time on a CPU + time on a run queue), so
    a loop that was busy *or* not scheduled on a crowded host is told apart from one
    that sat idle in its poll. Where that file does not exist, the thread's CPU time.
    One file descriptor per thread, opened on first use.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __call__(self) -> float:
        fd = getattr(self._local, "fd", None)
        if fd is None:
            try:
                fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                fd = -1
            self._local.fd = fd
        if fd >= 0:
            try:
                run_ns, wait_ns = os.pread(fd, 96, 0).split()[:2]
                return (int(run_ns) + int(wait_ns)) / 1e9
            except (OSError, ValueError):
                self._local.fd = -1
        return time.thread_time()


BUSY = BusyClock()


class _Deadline:
    """The deadline of one call; see the module docstring."""

    __slots__ = ("_busy", "_busy0", "_cm", "_due", "_grace", "_handle", "_hard", "_loop")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        busy: Callable[[], float],
        cm: asyncio.Timeout,
        timeout_s: float,
        max_s: float,
    ) -> None:
        now = loop.time()
        self._loop = loop
        self._busy = busy
        self._busy0 = busy()
        self._cm = cm
        self._due = now + timeout_s
        self._hard = now + max_s
        self._grace = GRACE_ROUNDS
        self._handle: asyncio.Handle = loop.call_at(min(self._due, self._hard), self._check)

    def _check(self) -> None:
        now = self._loop.time()
        # While the loop's thread ran code or waited for a CPU, no socket was read.
        due = self._due + (self._busy() - self._busy0)
        if now >= self._hard:
            self._cm.reschedule(now)  # the hard bound gets no grace
        elif due > now + JITTER_S:
            # The loop was busy for part of the wait: that time is not Redis's.
            self._handle = self._loop.call_at(min(due, self._hard), self._check)
        elif self._grace > 0:
            self._grace -= 1
            self._handle = self._loop.call_soon(self._check)
        else:
            self._cm.reschedule(now)

    def cancel(self) -> None:
        self._handle.cancel()


class RedisCalls:
    """Bounds every call to one Redis and tracks whether that Redis is reachable.

    ``timeout_s``: responsive time a call may take; ``max_s``: its wall-clock bound;
    ``probe_every_s``: while Redis is down, how often one call is let through.
    """

    def __init__(
        self,
        timeout_s: float,
        max_s: float | None = None,
        *,
        probe_every_s: float = 0.25,
        name: str = "redis",
        busy: Callable[[], float] = BUSY,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_s = max(timeout_s, max_s if max_s is not None else 4 * timeout_s)
        self._probe_every = probe_every_s
        self._name = name
        self._busy = busy
        self.healthy = True
        self._next_probe = 0.0
        self._probing = False

    async def __call__(self, aw: Awaitable[T]) -> T:
        loop = asyncio.get_running_loop()
        probe = False
        if not self.healthy:
            if self._probing or loop.time() < self._next_probe:
                if inspect.iscoroutine(aw):
                    aw.close()  # never started: nothing was sent
                raise RedisUnavailable(f"{self._name} is unavailable")
            probe = self._probing = True
        deadline: _Deadline | None = None
        try:
            async with asyncio.timeout(None) as cm:
                deadline = _Deadline(loop, self._busy, cm, self.timeout_s, self.max_s)
                result = await aw
        except (TimeoutError, RedisTimeoutError) as exc:
            # Ours (the deadline) or the client's own socket timeout, the backstop.
            self._down(loop, "timeout")
            raise RedisUnavailable(f"{self._name} did not answer in time") from exc
        except (RedisConnectionError, OSError) as exc:
            self._down(loop, type(exc).__name__)
            raise RedisUnavailable(f"{self._name} unreachable: {type(exc).__name__}") from exc
        except RedisError as exc:
            raise RedisUnavailable(f"{self._name} refused: {type(exc).__name__}") from exc
        finally:
            if deadline is not None:
                deadline.cancel()
            if probe:
                self._probing = False
        if not self.healthy:
            log.info("%s reachable again", self._name)
            self.healthy = True
        return result

    def _down(self, loop: asyncio.AbstractEventLoop, why: str) -> None:
        if self.healthy:
            log.warning("%s unavailable (%s); failing fast until a probe succeeds", self._name, why)
        self.healthy = False
        self._next_probe = loop.time() + self._probe_every
