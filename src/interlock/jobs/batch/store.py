"""Batch API storage on the SQL database (SQLite embedded, PostgreSQL in cluster mode).

Three tables from migration 0008: ``batch_files`` (uploads and output files, content
as a blob), ``batches`` and ``batch_items`` (one row per request line: its body, the job
that runs it, and its finished output line). Files live in the database rather than
under ``state_dir`` because replicas share the database, not a directory: any replica
can serve a file any other one stored. Every read by id is followed by an owner check
in :mod:`interlock.jobs.batch.service`; lists filter by owner here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    Text,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.jobs.queue.base import dumps, loads_dict

_SEQ = BigInteger().with_variant(Integer(), "sqlite")
_meta = MetaData()

# Mirror migrations/versions/0009_batch.py (the migration creates them).
files_t = Table(
    "batch_files",
    _meta,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("owner", String(64), nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("filename", String(255), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("lines", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("content", LargeBinary, nullable=False),
)
batches_t = Table(
    "batches",
    _meta,
    Column("seq", _SEQ, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("owner", String(64), nullable=False),
    Column("team", String(200), nullable=True),
    Column("endpoint", String(64), nullable=False),
    Column("input_file_id", String(64), nullable=False),
    Column("completion_window", String(16), nullable=False),
    Column("metadata", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("errors", Text, nullable=True),
    Column("output_file_id", String(64), nullable=True),
    Column("error_file_id", String(64), nullable=True),
    Column("total", Integer, nullable=False),
    Column("completed", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("in_progress_at", Float, nullable=True),
    Column("finalizing_at", Float, nullable=True),
    Column("completed_at", Float, nullable=True),
    Column("failed_at", Float, nullable=True),
    Column("expired_at", Float, nullable=True),
    Column("cancelling_at", Float, nullable=True),
    Column("cancelled_at", Float, nullable=True),
    Column("driver", String(200), nullable=True),
    Column("driver_until", Float, nullable=True),
)
items_t = Table(
    "batch_items",
    _meta,
    Column("batch_id", String(64), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("custom_id", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("job_id", String(40), nullable=True),
    Column("output", Text, nullable=True),
)

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
FINISHED = ("completed", "failed", "expired", "cancelled")
# Item states: pending (no job yet) -> queued (job enqueued) -> completed | failed.
PENDING, QUEUED, DONE_OK, DONE_FAILED = "pending", "queued", "completed", "failed"

_FILE_COLS = [c for c in files_t.c if c.name != "content"]


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(12)


@dataclass(slots=True)
class FileRecord:
    id: str
    owner: str
    purpose: str
    filename: str
    bytes: int
    lines: int
    created_at: float
    seq: int = 0


@dataclass(slots=True)
class Batch:
    id: str
    owner: str
    team: str | None
    endpoint: str
    input_file_id: str
    completion_window: str
    created_at: float
    expires_at: float
    metadata: dict[str, Any] | None = None
    status: str = "validating"
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    times: dict[str, float | None] = field(default_factory=dict)
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Item:
    line: int
    custom_id: str
    body: dict[str, Any]
    state: str
    job_id: str | None


_TIMES = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)


def _file(row: Row[Any]) -> FileRecord:
    m = row._mapping
    return FileRecord(
        id=m["id"],
        owner=m["owner"],
        purpose=m["purpose"],
        filename=m["filename"],
        bytes=int(m["bytes"]),
        lines=int(m["lines"]),
        created_at=float(m["created_at"]),
        seq=int(m["seq"]),
    )


def _batch(row: Row[Any]) -> Batch:
    m = row._mapping
    errors = loads_dict(m["errors"])
    return Batch(
        id=m["id"],
        owner=m["owner"],
        team=m["team"],
        endpoint=m["endpoint"],
        input_file_id=m["input_file_id"],
        completion_window=m["completion_window"],
        created_at=float(m["created_at"]),
        expires_at=float(m["expires_at"]),
        metadata=loads_dict(m["metadata"]),
        status=m["status"],
        errors=errors["data"] if errors else None,
        output_file_id=m["output_file_id"],
        error_file_id=m["error_file_id"],
        total=int(m["total"]),
        completed=int(m["completed"]),
        failed=int(m["failed"]),
        times={t: m[t] for t in _TIMES},
        seq=int(m["seq"]),
    )


class BatchStore:
    """Files, batches and batch items; every call is one short transaction."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- files ---------------------------------------------------------------------

    async def add_file(self, rec: FileRecord, content: bytes) -> FileRecord:
        """Store a file (committed before returning); an existing id is kept as it is,
        so a finalizer that runs twice writes its output file once."""
        async with self._engine.begin() as conn:
            found = await conn.execute(select(files_t.c.seq).where(files_t.c.id == rec.id))
            seq = found.scalar()
            if seq is None:
                res = await conn.execute(
                    insert(files_t).values(
                        id=rec.id,
                        owner=rec.owner,
                        purpose=rec.purpose,
                        filename=rec.filename,
                        bytes=rec.bytes,
                        lines=rec.lines,
                        created_at=rec.created_at,
                        content=content,
                    )
                )
                seq = res.inserted_primary_key[0] if res.inserted_primary_key else 0
        rec.seq = int(seq or 0)
        return rec

    async def get_file(self, file_id: str) -> FileRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(*_FILE_COLS).where(files_t.c.id == file_id))).first()
        return _file(row) if row is not None else None

    async def file_content(self, file_id: str) -> bytes | None:
        async with self._engine.connect() as conn:
            res = await conn.execute(select(files_t.c.content).where(files_t.c.id == file_id))
            value = res.scalar()
        return bytes(value) if value is not None else None

    async def list_files(
        self, owner: str, purpose: str | None, limit: int, after: str | None, ascending: bool
    ) -> list[FileRecord]:
        q = select(*_FILE_COLS).where(files_t.c.owner == owner)
        if purpose:
            q = q.where(files_t.c.purpose == purpose)
        if after:
            pivot = (
                select(files_t.c.seq)
                .where(and_(files_t.c.id == after, files_t.c.owner == owner))
                .scalar_subquery()
            )
            q = q.where(files_t.c.seq > pivot if ascending else files_t.c.seq < pivot)
        q = q.order_by(files_t.c.seq if ascending else files_t.c.seq.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_file(r) for r in (await conn.execute(q)).all()]

    async def delete_file(self, file_id: str, owner: str) -> bool:
        async with self._engine.begin() as conn:
            res = await conn.execute(
                delete(files_t).where(and_(files_t.c.id == file_id, files_t.c.owner == owner))
            )
        return bool(res.rowcount)

    async def stored_bytes(self, owner: str) -> int:
        async with self._engine.connect() as conn:
            res = await conn.execute(
                select(func.coalesce(func.sum(files_t.c.bytes), 0)).where(files_t.c.owner == owner)
            )
            return int(res.scalar() or 0)

    # -- batches -------------------------------------------------------------------

    async def add_batch(self, b: Batch) -> Batch:
        async with self._engine.begin() as conn:
            res = await conn.execute(
                insert(batches_t).values(
                    id=b.id,
                    owner=b.owner,
                    team=b.team,
                    endpoint=b.endpoint,
                    input_file_id=b.input_file_id,
                    completion_window=b.completion_window,
                    metadata=dumps(b.metadata) if b.metadata is not None else None,
                    status=b.status,
                    total=0,
                    completed=0,
                    failed=0,
                    created_at=b.created_at,
                    expires_at=b.expires_at,
                )
            )
        b.seq = int(res.inserted_primary_key[0]) if res.inserted_primary_key else 0
        return b

    async def get_batch(self, batch_id: str) -> Batch | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(batches_t).where(batches_t.c.id == batch_id))).first()
        return _batch(row) if row is not None else None

    async def list_batches(self, owner: str, limit: int, after: str | None) -> list[Batch]:
        q = select(batches_t).where(batches_t.c.owner == owner)
        if after:
            pivot = (
                select(batches_t.c.seq)
                .where(and_(batches_t.c.id == after, batches_t.c.owner == owner))
                .scalar_subquery()
            )
            q = q.where(batches_t.c.seq < pivot)
        q = q.order_by(batches_t.c.seq.desc()).limit(limit)
        async with self._engine.connect() as conn:
            return [_batch(r) for r in (await conn.execute(q)).all()]

    async def active_batches(self, limit: int = 100) -> list[str]:
        q = (
            select(batches_t.c.id)
            .where(batches_t.c.status.in_(ACTIVE))
            .order_by(batches_t.c.seq)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [r[0] for r in (await conn.execute(q)).all()]

    async def claim(self, batch_id: str, driver: str, now: float, lease_s: float) -> bool:
        """Take (or extend) the right to drive an active batch; one driver at a time."""
        c = batches_t.c
        async with self._engine.begin() as conn:
            res = await conn.execute(
                update(batches_t)
                .where(
                    and_(
                        c.id == batch_id,
                        c.status.in_(ACTIVE),
                        or_(c.driver_until.is_(None), c.driver_until < now, c.driver == driver),
                    )
                )
                .values(driver=driver, driver_until=now + lease_s)
            )
        return bool(res.rowcount)

    async def set_status(
        self, batch_id: str, status: str, now: float, *, expect: Sequence[str], **values: Any
    ) -> bool:
        """Move a batch to ``status`` (stamping ``<status>_at``) if it is in ``expect``."""
        c = batches_t.c
        stamp = {f"{status}_at": now} if f"{status}_at" in _TIMES else {}
        if "errors" in values and values["errors"] is not None:
            values["errors"] = dumps({"object": "list", "data": values["errors"]})
        if status in FINISHED:
            values.update(driver=None, driver_until=None)
        async with self._engine.begin() as conn:
            res = await conn.execute(
                update(batches_t)
                .where(and_(c.id == batch_id, c.status.in_(tuple(expect))))
                .values(status=status, **stamp, **values)
            )
        return bool(res.rowcount)

    # -- items ---------------------------------------------------------------------

    async def start(
        self, batch_id: str, items: Iterable[tuple[int, str, dict[str, Any]]], now: float
    ) -> bool:
        """validating -> in_progress with the batch's items, in one transaction (a
        driver that dies half way leaves the batch validating and no items)."""
        rows = [
            {
                "batch_id": batch_id,
                "line": line,
                "custom_id": cid,
                "body": dumps(body),
                "state": PENDING,
            }
            for line, cid, body in items
        ]
        c = batches_t.c
        async with self._engine.begin() as conn:
            res = await conn.execute(
                update(batches_t)
                .where(and_(c.id == batch_id, c.status == "validating"))
                .values(status="in_progress", in_progress_at=now, total=len(rows))
            )
            if not res.rowcount:
                return False
            await conn.execute(delete(items_t).where(items_t.c.batch_id == batch_id))
            for i in range(0, len(rows), 1000):
                await conn.execute(insert(items_t), rows[i : i + 1000])
        return True

    async def items(self, batch_id: str, state: str, limit: int) -> list[Item]:
        q = (
            select(items_t)
            .where(and_(items_t.c.batch_id == batch_id, items_t.c.state == state))
            .order_by(items_t.c.line)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(q)).all()
        return [
            Item(
                line=int(m["line"]),
                custom_id=m["custom_id"],
                body=loads_dict(m["body"]) or {},
                state=m["state"],
                job_id=m["job_id"],
            )
            for m in (r._mapping for r in rows)
        ]

    async def count(self, batch_id: str, state: str) -> int:
        async with self._engine.connect() as conn:
            res = await conn.execute(
                select(func.count()).where(
                    and_(items_t.c.batch_id == batch_id, items_t.c.state == state)
                )
            )
            return int(res.scalar() or 0)

    async def mark_queued(self, batch_id: str, line: int, job_id: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(items_t)
                .where(and_(items_t.c.batch_id == batch_id, items_t.c.line == line))
                .values(state=QUEUED, job_id=job_id)
            )

    async def finish_items(self, batch_id: str, done: list[tuple[int, bool, str]]) -> None:
        """Record finished lines ``(line, ok, output line)`` and refresh the counts."""
        async with self._engine.begin() as conn:
            for line, ok, output in done:
                await conn.execute(
                    update(items_t)
                    .where(
                        and_(
                            items_t.c.batch_id == batch_id,
                            items_t.c.line == line,
                            items_t.c.state.in_((PENDING, QUEUED)),
                        )
                    )
                    .values(state=DONE_OK if ok else DONE_FAILED, output=output)
                )
            counts: dict[str, int] = dict(
                (
                    await conn.execute(
                        select(items_t.c.state, func.count())
                        .where(items_t.c.batch_id == batch_id)
                        .group_by(items_t.c.state)
                    )
                ).all()
            )
            await conn.execute(
                update(batches_t)
                .where(batches_t.c.id == batch_id)
                .values(completed=counts.get(DONE_OK, 0), failed=counts.get(DONE_FAILED, 0))
            )

    async def outputs(self, batch_id: str, state: str) -> list[str]:
        q = (
            select(items_t.c.output)
            .where(and_(items_t.c.batch_id == batch_id, items_t.c.state == state))
            .order_by(items_t.c.line)
        )
        async with self._engine.connect() as conn:
            return [r[0] for r in (await conn.execute(q)).all() if r[0] is not None]
