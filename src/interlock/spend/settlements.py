"""Settlements that must land: what to write to a budget counter, and a queue that retries.

A :class:`Settle` is one write to the counters of one reservation: replace the hold
``rid`` on ``keys`` by ``actual`` nano-dollars (mode ``h``), or charge ``actual`` once for
an admission that placed no hold because the shared state was unreachable (mode ``c``).
Both are idempotent in the state backend, so a settle may be sent any number of times.

It is written to the ledger spool with the request's record *before* it is sent, so a
process that dies with settles pending has them replayed from its spool. While the
process lives, :class:`SettleQueue` retries the ones that failed (the shared state was
unreachable) with exponential backoff until they land, in order, within a bounded
number of entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from interlock.state.reservations import CHARGE, HOLD, StateUnavailable

log = logging.getLogger("interlock.budgets")

__all__ = ["CHARGE", "HOLD", "Settle", "SettleQueue"]


@dataclass(frozen=True, slots=True)
class Settle:
    rid: str
    keys: tuple[str, ...]
    actual: int  # nano-USD
    mode: str = HOLD

    def to_json(self) -> list[Any]:
        return [self.rid, list(self.keys), self.actual, self.mode]

    @classmethod
    def from_json(cls, raw: Any) -> Settle | None:
        """A spooled settle, or None for anything that is not one (a torn or foreign line)."""
        try:
            rid, keys, actual, mode = raw
        except (TypeError, ValueError):
            return None
        if (
            not isinstance(rid, str)
            or not isinstance(keys, list)
            or not all(isinstance(k, str) for k in keys)
            or not isinstance(actual, int)
            or mode not in (HOLD, CHARGE)
        ):
            return None
        return cls(rid, tuple(keys), actual, mode)


Apply = Callable[[Settle], Awaitable[None]]
Done = Callable[[], None]


class SettleQueue:
    """Settles that could not be written yet, retried in order until they land.

    Bounded: past ``max_items`` a settle is dropped with a warning. Its hold then expires
    and is charged at the reserved amount (the counter reads high, never low), and its
    record is in the ledger either way.
    """

    def __init__(
        self,
        apply: Apply,
        *,
        max_items: int = 100_000,
        base_delay_s: float = 0.05,
        max_delay_s: float = 5.0,
    ) -> None:
        self._apply = apply
        self._items: deque[tuple[Sequence[Settle], Done | None]] = deque()
        self._max = max_items
        self._base = base_delay_s
        self._max_delay = max_delay_s
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.landed = 0

    def __len__(self) -> int:
        return len(self._items)

    def push(self, settles: Sequence[Settle], done: Done | None = None) -> bool:
        if len(self._items) >= self._max:
            self.dropped += 1
            log.warning(
                "settle queue full (%d): a settlement is dropped; its hold will be charged "
                "at the reserved amount when it expires",
                self._max,
            )
            if done is not None:
                done()
            return False
        self._items.append((settles, done))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="settle queue")
        return True

    async def drain(self) -> bool:
        """Try every pending settle once, in order; False at the first that fails."""
        while self._items:
            settles, done = self._items[0]
            try:
                for s in settles:
                    await self._apply(s)
            except StateUnavailable:
                return False
            self._items.popleft()
            self.landed += 1
            if done is not None:
                done()
        return True

    async def _run(self) -> None:
        # Each settle was just tried inline (or the state is known to be down): wait first.
        delay = self._base
        while self._items:
            await asyncio.sleep(delay)
            if await self.drain():
                log.info("pending budget settlements landed (%d so far)", self.landed)
                return
            delay = min(self._max_delay, delay * 2)

    async def close(self, grace_s: float = 2.0) -> None:
        """One last attempt; what is still pending stays in the spool for a replay."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            async with asyncio.timeout(grace_s):
                await self.drain()
