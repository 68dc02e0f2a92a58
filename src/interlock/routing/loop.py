"""A periodic background job that stops cleanly (without cancelling it mid-call).

The one home of background loops: the gateway's budget reload, ledger roll-up and
semantic-cache sync, the health and ladder loops, and the job runtime's queue metrics,
webhook sweep and batch driver all run as a :class:`Periodic`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("interlock.events")


class Periodic:
    """Run ``fn`` every ``interval_s`` until :meth:`stop`.

    Stopping sets an event and waits for the current run to finish (up to
    ``grace_s``), because cancelling a client library in the middle of a network call
    can leave it waiting on a half-closed connection.
    """

    def __init__(
        self,
        name: str,
        fn: Callable[[], Awaitable[object]],
        interval_s: float,
        *,
        first_after_s: float = 0.0,
    ) -> None:
        self._name = name
        self._fn = fn
        self._interval = interval_s
        self._first_after = first_after_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        if self._first_after > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._first_after)
        while not self._stopping.is_set():
            try:
                await self._fn()
            except Exception:
                log.exception("%s failed", self._name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self, grace_s: float = 2.0) -> None:
        self._stopping.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=grace_s)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 1.0)
