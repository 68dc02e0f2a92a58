"""The in-process vector index of cached requests, searched within one partition.

Small partitions (most of them: one tenant's one model with one set of parameters) are
searched exactly with one matrix product; a partition that grows past
``ANN_FROM`` entries gets a usearch HNSW index, which keeps a lookup in a million
entries around a millisecond. Entries expire with their cached answer, and the oldest
entries are evicted past ``max_entries`` overall.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from usearch.index import Index

Vector = npt.NDArray[np.float32]

ANN_FROM = 2048  # entries in one partition before it gets an HNSW index


@dataclass(frozen=True, slots=True)
class Candidate:
    similarity: float
    text: str
    key: str  # the exact cache key of the answer


@dataclass(slots=True)
class _Entry:
    partition: str
    text: str
    key: str
    expires: float


@dataclass(slots=True)
class _Partition:
    ndim: int
    ids: list[int] = field(default_factory=list)
    matrix: Vector | None = None  # rows for ids (exact search)
    ann: Index | None = None
    live: int = 0
    dead: set[int] = field(default_factory=set)

    def add(self, eid: int, vec: Vector) -> None:
        self.live += 1
        if self.ann is not None:
            self.ann.add(eid, vec)
            return
        self.ids.append(eid)
        row = vec.reshape(1, -1)
        if self.matrix is None:
            self.matrix = np.empty((max(16, len(self.ids)), self.ndim), dtype=np.float32)
        if len(self.ids) > self.matrix.shape[0]:
            grown = np.empty((self.matrix.shape[0] * 2, self.ndim), dtype=np.float32)
            grown[: self.matrix.shape[0]] = self.matrix
            self.matrix = grown
        self.matrix[len(self.ids) - 1] = row
        if len(self.ids) - len(self.dead) >= ANN_FROM:
            self._to_ann()

    def _to_ann(self) -> None:
        assert self.matrix is not None
        # int8 quantisation: 4x smaller and ~10x faster to build than f32, recall@1 above
        # 0.99 and similarities within 0.01 (bench/cache.py measures it).
        ann = Index(
            ndim=self.ndim,
            metric="cos",
            dtype="i8",
            connectivity=16,
            expansion_add=64,
            expansion_search=64,
        )
        keep = [i for i, e in enumerate(self.ids) if e not in self.dead]
        ann.add(np.asarray([self.ids[i] for i in keep], dtype=np.uint64), self.matrix[keep])
        self.ann, self.matrix, self.ids, self.dead = ann, None, [], set()

    def remove(self, eid: int) -> None:
        self.live -= 1
        if self.ann is not None:
            self.ann.remove(eid)
            return
        # In the exact path a removed id stays as a dead row that lookups skip; the rows
        # are compacted once half of them are dead.
        self.dead.add(eid)
        if len(self.dead) * 2 > len(self.ids) and self.matrix is not None:
            keep = [i for i, e in enumerate(self.ids) if e not in self.dead]
            self.matrix = np.ascontiguousarray(self.matrix[keep])
            if self.matrix.shape[0] == 0:
                self.matrix = None
            self.ids = [self.ids[i] for i in keep]
            self.dead.clear()

    def search(self, vec: Vector, k: int) -> list[tuple[int, float]]:
        if self.ann is not None:
            m = self.ann.search(vec, k, threads=1)
            return [(int(key), 1.0 - float(d)) for key, d in zip(m.keys, m.distances, strict=True)]
        if not self.ids or self.matrix is None:
            return []
        sims = self.matrix[: len(self.ids)] @ vec
        if len(self.ids) <= k:
            order = np.argsort(-sims)
        else:
            top = np.argpartition(-sims, k)[:k]
            order = top[np.argsort(-sims[top])]
        return [(self.ids[i], float(sims[i])) for i in order if self.ids[i] not in self.dead]


class SemanticIndex:
    def __init__(
        self, ndim: int, *, max_entries: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.ndim = ndim
        self._max = max_entries
        self._clock = clock
        self._parts: dict[str, _Partition] = {}
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # oldest first
        self._by_key: dict[tuple[str, str], int] = {}
        self._next = 1

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, partition: str, vec: Vector, text: str, key: str, expires: float) -> None:
        if vec.shape != (self.ndim,):
            raise ValueError(f"expected a vector of {self.ndim} dimensions, got {vec.shape}")
        old = self._by_key.pop((partition, key), None)
        if old is not None:
            self._drop(old)
        eid = self._next
        self._next += 1
        self._entries[eid] = _Entry(partition, text, key, expires)
        self._by_key[(partition, key)] = eid
        self._parts.setdefault(partition, _Partition(self.ndim)).add(eid, vec)
        while len(self._entries) > self._max:
            self._drop(next(iter(self._entries)))

    def add_many(
        self, partition: str, vecs: Vector, texts: list[str], keys: list[str], expires: float
    ) -> None:
        """Bulk load (benchmarks, warm start from the shared store)."""
        for vec, text, key in zip(vecs, texts, keys, strict=True):
            self.add(partition, vec, text, key, expires)

    def _drop(self, eid: int) -> None:
        entry = self._entries.pop(eid, None)
        if entry is None:
            return
        self._by_key.pop((entry.partition, entry.key), None)
        part = self._parts.get(entry.partition)
        if part is not None:
            part.remove(eid)
            if part.live <= 0:
                del self._parts[entry.partition]

    def search(self, partition: str, vec: Vector, k: int = 4) -> list[Candidate]:
        """The nearest live entries of ``partition``, most similar first."""
        part = self._parts.get(partition)
        if part is None:
            return []
        now = self._clock()
        out: list[Candidate] = []
        for eid, sim in part.search(vec, k + 4):
            entry = self._entries.get(eid)
            if entry is None:
                continue  # a dead row of the exact path
            if entry.expires <= now:
                self._drop(eid)
                continue
            out.append(Candidate(sim, entry.text, entry.key))
            if len(out) == k:
                break
        return out
