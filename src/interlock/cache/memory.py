"""L1: an in-process LRU bounded by bytes, with per-entry expiry.

Written by hand because it is a dict and a byte counter: an OrderedDict with a size
sum is the whole of what is needed, and it sits on the hit path.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class MemoryTier:
    name = "l1"

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self._max = max_bytes
        self._clock = clock
        self._data: OrderedDict[str, tuple[bytes, float]] = OrderedDict()  # value, drop_at
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= self._clock():
            await self.delete(key)
            return None
        self._data.move_to_end(key)
        return item[0]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if len(value) > self._max:
            return
        await self.delete(key)
        self._data[key] = (value, self._clock() + ttl_s)
        self._bytes += len(value)
        while self._bytes > self._max and self._data:
            _, (v, _d) = self._data.popitem(last=False)
            self._bytes -= len(v)

    async def delete(self, key: str) -> None:
        old = self._data.pop(key, None)
        if old is not None:
            self._bytes -= len(old[0])

    @property
    def size_bytes(self) -> int:
        return self._bytes
