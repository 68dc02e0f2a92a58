"""The job model and the contract every queue backend keeps.

A job is a gateway request (``endpoint`` + JSON ``body``) accepted now and run later by a
worker through the same ``Gateway.handle`` as a synchronous call. The queue is
at-least-once: a worker *leases* jobs for ``lease_s`` seconds and extends the lease with
heartbeats; when a worker dies (even SIGKILL) its lease runs out and the next
:meth:`JobQueue.lease` takes the job back (*reclaim*). A job may therefore run twice, so
the result write is idempotent: the first completion wins and later ones only count
themselves in ``duplicate_completions``.

Decisions shared by all backends (docs/decisions.md, "Job queue"):

* Priority is an int in ``[PRIORITY_MIN, PRIORITY_MAX]``, higher first, FIFO within a
  priority by enqueue order (``seq``). Names map to ints: high 10, normal 0, low -10.
* A dead letter is ``status == failed`` with ``dead=True`` (retries exhausted, a
  non-retryable error, or a lease lost on the last attempt). Other terminal failures
  (``deadline_exceeded``) have ``dead=False``: requeueing them would not help.
* ``cancel`` of a running job sets ``cancelled`` at once; the worker learns it from
  its next heartbeat (``False``) and its late ``complete`` does not overwrite it.
* Depth limits count *queued* jobs (per priority, per tenant = team or else owner).
* Times are float epoch seconds from an injected clock, so tests need no sleeping.
* ``attempts`` counts towards ``max_attempts`` and a requeue resets it; ``runs`` counts
  every lease (every upstream run) and nothing resets it. Run ``n``'s ledger request id
  is ``<job id>-<n>`` (:func:`run_request_id`): unique forever, so no run's spend record
  can collide with another's (a requeued job, a lease taken back from a live worker),
  and the job id is derivable from it (:func:`job_of_request_id`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Protocol, TypedDict

import orjson

from interlock.errors import NotFound, RateLimited, ServiceUnavailable

Clock = Callable[[], float]

PRIORITY_MIN = -100
PRIORITY_MAX = 100
PRIORITIES: Mapping[str, int] = {"high": 10, "normal": 0, "low": -10}

WEBHOOK_STATES = frozenset({"pending", "delivered", "failed", "disabled"})


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def new_job_id() -> str:
    return "job_" + secrets.token_hex(12)


def run_request_id(job_id: str, run: int) -> str:
    """The ledger request id of run ``run`` of the job (``job_…-3``)."""
    return f"{job_id}-{run}"


def job_of_request_id(request_id: str) -> tuple[str, int] | None:
    """(job id, run) of a job run's ledger request id, also of the rows derived from one
    (a hedge's ``…-3-hedge``); None for other requests."""
    if not request_id.startswith("job_"):
        return None
    job_id, _, rest = request_id.partition("-")
    run = rest.split("-", 1)[0]
    if not job_id or not run.isdigit():
        return None
    return job_id, int(run)


def priority_value(priority: int | str) -> int:
    """An int priority, from an int or a name (``high``/``normal``/``low``)."""
    if isinstance(priority, str):
        if priority in PRIORITIES:
            return PRIORITIES[priority]
        raise ValueError(f"unknown priority {priority!r}; use one of {sorted(PRIORITIES)}")
    if isinstance(priority, bool) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority must be an int in [{PRIORITY_MIN}, {PRIORITY_MAX}]")
    return priority


@dataclass(slots=True)
class Job:
    """One job as stored. Construct with the request fields; the queue fills the rest.

    ``run_at`` 0 means "now" on enqueue (a later time schedules the job). ``seq`` is the
    enqueue order, assigned by the store: it orders FIFO and pages ``list``. ``runs`` is
    the number of the latest run (incremented at every lease, never reset: a leased
    job's ``runs`` is its own run's number); ``result_run`` the run whose result or error
    the job shows (None before one is recorded).
    """

    owner: str
    endpoint: str
    body: dict[str, Any]
    team: str | None = None
    callback_url: str | None = None
    priority: int = 0
    deadline: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    max_attempts: int = 3
    run_at: float = 0.0
    id: str = field(default_factory=new_job_id)
    seq: int = 0
    status: JobStatus = JobStatus.QUEUED
    attempts: int = 0
    runs: int = 0
    result_run: int | None = None
    lease_until: float | None = None
    worker: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    status_code: int | None = None
    cost_usd: Decimal | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    dead: bool = False
    duplicate_completions: int = 0
    webhook_state: str | None = None

    @property
    def tenant(self) -> str:
        """Whom depth limits and accounting charge: the team, or the key if it has none."""
        return self.team if self.team is not None else self.owner


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """Backpressure: beyond these depths :meth:`JobQueue.enqueue` raises :class:`QueueFull`.

    ``max_depth_per_priority`` is one limit for every priority or a map priority → limit
    (priorities not in the map are unlimited). ``retry_after_s`` is the hint handed back.
    """

    max_depth_per_priority: int | Mapping[int, int] | None = None
    max_depth_per_tenant: int | None = None
    retry_after_s: float = 5.0

    def for_priority(self, priority: int) -> int | None:
        limit = self.max_depth_per_priority
        if limit is None or isinstance(limit, int):
            return limit
        return limit.get(priority)


class QueueDepth(TypedDict):
    total: int
    by_priority: dict[int, int]


class QueueFull(RateLimited):
    """The queue (one priority, or one tenant's share) is at its depth limit: 429."""

    code = "queue_full"

    def __init__(self, scope: str, limit: int, retry_after_s: float) -> None:
        super().__init__(
            f"the job queue is full ({scope} limit of {limit} queued jobs); retry later",
            retry_after=retry_after_s,
        )
        self.scope = scope
        self.limit = limit
        self.retry_after_s = retry_after_s


class QueueUnavailable(ServiceUnavailable):
    """The queue's store did not answer; nothing was accepted (503)."""

    code = "queue_unavailable"


class JobNotFound(NotFound):
    code = "job_not_found"


# -- helpers shared by the backends -------------------------------------------------------


def deadline_error() -> dict[str, Any]:
    return {"code": "deadline_exceeded", "message": "the job's deadline passed before it ran"}


def lease_lost_error() -> dict[str, Any]:
    return {
        "code": "lease_expired",
        "message": "the worker stopped heartbeating on the job's last allowed attempt",
    }


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads_dict(raw: str | bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("stored job JSON is not an object")
    return value


def decimal_text(cost: str | Decimal | None) -> str | None:
    """Cost as exact decimal text (stored as text: exact on SQLite, PostgreSQL and Redis)."""
    if cost is None:
        return None
    try:
        value = Decimal(cost)
    except InvalidOperation:
        raise ValueError(f"cost_usd is not a decimal: {cost!r}") from None
    if not value.is_finite():
        raise ValueError(f"cost_usd is not finite: {cost!r}")
    return str(value)


def prepare(job: Job, now: float) -> Job:
    """Validate a new job and stamp what the queue owns (status, times, counters)."""
    if not job.owner:
        raise ValueError("a job needs an owner")
    if not job.endpoint:
        raise ValueError("a job needs an endpoint")
    if job.max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if job.webhook_state is not None and job.webhook_state not in WEBHOOK_STATES:
        raise ValueError(f"unknown webhook_state {job.webhook_state!r}")
    return Job(
        owner=job.owner,
        endpoint=job.endpoint,
        body=job.body,
        team=job.team,
        callback_url=job.callback_url,
        priority=priority_value(job.priority),
        deadline=job.deadline,
        metadata=job.metadata,
        idempotency_key=job.idempotency_key or None,
        max_attempts=job.max_attempts,
        run_at=job.run_at if job.run_at > 0 else now,
        id=job.id,
        created_at=now,
        webhook_state=job.webhook_state,
    )


def check_webhook_state(state: str | None) -> None:
    if state is not None and state not in WEBHOOK_STATES:
        raise ValueError(f"unknown webhook_state {state!r}; use one of {sorted(WEBHOOK_STATES)}")


def system_clock() -> float:
    return time.time()


class JobQueue(Protocol):
    """A durable, at-least-once job queue. Every backend passes the same conformance suite."""

    async def enqueue(self, job: Job) -> tuple[Job, bool]:
        """Store ``job`` (committed before returning); ``(stored job, created)``.

        The same ``idempotency_key`` from the same owner returns the existing job with
        ``created=False``, even when the queue is full. Raises :class:`QueueFull`.
        """
        ...

    async def lease(self, worker_id: str, n: int, lease_s: float) -> list[Job]:
        """Take up to ``n`` runnable jobs, highest priority first, FIFO within a priority.

        First reclaims expired leases (or dead-letters them on their last attempt) and
        fails queued jobs past their deadline with ``deadline_exceeded``.
        """
        ...

    async def reclaim(self) -> int:
        """Put jobs whose lease ran out back in the queue; how many changed."""
        ...

    async def heartbeat(self, job_id: str, worker_id: str, lease_s: float) -> bool:
        """Extend the lease to now + ``lease_s``; False if the worker no longer holds it."""
        ...

    async def complete(
        self,
        job_id: str,
        worker_id: str,
        result: dict[str, Any],
        cost_usd: str | Decimal | None = None,
        status_code: int | None = None,
        run: int | None = None,
    ) -> bool:
        """Record success; False (and ``duplicate_completions += 1``) if already done.

        ``run`` is the number of the run that produced ``result`` (kept as
        ``result_run``: the first result wins, and it need not be the latest run's).
        """
        ...

    async def fail(
        self,
        job_id: str,
        worker_id: str,
        error: dict[str, Any],
        retryable: bool,
        backoff_s: float = 0.0,
    ) -> JobStatus:
        """Retry after ``backoff_s`` or dead-letter; the status after the call.

        No effect (current status returned) unless ``worker_id`` holds the job.
        """
        ...

    async def cancel(self, job_id: str, owner: str) -> Job | None:
        """Cancel a queued or running job of ``owner``; None if there is no such job."""
        ...

    async def get(self, job_id: str) -> Job | None: ...

    async def dead_letters(self, limit: int = 100) -> list[Job]:
        """Dead-lettered jobs, newest first."""
        ...

    async def requeue(self, job_id: str) -> bool:
        """Send a dead letter back to the queue with its attempts reset (not its runs:
        the next run gets the next number, and a ledger request id of its own)."""
        ...

    async def set_webhook_state(self, job_id: str, state: str | None) -> bool: ...

    async def pending_webhooks(self, finished_before: float, limit: int = 100) -> list[Job]:
        """Finished jobs whose ``webhook_state`` is still ``pending`` (a webhook is owed),
        finished at or before ``finished_before``."""
        ...

    async def depth(self) -> QueueDepth:
        """Queued jobs (runnable or scheduled) per priority and in total."""
        ...

    async def oldest_age_s(self) -> float | None:
        """How long the longest-waiting runnable job has waited since its ``run_at``."""
        ...

    async def close(self) -> None: ...

    async def list(
        self,
        owner: str,
        status: JobStatus | str | None = None,
        limit: int = 20,
        after: str | None = None,
    ) -> list[Job]:
        """``owner``'s jobs, newest first; ``after`` is the last job id of the previous page."""
        ...
