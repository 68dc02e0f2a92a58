"""The spend ledger: one durable record per request, written off the hot path.

A record is appended to this process's spool file before the response is finished
(a single write, no database round trip), then a background flusher copies spooled
records into the database in batches, idempotently by request id. If the database is
down the records simply stay in the spool until it returns; a process killed with
SIGKILL leaves its spool behind and the next process that looks replays it. Nothing is
lost and, because inserts ignore known request ids, nothing is counted twice.

Requests in flight when a process dies are not lost either. Before the upstream call
the gateway spools an **intent** (:meth:`LedgerWriter.intent`): the request's ledger row
as it will read if the process never finishes it (outcome ``replica_lost``, usage
estimated, cost = the reserved worst case) and the settlements that charge its holds at
that amount. The final record (same request id) closes it and carries its own
settlements, spooled before they are sent. A replay of a dead process's spool stores
its records, applies their settlements (idempotent in the state backend), and turns
every intent left open into its ``replica_lost`` row and settlements. A final record
always replaces a ``replica_lost`` row of the same id, never the other way round.

The spool line kinds: a JSON list (a record without settlements), ``{"r": row, "s":
[settle, ...]}`` (a record and its settlements), ``{"i": row, "s": [...]}`` (an intent
and the settlements that charge it if it is lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from interlock.spend.settlements import Settle
from interlock.storage.ledger import LEDGER_COLUMNS, LedgerStore
from interlock.storage.spool import Spool, SpoolFile

log = logging.getLogger("interlock.ledger")

_ROTATE_BYTES = 16 * 1024 * 1024
REPLICA_LOST = "replica_lost"
_I_REQUEST_ID = 0

# Applies settlements read back from a dead process's spool; raises (StateUnavailable)
# when they cannot be written now, and the replay is then retried later.
ReplaySettle = Callable[[list[Settle]], Awaitable[None]]


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
    # The key's own (operator-declared) tags: the only ones that become metric labels
    # (spend/observe.py). Not stored: the ledger keeps every tag in ``tags``.
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
    # The worst case reserved for the request (None: nothing was); a replica_lost row's
    # cost until the provider's usage says otherwise (spend/reconcile.py).
    reserved_usd: Decimal | None = None
    # Prompt-cache writes, part of prompt_tokens like cached_tokens (cache reads).
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0

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
            None if self.reserved_usd is None else str(self.reserved_usd),
            self.cache_write_tokens,
            self.cache_write_1h_tokens,
        ]

    def to_json(self) -> dict[str, Any]:
        return dict(zip(LEDGER_COLUMNS, self.to_row(), strict=True))


def lost_record(rec: LedgerRecord, worst_usd: Decimal) -> LedgerRecord:
    """What ``rec`` (built before the upstream call) reads as if its process dies: the
    provider may have billed up to the worst case, so that is what the ledger says."""
    rec.status = 0  # no response was sent
    rec.outcome = REPLICA_LOST
    rec.usage_estimated = True
    rec.cost_usd = worst_usd
    rec.reserved_usd = worst_usd
    return rec


def _parse(obj: Any) -> tuple[str, list[Any] | None, list[Settle]]:
    """A spool line as (kind, row, settles): kind "r" (a record) or "i" (an intent);
    ("", None, []) for anything else."""
    if isinstance(obj, list):
        return "r", obj, []
    if isinstance(obj, dict):
        kind = "i" if "i" in obj else "r" if "r" in obj else ""
        row = obj.get(kind) if kind else None
        if isinstance(row, list) and row:
            raw = obj.get("s")
            settles = [s for s in map(Settle.from_json, raw) if s] if isinstance(raw, list) else []
            return kind, row, settles
    return "", None, []


class LedgerWriter:
    """Spool first, then the database.

    Records of this process are also kept in memory, so the steady state inserts them
    without reading the spool back; the spool is read only for other processes' files
    and when the memory queue overflowed during a long database outage. The checkpoint
    is written every few seconds: a replay after a crash may repeat rows already
    stored, which the idempotent insert ignores. It never passes a line a replay still
    needs: an open intent, or a record whose settlements have not landed (``_pins``).
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
        replay_settle: ReplaySettle | None = None,
    ) -> None:
        self._store = store
        self._spool = Spool(spool_dir, "ledger")
        self._interval = flush_interval_s
        self._batch = batch_size
        self._orphan_every = orphan_scan_s
        self._cap = memory_cap
        self._ckpt_every = checkpoint_every_s
        self._ckpt_at = 0.0
        self.replay_settle = replay_settle
        # Spooled lines not yet in the database: a row, or None for an intent (nothing to
        # insert; its bytes count as stored). None instead of the deque: read the file.
        self._mem: deque[tuple[list[Any] | None, int]] | None = deque()
        self._appended = 0  # bytes this process appended to its current file
        self._committed = 0  # bytes of it known to be in the database
        # Lines a replay of the current file must still see, by request id: where the
        # first of them starts, and the line to carry over into a rotated file.
        self._pins: dict[str, tuple[int, bytes]] = {}
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.healthy = True
        self.replayed_lost = 0  # replica_lost rows this process wrote from others' spools

    @property
    def pending(self) -> int:
        """Records spooled but not yet in the database (approximate in overflow)."""
        if self._mem is None:
            return -1
        return sum(1 for row, _ in self._mem if row is not None)

    @property
    def open_intents(self) -> int:
        """Requests spooled as intents (or with settlements pending) and not yet closed."""
        return len(self._pins)

    def _append(self, line: bytes, row: list[Any] | None) -> int:
        at = self._appended
        self._spool.append_raw(line)
        self._appended += len(line)
        if self._mem is not None:
            self._mem.append((row, len(line)))
            if len(self._mem) > self._cap:
                self._mem = None  # a long outage: the spool file is the queue now
            elif len(self._mem) >= self._batch:
                self._wake.set()
        return at

    def intent(self, rec: LedgerRecord, lost: Sequence[Settle] = ()) -> None:
        """Spool ``rec`` (see :func:`lost_record`) as the row a replay writes if this
        process dies before :meth:`record` is called for the same request id, with the
        settlements that charge its holds. Called again for the same id (a further
        attempt reserved more), the latest intent is the one that counts."""
        line = orjson.dumps({"i": rec.to_row(), "s": [s.to_json() for s in lost]}) + b"\n"
        at = self._append(line, None)
        first = self._pins.get(rec.request_id)
        self._pins[rec.request_id] = (first[0] if first else at, line)

    def record(self, rec: LedgerRecord, settles: Sequence[Settle] = ()) -> None:
        """Durably spool one record (and the settlements about to be sent for it, so that
        a replay sends them if this process dies first); the database write happens in
        the background. Call :meth:`landed` once the settlements are written."""
        row = rec.to_row()
        if settles:
            line = orjson.dumps({"r": row, "s": [s.to_json() for s in settles]}) + b"\n"
        else:
            line = orjson.dumps(row) + b"\n"
        at = self._append(line, row)
        if not settles:
            self._pins.pop(rec.request_id, None)
            return
        # Updated in place: the pins stay in file order (the first is the smallest).
        first = self._pins.get(rec.request_id)
        self._pins[rec.request_id] = (first[0] if first else at, line)

    def landed(self, request_id: str) -> None:
        """The settlements of ``request_id`` are in the shared state: a replay no longer
        needs its lines."""
        self._pins.pop(request_id, None)

    def _checkpoint(self) -> int:
        """How far a replay of the current file may skip: stored, and needed by nobody."""
        first = next(iter(self._pins.values()), None)  # pins are in file order
        return self._committed if first is None else min(self._committed, first[0])

    async def start(self) -> None:
        self._spool.open()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger flusher")

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

    async def _drain_own(self, f: SpoolFile) -> bool:
        """Overflow: copy this process's rows after ``_committed`` from its file."""
        while True:
            lines, offset = await asyncio.to_thread(f.read, self._batch, self._committed)
            if offset == self._committed:
                return True
            rows = [row for kind, row, _ in map(_parse, lines) if kind == "r" and row]
            if rows and not await self._insert(rows):
                return False
            self._committed = offset
            f.commit(self._checkpoint())

    async def _flush_current(self) -> bool:
        f = self._spool.current
        if f is None:
            return True
        if self._mem is None:
            if not await self._drain_own(f):
                return False
            if self._committed == self._appended:
                self._mem = deque()  # caught up: back to the memory queue
            return True
        while self._mem:
            n = min(self._batch, len(self._mem))
            batch = [self._mem[i] for i in range(n)]
            rows = [row for row, _ in batch if row is not None]
            if rows and not await self._insert(rows):
                return False
            if self._mem is None:  # overflowed while we awaited: the file takes over
                return True
            for _ in range(n):
                self._committed += self._mem.popleft()[1]
        now = time.monotonic()
        if now - self._ckpt_at >= self._ckpt_every:
            self._ckpt_at = now
            f.commit(self._checkpoint())
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
            # Requests still open carry their lines over (written before the old file
            # goes; a crash in between leaves both, replayed together as one owner's).
            for rid, (_, line) in list(self._pins.items()):
                at = self._appended
                self._spool.append_raw(line)
                self._appended += len(line)
                self._committed += len(line)  # nothing new to insert: rows are stored
                self._pins[rid] = (at, line)
            if old is not None:
                old.remove()
        return ok

    # -- other processes' spools ----------------------------------------------------------

    async def replay_orphans(self) -> int:
        """Replay spool files left by processes that died; returns how many were done."""
        groups: dict[str, list[SpoolFile]] = {}
        for f in self._spool.orphans():
            groups.setdefault(f.owner, []).append(f)
        done = 0
        failed = False
        for files in groups.values():
            if not failed and await self._replay(files):
                for f in files:
                    f.remove()
                done += len(files)
            else:
                failed = True  # the database (or the state) is down: later, all of it
                for f in files:
                    f.release()
        return done

    async def _settle_replayed(self, settles: list[Settle]) -> bool:
        if not settles or self.replay_settle is None:
            return True
        try:
            await self.replay_settle(settles)
        except Exception as exc:
            log.warning("could not apply a dead process's settlements yet: %s", type(exc).__name__)
            return False
        return True

    async def _replay(self, files: list[SpoolFile]) -> bool:
        """One dead process's files, oldest first: its records and their settlements, then
        its intents that no record closed, as replica_lost rows charged at their worst
        case. False (and nothing skipped) if the database or the state is unreachable."""
        # request id -> (file, offset of its first intent line, row, settles)
        open_: dict[str, tuple[SpoolFile, int, list[Any], list[Settle]]] = {}
        for f in files:
            offset = f.committed()
            while True:
                lines, end = await asyncio.to_thread(f.read_at, self._batch, offset)
                if end == offset:
                    break
                rows: list[list[Any]] = []
                settles: list[Settle] = []
                for at, obj in lines:
                    kind, row, ss = _parse(obj)
                    if row is None or not isinstance(row[_I_REQUEST_ID], str):
                        continue
                    rid = row[_I_REQUEST_ID]
                    if kind == "i":
                        prev = open_.get(rid)
                        open_[rid] = (prev[0], prev[1], row, ss) if prev else (f, at, row, ss)
                    else:
                        open_.pop(rid, None)
                        rows.append(row)
                        settles.extend(ss)
                # Rows first: a counter seeded meanwhile from the ledger then has them.
                if rows and not await self._insert(rows):
                    return False
                if not await self._settle_replayed(settles):
                    return False
                offset = end
                pinned = min((at for ff, at, _, _ in open_.values() if ff is f), default=end)
                f.commit(min(end, pinned))
        if open_:
            lost_rows = [row for _, _, row, _ in open_.values()]
            for i in range(0, len(lost_rows), self._batch):
                if not await self._insert(lost_rows[i : i + self._batch]):
                    return False
            if not await self._settle_replayed([s for *_, ss in open_.values() for s in ss]):
                return False
            self.replayed_lost += len(open_)
            log.warning(
                "%d request(s) of a dead process were in flight: recorded as %s at their "
                "worst case",
                len(open_),
                REPLICA_LOST,
            )
        return True

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
            if flushed and self._committed == self._appended and not self._pins:
                current.remove()
            else:
                # Unstored records, open intents and pending settlements stay for the next
                # process: an intent still open here is a request that never finished.
                current.commit(self._checkpoint())
        self._spool.close()
