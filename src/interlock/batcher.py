"""Micro-batching: concurrent callers share one forward pass.

Interlock's own logic (a dozen lines, no library fits an asyncio in-process collector):
the first waiting item opens a batch; the batch closes when it holds ``max_batch``
items or ``max_wait_s`` has passed; one batch runs at a time (the model is CPU-bound),
and items that arrive meanwhile form the next batch. Each caller gets its own slice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(slots=True)
class _Pending(Generic[T, R]):
    items: Sequence[T]
    future: asyncio.Future[list[R]]


@dataclass(slots=True)
class BatchStats:
    batches: int = 0
    items: int = 0
    sizes: list[int] = field(default_factory=list)


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[list[R]]],
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.003,
    ) -> None:
        self._run = run
        self._max = max(1, max_batch)
        self._wait = max(0.0, max_wait_s)
        self._queue: list[_Pending[T, R]] = []
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stats = BatchStats()

    async def submit(self, items: Sequence[T]) -> list[R]:
        if not items:
            return []
        fut: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(items, fut))
        self._queued += len(items)
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())
        return await fut

    async def _loop(self) -> None:
        while self._queue:
            if self._queued < self._max and self._wait > 0:
                # Give concurrent callers a moment to join this batch.
                self._wakeup.clear()
                deadline = asyncio.get_running_loop().time() + self._wait
                while self._queued < self._max:
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        break
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), remaining)
                    except TimeoutError:
                        break
                    self._wakeup.clear()
            batch: list[_Pending[T, R]] = []
            size = 0
            # Whole requests only; a request larger than max_batch runs on its own.
            while self._queue and (not batch or size + len(self._queue[0].items) <= self._max):
                p = self._queue.pop(0)
                batch.append(p)
                size += len(p.items)
            self._queued -= size
            await self._execute(batch, size)

    async def _execute(self, batch: list[_Pending[T, R]], size: int) -> None:
        flat = [item for p in batch for item in p.items]
        self.stats.batches += 1
        self.stats.items += size
        if len(self.stats.sizes) < 10_000:
            self.stats.sizes.append(size)
        try:
            results = await self._run(flat)
        except Exception as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        at = 0
        for p in batch:
            n = len(p.items)
            if not p.future.done():  # a caller that went away leaves a cancelled future
                p.future.set_result(results[at : at + n])
            at += n
