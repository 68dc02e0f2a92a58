"""The job queue on SQL: SQLite (embedded default) and PostgreSQL (cluster mode).

One table, ``jobs`` (migration 0006; ``runs`` and ``result_run`` from 0010). Every state change is one short transaction whose
``WHERE`` clause re-checks the state it expects, so a late or duplicate call (a worker
that lost its lease, a second completion) changes nothing.

Concurrency, per engine:

* PostgreSQL: leasing is ``UPDATE … WHERE seq IN (SELECT … FOR UPDATE SKIP LOCKED
  LIMIT n) RETURNING``, so concurrent workers never block on, or take, each other's rows.
  Depth limits take transaction-scoped advisory locks (one per priority, one per tenant)
  before counting, so concurrent submitters cannot overshoot a limit together.
* SQLite: a writing transaction starts with ``BEGIN IMMEDIATE``, taking the database's
  single write lock up front (waiting up to the engine's busy timeout) rather than
  failing with ``SQLITE_BUSY`` when a read turns into a write. One writer at a time is
  exactly the embedded mode's scale. ``FOR UPDATE`` renders as nothing there.

JSON (body, metadata, result, error) is stored as text and ``cost_usd`` as decimal text:
both are exact and identical on the two engines. Times are float epoch seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    and_,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from interlock.jobs.queue.base import (
    Clock,
    Job,
    JobNotFound,
    JobStatus,
    QueueDepth,
    QueueFull,
    QueueLimits,
    QueueUnavailable,
    check_webhook_state,
    deadline_error,
    decimal_text,
    dumps,
    lease_lost_error,
    loads_dict,
    prepare,
    system_clock,
)

# Mirrors migrations/versions/0006_jobs.py and 0010_job_runs.py (the migrations create
# it; this describes it).
jobs = Table(
    "jobs",
    MetaData(),
    Column(
        "seq",
        BigInteger().with_variant(Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    Column("id", String(40), nullable=False, unique=True),
    Column("owner", String(64), nullable=False),
    Column("team", String(200), nullable=True),
    Column("tenant", String(200), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("callback_url", Text, nullable=True),
    Column("priority", Integer, nullable=False),
    Column("deadline", Float, nullable=True),
    Column("metadata", Text, nullable=False),
    Column("idempotency_key", String(255), nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("run_at", Float, nullable=False),
    Column("lease_until", Float, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("result", Text, nullable=True),
    Column("error", Text, nullable=True),
    Column("status_code", Integer, nullable=True),
    Column("cost_usd", String(48), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("dead", Boolean, nullable=False),
    Column("duplicate_completions", Integer, nullable=False),
    Column("webhook_state", String(16), nullable=True),
    Column("runs", Integer, nullable=False),
    Column("result_run", Integer, nullable=True),
)

c = jobs.c
QUEUED, RUNNING = JobStatus.QUEUED.value, JobStatus.RUNNING.value
SUCCEEDED, FAILED = JobStatus.SUCCEEDED.value, JobStatus.FAILED.value
CANCELLED = JobStatus.CANCELLED.value

# Advisory-lock namespaces (the first int of pg_advisory_xact_lock(int, int)).
_LOCK_PRIORITY = 74210601
_LOCK_TENANT = 74210602


def _job(row: Row[Any]) -> Job:
    m = row._mapping
    cost = m["cost_usd"]
    return Job(
        id=m["id"],
        seq=int(m["seq"]),
        owner=m["owner"],
        team=m["team"],
        endpoint=m["endpoint"],
        body=loads_dict(m["body"]) or {},
        callback_url=m["callback_url"],
        priority=int(m["priority"]),
        deadline=m["deadline"],
        metadata=loads_dict(m["metadata"]) or {},
        idempotency_key=m["idempotency_key"],
        status=JobStatus(m["status"]),
        attempts=int(m["attempts"]),
        runs=int(m["runs"]),
        result_run=m["result_run"],
        max_attempts=int(m["max_attempts"]),
        run_at=float(m["run_at"]),
        lease_until=m["lease_until"],
        worker=m["worker"],
        result=loads_dict(m["result"]),
        error=loads_dict(m["error"]),
        status_code=m["status_code"],
        cost_usd=Decimal(cost) if cost is not None else None,
        created_at=float(m["created_at"]),
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        dead=bool(m["dead"]),
        duplicate_completions=int(m["duplicate_completions"]),
        webhook_state=m["webhook_state"],
    )


def _values(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "owner": job.owner,
        "team": job.team,
        "tenant": job.tenant,
        "endpoint": job.endpoint,
        "body": dumps(job.body),
        "callback_url": job.callback_url,
        "priority": job.priority,
        "deadline": job.deadline,
        "metadata": dumps(job.metadata),
        "idempotency_key": job.idempotency_key,
        "status": QUEUED,
        "attempts": 0,
        "runs": 0,
        "max_attempts": job.max_attempts,
        "run_at": job.run_at,
        "created_at": job.created_at,
        "dead": False,
        "duplicate_completions": 0,
        "webhook_state": job.webhook_state,
    }


class SqlJobQueue:
    """:class:`~interlock.jobs.queue.base.JobQueue` on a migrated SQLite or PostgreSQL engine.

    The engine belongs to the caller (it is shared with the rest of storage); ``close``
    does not dispose of it. ``batch`` bounds how many expired leases or late jobs one
    ``lease`` call sweeps, so a large backlog of them cannot make one call slow.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        limits: QueueLimits | None = None,
        clock: Clock = system_clock,
        batch: int = 500,
    ) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._limits = limits or QueueLimits()
        self._clock = clock
        self._batch = batch

    async def close(self) -> None:
        return None

    # -- transactions -------------------------------------------------------------------

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        try:
            if self._pg:
                async with self._engine.begin() as conn:
                    yield conn
            else:
                async with self._engine.connect() as conn:
                    await conn.exec_driver_sql("BEGIN IMMEDIATE")
                    yield conn
                    await conn.commit()
        except (SQLAlchemyError, OSError) as exc:
            raise QueueUnavailable(f"job store unavailable: {type(exc).__name__}") from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._engine.connect() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise QueueUnavailable(f"job store unavailable: {type(exc).__name__}") from exc

    async def _fetch(self, conn: AsyncConnection, *where: ColumnElement[bool]) -> Job | None:
        row = (await conn.execute(select(jobs).where(*where))).first()
        return _job(row) if row is not None else None

    # -- submit -------------------------------------------------------------------------

    async def enqueue(self, job: Job) -> tuple[Job, bool]:
        new = prepare(job, self._clock())
        async with self._write() as conn:
            if new.idempotency_key is not None:
                same = (c.owner == new.owner, c.idempotency_key == new.idempotency_key)
                existing = await self._fetch(conn, *same)
                if existing is not None:
                    return existing, False
            await self._check_limits(conn, new)
            insert = (postgresql.insert if self._pg else sqlite.insert)(jobs)
            stmt = (
                insert.values(**_values(new))
                .on_conflict_do_nothing(index_elements=[c.owner, c.idempotency_key])
                .returning(c.seq)
            )
            seq = (await conn.execute(stmt)).scalar_one_or_none()
            if seq is None:
                # A concurrent submit with the same Idempotency-Key won the insert.
                raced = await self._fetch(
                    conn, c.owner == new.owner, c.idempotency_key == new.idempotency_key
                )
                if raced is None:  # pragma: no cover - the conflicting row is committed
                    raise QueueUnavailable("idempotency conflict without a stored job")
                return raced, False
        new.seq = int(seq)
        return new, True

    async def _check_limits(self, conn: AsyncConnection, job: Job) -> None:
        per_priority = self._limits.for_priority(job.priority)
        per_tenant = self._limits.max_depth_per_tenant
        if self._pg:
            # Always in this order (priority, then tenant), so two submitters cannot deadlock.
            if per_priority is not None:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:ns, hashtext(:k))"),
                    {"ns": _LOCK_PRIORITY, "k": str(job.priority)},
                )
            if per_tenant is not None:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:ns, hashtext(:k))"),
                    {"ns": _LOCK_TENANT, "k": job.tenant},
                )
        retry = self._limits.retry_after_s
        if per_priority is not None:
            q = select(func.count()).where(c.status == QUEUED, c.priority == job.priority)
            if (await conn.execute(q)).scalar_one() >= per_priority:
                raise QueueFull("priority", per_priority, retry)
        if per_tenant is not None:
            q = select(func.count()).where(c.status == QUEUED, c.tenant == job.tenant)
            if (await conn.execute(q)).scalar_one() >= per_tenant:
                raise QueueFull("tenant", per_tenant, retry)

    # -- work ---------------------------------------------------------------------------

    async def lease(self, worker_id: str, n: int, lease_s: float) -> list[Job]:
        if n <= 0:
            return []
        now = self._clock()
        async with self._write() as conn:
            await self._reclaim(conn, now)
            await self._expire_deadlines(conn, now)
            pick = (
                select(c.seq)
                .where(
                    c.status == QUEUED,
                    c.run_at <= now,
                    or_(c.deadline.is_(None), c.deadline > now),
                )
                .order_by(c.priority.desc(), c.seq)
                .limit(n)
                .with_for_update(skip_locked=True)
            )
            stmt = (
                update(jobs)
                .where(c.seq.in_(pick))
                .values(
                    status=RUNNING,
                    attempts=c.attempts + 1,
                    # The run's number, in the same statement as the lease: two leases
                    # (a lease taken back from a live worker, a requeued job) never
                    # share one, and neither do their ledger request ids.
                    runs=c.runs + 1,
                    worker=worker_id,
                    lease_until=now + lease_s,
                    started_at=now,
                )
                .returning(*c)
            )
            rows = (await conn.execute(stmt)).fetchall()
        # RETURNING order is unspecified: hand them out in queue order.
        return sorted((_job(r) for r in rows), key=lambda j: (-j.priority, j.seq))

    async def reclaim(self) -> int:
        now = self._clock()
        async with self._write() as conn:
            return await self._reclaim(conn, now)

    def _pick(self, *where: ColumnElement[bool]) -> Any:
        return select(c.seq).where(*where).limit(self._batch).with_for_update(skip_locked=True)

    async def _reclaim(self, conn: AsyncConnection, now: float) -> int:
        expired = (c.status == RUNNING, c.lease_until < now)
        # A job whose worker died on its last allowed attempt is a poison pill: bury it.
        buried = await conn.execute(
            update(jobs)
            .where(c.seq.in_(self._pick(*expired, c.attempts >= c.max_attempts)))
            .values(
                status=FAILED,
                dead=True,
                error=dumps(lease_lost_error()),
                result_run=c.runs,
                finished_at=now,
                lease_until=None,
            )
        )
        back = await conn.execute(
            update(jobs)
            .where(c.seq.in_(self._pick(*expired, c.attempts < c.max_attempts)))
            .values(status=QUEUED, run_at=now, lease_until=None)
        )
        return int(buried.rowcount) + int(back.rowcount)

    async def _expire_deadlines(self, conn: AsyncConnection, now: float) -> None:
        late = self._pick(c.status == QUEUED, c.deadline.is_not(None), c.deadline <= now)
        await conn.execute(
            update(jobs)
            .where(c.seq.in_(late))
            .values(status=FAILED, error=dumps(deadline_error()), finished_at=now)
        )

    async def heartbeat(self, job_id: str, worker_id: str, lease_s: float) -> bool:
        now = self._clock()
        async with self._write() as conn:
            res = await conn.execute(
                update(jobs)
                .where(c.id == job_id, c.status == RUNNING, c.worker == worker_id)
                .values(lease_until=now + lease_s)
            )
        return bool(res.rowcount == 1)

    async def complete(
        self,
        job_id: str,
        worker_id: str,
        result: dict[str, Any],
        cost_usd: str | Decimal | None = None,
        status_code: int | None = None,
        run: int | None = None,
    ) -> bool:
        now = self._clock()
        cost = decimal_text(cost_usd)
        async with self._write() as conn:
            # Any unfinished job accepts a result, even from a worker whose lease was
            # reclaimed: the work is done, and the first result wins.
            res = await conn.execute(
                update(jobs)
                .where(c.id == job_id, c.status.in_((QUEUED, RUNNING)))
                .values(
                    status=SUCCEEDED,
                    result=dumps(result),
                    cost_usd=cost,
                    status_code=status_code,
                    result_run=c.runs if run is None else run,
                    worker=worker_id,
                    finished_at=now,
                    lease_until=None,
                )
            )
            if res.rowcount == 1:
                return True
            await conn.execute(
                update(jobs)
                .where(c.id == job_id, c.status == SUCCEEDED)
                .values(duplicate_completions=c.duplicate_completions + 1)
            )
        return False

    async def fail(
        self,
        job_id: str,
        worker_id: str,
        error: dict[str, Any],
        retryable: bool,
        backoff_s: float = 0.0,
    ) -> JobStatus:
        now = self._clock()
        async with self._write() as conn:
            q = select(c.status, c.worker, c.attempts, c.max_attempts).where(c.id == job_id)
            row = (await conn.execute(q.with_for_update())).first()
            if row is None:
                raise JobNotFound(f"no job {job_id}")
            if row.status != RUNNING or row.worker != worker_id:
                return JobStatus(row.status)
            this = c.id == job_id
            if retryable and row.attempts < row.max_attempts:
                await conn.execute(
                    update(jobs)
                    .where(this)
                    .values(
                        status=QUEUED,
                        run_at=now + max(0.0, backoff_s),
                        error=dumps(error),
                        result_run=c.runs,  # only the holder fails: its run is the latest
                        lease_until=None,
                    )
                )
                return JobStatus.QUEUED
            await conn.execute(
                update(jobs)
                .where(this)
                .values(
                    status=FAILED,
                    dead=True,
                    error=dumps(error),
                    result_run=c.runs,
                    finished_at=now,
                    lease_until=None,
                )
            )
        return JobStatus.FAILED

    # -- owner and operator actions -----------------------------------------------------

    async def cancel(self, job_id: str, owner: str) -> Job | None:
        now = self._clock()
        async with self._write() as conn:
            mine = (c.id == job_id, c.owner == owner)
            await conn.execute(
                update(jobs)
                .where(*mine, c.status.in_((QUEUED, RUNNING)))
                .values(status=CANCELLED, finished_at=now, lease_until=None)
            )
            return await self._fetch(conn, *mine)

    async def requeue(self, job_id: str) -> bool:
        now = self._clock()
        async with self._write() as conn:
            res = await conn.execute(
                update(jobs)
                .where(c.id == job_id, c.status == FAILED, c.dead.is_(True))
                .values(
                    status=QUEUED,
                    dead=False,
                    attempts=0,  # runs is kept: the next run's number follows the last
                    run_at=now,
                    error=None,
                    result_run=None,
                    finished_at=None,
                    lease_until=None,
                )
            )
        return bool(res.rowcount == 1)

    async def set_webhook_state(self, job_id: str, state: str | None) -> bool:
        check_webhook_state(state)
        async with self._write() as conn:
            res = await conn.execute(update(jobs).where(c.id == job_id).values(webhook_state=state))
        return bool(res.rowcount == 1)

    # -- reads --------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        async with self._read() as conn:
            return await self._fetch(conn, c.id == job_id)

    async def dead_letters(self, limit: int = 100) -> list[Job]:
        q = (
            select(jobs)
            .where(c.status == FAILED, c.dead.is_(True))
            .order_by(c.seq.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(q)).fetchall()
        return [_job(r) for r in rows]

    async def depth(self) -> QueueDepth:
        q = select(c.priority, func.count()).where(c.status == QUEUED).group_by(c.priority)
        async with self._read() as conn:
            rows = (await conn.execute(q)).fetchall()
        by_priority = {int(p): int(n) for p, n in rows}
        return {"total": sum(by_priority.values()), "by_priority": by_priority}

    async def oldest_age_s(self) -> float | None:
        now = self._clock()
        q = select(func.min(c.run_at)).where(c.status == QUEUED, c.run_at <= now)
        async with self._read() as conn:
            oldest = (await conn.execute(q)).scalar_one_or_none()
        return None if oldest is None else max(0.0, now - float(oldest))

    async def pending_webhooks(self, finished_before: float, limit: int = 100) -> list[Job]:
        """Finished jobs whose webhook is still owed, finished at or before ``finished_before``
        (oldest first): what a worker re-delivers after a restart."""
        q = (
            select(jobs)
            .where(
                c.webhook_state == "pending",
                c.status.in_((SUCCEEDED, FAILED, CANCELLED)),
                c.finished_at <= finished_before,
            )
            .order_by(c.seq)
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(q)).fetchall()
        return [_job(r) for r in rows]

    async def list(
        self,
        owner: str,
        status: JobStatus | str | None = None,
        limit: int = 20,
        after: str | None = None,
    ) -> list[Job]:
        where: list[ColumnElement[bool]] = [c.owner == owner]
        if status is not None:
            where.append(c.status == JobStatus(status).value)
        if after is not None:
            cursor = select(c.seq).where(c.id == after, c.owner == owner).scalar_subquery()
            where.append(c.seq < cursor)
        q = select(jobs).where(and_(*where)).order_by(c.seq.desc()).limit(limit)
        async with self._read() as conn:
            rows = (await conn.execute(q)).fetchall()
        return [_job(r) for r in rows]
