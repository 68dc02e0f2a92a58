"""The semantic cache: find a cached answer to a request worded differently.

Used after an exact-match miss: the request's text is embedded, the nearest entries of
its partition (same tenant, model, parameters and — by default — earlier turns) are
looked up, and the best candidate the matcher's guards accept is served. The answer
itself stays in the answer tiers under its exact key; the index only maps meaning to
that key. Any failure here (the embedder down or slow) is a plain miss.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from interlock.cache.semantic.index import Candidate, SemanticIndex, Vector
from interlock.cache.semantic.matcher import prepare, verdict
from interlock.cache.semantic.store import SemanticStore
from interlock.cache.semantic.text import subject
from interlock.settings import SemanticCacheSettings

log = logging.getLogger("interlock.cache.semantic")

Embed = Callable[[list[str]], Awaitable[list[Vector]]]


@dataclass(frozen=True, slots=True)
class Probe:
    partition: str
    text: str
    vector: Vector


@dataclass(frozen=True, slots=True)
class Match:
    candidate: Candidate
    rejected: tuple[str, ...]  # why nearer candidates were not served


class SemanticCache:
    def __init__(
        self,
        cfg: SemanticCacheSettings,
        embed: Embed,
        *,
        ndim: int = 384,
        store: SemanticStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self._embed = embed
        self.index = SemanticIndex(ndim, max_entries=cfg.max_entries, clock=clock)
        self._store = store
        self._clock = clock
        self._last_id = 0
        self._embed_down = False
        self._pending: set[asyncio.Task[None]] = set()

    async def probe(
        self, namespace: str, alias: str, endpoint: str, body: dict[str, Any]
    ) -> Probe | None:
        subj = subject(namespace, alias, endpoint, body, self.cfg.context)
        if subj is None:
            return None
        try:
            async with asyncio.timeout(self.cfg.embed_timeout_s):
                [vec] = await self._embed([prepare(subj.text)])
        except Exception as exc:
            if not self._embed_down:
                self._embed_down = True
                log.warning(
                    "semantic cache: embedding failed (%s); plain misses until it recovers",
                    type(exc).__name__,
                )
            return None
        self._embed_down = False
        vec = np.asarray(vec, dtype=np.float32)
        if vec.shape != (self.index.ndim,):
            return None
        return Probe(subj.partition, subj.text, vec)

    def match(self, probe: Probe, threshold: float) -> Match | None:
        rejected: list[str] = []
        for cand in self.index.search(probe.partition, probe.vector, k=4):
            reason = verdict(cand.similarity, cand.text, probe.text, threshold)
            if reason is None:
                return Match(cand, tuple(rejected))
            rejected.append(reason)
        return None

    def remember(self, probe: Probe, key: str, drop_at: float) -> None:
        self.index.add(probe.partition, probe.vector, probe.text, key, drop_at)
        if self._store is not None:
            store = self._store

            async def write() -> None:
                try:
                    await store.add(probe.partition, key, probe.text, probe.vector, drop_at)
                except Exception as exc:  # the local index still has it
                    log.warning(
                        "semantic cache: shared store write failed (%s)", type(exc).__name__
                    )

            task = asyncio.get_running_loop().create_task(write())
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def sync(self) -> int:
        """Load entries other replicas wrote since the last sync; returns how many."""
        if self._store is None:
            return 0
        n = 0
        while True:
            rows = await self._store.since(self._last_id)
            for r in rows:
                if r.vector.shape == (self.index.ndim,):
                    self.index.add(r.partition, r.vector, r.text, r.key, r.drop_at)
                self._last_id = r.id
            n += len(rows)
            if len(rows) < 5000:
                return n

    async def drain(self) -> None:
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
