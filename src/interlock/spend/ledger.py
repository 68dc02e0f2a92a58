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
    def __init__(
        self,
        store: LedgerStore,
        spool_dir: str,
        *,
        flush_interval_s: float = 0.2,
        batch_size: int = 500,
        orphan_scan_s: float = 5.0,
    ) -> None:
        self._store = store
        self._spool = Spool(spool_dir, "ledger")
        self._interval = flush_interval_s
        self._batch = batch_size
        self._orphan_every = orphan_scan_s
        self._draining: list[SpoolFile] = []
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.pending = 0  # records spooled but not yet in the database
        self.healthy = True

    def record(self, rec: LedgerRecord) -> None:
        """Durably spool one record; the database write happens in the background."""
        self._spool.append_line(orjson.dumps(rec.to_row()))
        self.pending += 1
        if self.pending >= self._batch:
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
            try:
                await self._store.insert_rows(records)
            except Exception as exc:
                if self.healthy:
                    log.warning(
                        "ledger database write failed; records stay spooled: %s", type(exc).__name__
                    )
                self.healthy = False
                return False
            f.commit(offset)
            if f is self._spool.current:
                self.pending = max(0, self.pending - len(records))
            if not self.healthy:
                log.info("ledger database reachable again; replaying the spool")
            self.healthy = True

    async def flush(self) -> bool:
        """Drain this process's spool (and retired files) now; True when all is stored."""
        ok = True
        for f in list(self._draining):
            if await self._drain(f):
                f.remove()
                self._draining.remove(f)
            else:
                ok = False
        current = self._spool.current
        if current is not None:
            ok = await self._drain(current) and ok
            if ok and current.size() > _ROTATE_BYTES:
                old = self._spool.rotate()
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
        if flushed and self._spool.current is not None:
            self._spool.current.remove()
        # Whatever is still unwritten stays in the spool file for the next process.
        self._spool.close()
