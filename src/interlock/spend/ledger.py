"""The spend ledger: one durable record per request, written off the hot path.

A record is appended to this process's spool file before the response is finished
(a single write, no database round trip), then a background flusher copies spooled
records into the database in batches, idempotently by request id. If the database is
down the records simply stay in the spool until it returns; a process killed with
SIGKILL leaves its spool behind and the next process that looks replays it. Nothing is
lost and, because inserts ignore known request ids, nothing is counted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from interlock.storage.ledger import LEDGER_COLUMNS, LedgerStore
from interlock.storage.spool import Spool, SpoolFile

log = logging.getLogger("interlock.ledger")

_ROTATE_BYTES = 16 * 1024 * 1024


@dataclass(slots=True)
class LedgerRecord:
    request_id: str
    endpoint: str
    status: int
    outcome: str  # "ok" or the error code
    key_id: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    tags: list[str] = field(default_factory=list)
    # The key's own (operator-declared) tags: the only ones that become metric labels.
    # Not stored: the ledger keeps every tag in ``tags``.
    label_tags: tuple[str, ...] = ()
    model: str | None = None
    deployment: str | None = None
    provider: str | None = None
    tier: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal = Decimal(0)
    attempts: int = 0
    cache: str = "miss"
    stream: bool = False
    fallback: str | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_row(self) -> list[Any]:
        """The record as a JSON-safe list in :data:`LEDGER_COLUMNS` order (built by hand:
        this runs once per request)."""
        return [
            self.request_id,
            self.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
            self.key_id,
            self.user_id,
            self.team_id,
            self.tags,
            self.endpoint,
            self.model,
            self.deployment,
            self.provider,
            self.tier,
            self.status,
            self.outcome,
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.reasoning_tokens,
            self.usage_estimated,
            str(self.cost_usd),
            str(self.saved_usd),
            self.attempts,
            self.cache,
            self.stream,
            self.fallback,
            self.latency_ms,
            self.ttft_ms,
        ]

    def to_json(self) -> dict[str, Any]:
        return dict(zip(LEDGER_COLUMNS, self.to_row(), strict=True))


class LedgerWriter:
    """Spool first, then the database.

    Records of this process are also kept in memory, so the steady state inserts them
    without reading the spool back; the spool is read only for other processes' files
    and when the memory queue overflowed during a long database outage. The checkpoint
    is written every few seconds: a replay after a crash may repeat rows already
    stored, which the idempotent insert ignores.
    """

    def __init__(
        self,
        store: LedgerStore,
        spool_dir: str,
        *,
        flush_interval_s: float = 0.2,
        batch_size: int = 500,
        orphan_scan_s: float = 5.0,
        memory_cap: int = 100_000,
        checkpoint_every_s: float = 2.0,
    ) -> None:
        self._store = store
        self._spool = Spool(spool_dir, "ledger")
        self._interval = flush_interval_s
        self._batch = batch_size
        self._orphan_every = orphan_scan_s
        self._cap = memory_cap
        self._ckpt_every = checkpoint_every_s
        self._ckpt_at = 0.0
        self._mem: deque[tuple[list[Any], int]] | None = deque()  # None: read the file
        self._appended = 0  # bytes this process appended to its current file
        self._committed = 0  # bytes of it known to be in the database
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.healthy = True

    @property
    def pending(self) -> int:
        """Records spooled but not yet in the database (approximate in overflow)."""
        return len(self._mem) if self._mem is not None else -1

    def record(self, rec: LedgerRecord) -> None:
        """Durably spool one record; the database write happens in the background."""
        row = rec.to_row()
        line = orjson.dumps(row) + b"\n"
        self._spool.append_raw(line)
        self._appended += len(line)
        if self._mem is not None:
            self._mem.append((row, len(line)))
            if len(self._mem) > self._cap:
                self._mem = None  # a long outage: the spool file is the queue now
            elif len(self._mem) >= self._batch:
                self._wake.set()

    async def start(self) -> None:
        self._spool.open()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger flusher")

    async def _drain(self, f: SpoolFile) -> bool:
        """Copy everything after f's checkpoint into the database. False if it failed."""
        while True:
            records, offset = await asyncio.to_thread(f.read, self._batch)
            if offset == f.committed():
                return True
            if not await self._insert(records):
                return False
            f.commit(offset)

    async def _insert(self, rows: list[list[Any]]) -> bool:
        try:
            await self._store.insert_rows(rows)
        except Exception as exc:
            if self.healthy:
                log.warning(
                    "ledger database write failed; records stay spooled: %s", type(exc).__name__
                )
            self.healthy = False
            return False
        if not self.healthy:
            log.info("ledger database reachable again; replaying the spool")
        self.healthy = True
        return True

    async def _flush_current(self) -> bool:
        f = self._spool.current
        if f is None:
            return True
        if self._mem is None:
            f.commit(self._committed)
            if not await self._drain(f):
                return False
            self._committed = f.committed()
            if self._committed == self._appended:
                self._mem = deque()  # caught up: back to the memory queue
            return True
        while self._mem:
            n = min(self._batch, len(self._mem))
            batch = [self._mem[i] for i in range(n)]
            if not await self._insert([row for row, _ in batch]):
                return False
            if self._mem is None:  # overflowed while we awaited: the file takes over
                return True
            for _ in range(n):
                self._committed += self._mem.popleft()[1]
        now = time.monotonic()
        if now - self._ckpt_at >= self._ckpt_every:
            self._ckpt_at = now
            f.commit(self._committed)
        return True

    async def flush(self) -> bool:
        """Store everything this process spooled; True when all is in the database."""
        # One flush at a time: the background loop and an explicit flush share the queue.
        async with self._flush_lock:
            return await self._flush_locked()

    async def _flush_locked(self) -> bool:
        ok = await self._flush_current()
        f = self._spool.current
        if ok and f is not None and self._committed == self._appended and f.size() > _ROTATE_BYTES:
            old = self._spool.rotate()
            self._appended = self._committed = 0
            if old is not None:
                old.remove()
        return ok

    async def replay_orphans(self) -> int:
        """Replay spool files left by processes that died; returns how many were done."""
        done = 0
        for f in self._spool.orphans():
            if await self._drain(f):
                f.remove()
                done += 1
            else:
                f.release()
                break
        return done

    async def _run(self) -> None:
        since_scan = self._orphan_every  # scan at once on start
        backoff = self._interval
        while not self._stopping:
            if since_scan >= self._orphan_every:
                since_scan = 0.0
                with contextlib.suppress(Exception):
                    await self.replay_orphans()
            try:
                ok = await self.flush()
            except Exception:
                log.exception("ledger flush failed")
                ok = False
            backoff = self._interval if ok else min(5.0, backoff * 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)
            self._wake.clear()
            since_scan += backoff

    async def stop(self, grace_s: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, grace_s)
        flushed = False
        with contextlib.suppress(Exception):
            async with asyncio.timeout(grace_s):
                flushed = await self.flush()
        current = self._spool.current
        if current is not None:
            if flushed and self._committed == self._appended:
                current.remove()
            else:
                current.commit(self._committed)
        # Whatever is still unwritten stays in the spool file for the next process.
        self._spool.close()
