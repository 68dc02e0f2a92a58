"""The batch driver: moves batches through their states by feeding lines to the job queue.

Every line of a batch becomes one job of the batch's owner (so budgets, rate limits,
routing, cache and the ledger apply to it exactly as to the key's own jobs), enqueued
at ``jobs.batch.priority`` — below ``low`` — so interactive jobs go first. Why through
the queue rather than a separate runner: the queue already gives durability, leases,
retries with backoff, dead letters and backpressure; a batch only adds bookkeeping.

    validating ──▶ in_progress ──▶ finalizing ──▶ completed
        │               │  └─────(24 h)────────▶ expired
        └──▶ failed     └──(cancel)─▶ cancelling ─▶ cancelled

* **One driver per batch at a time.** Every process with a worker pool runs a driver;
  a driver *claims* a batch for ``lease_s`` (a conditional UPDATE, like a job lease)
  before each step, so replicas share the work without stepping on each other, and a
  dead driver's batches are picked up when its claim runs out.
* **Idempotent per (batch, custom_id).** A line's job carries the idempotency key
  ``batch:<batch id>:<sha256(custom_id)>``; a driver that dies after enqueueing but
  before recording the job id enqueues again and gets the same job back.
* **Bounded.** At most ``max_in_flight`` jobs of one batch wait in the queue at once;
  the rest stay ``pending`` in ``batch_items``. A full queue (``queue_full``) is not an
  error: the driver tries again on its next tick.
* Output and error file ids are derived from the batch id, so a finalizer that runs
  twice (after a crash) writes each file once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
import time
from typing import Any

from interlock.jobs.batch import lines
from interlock.jobs.batch.store import (
    DONE_FAILED,
    DONE_OK,
    PENDING,
    QUEUED,
    Batch,
    BatchStore,
    FileRecord,
    Item,
)
from interlock.jobs.batch.views import output_line
from interlock.jobs.queue.base import Clock, Job, JobQueue, JobStatus, QueueFull, run_request_id
from interlock.jobs.service import error_object
from interlock.settings import JobBatchSettings

log = logging.getLogger("interlock.jobs.batch")

PAGE = 1000
MAX_ERRORS = lines.MAX_REPORTED


def idempotency_key(batch_id: str, custom_id: str) -> str:
    return f"batch:{batch_id}:{hashlib.sha256(custom_id.encode()).hexdigest()[:40]}"


def derived_file_id(batch_id: str, kind: str) -> str:
    return "file-" + hashlib.sha256(f"{batch_id}:{kind}".encode()).hexdigest()[:24]


def _request_id(job: Job) -> str:
    """The ledger request id of the run whose outcome the job shows (the first result
    wins, so not necessarily the latest run)."""
    return run_request_id(job.id, job.result_run if job.result_run is not None else job.runs)


def _job_line(batch_id: str, item: Item, job: Job) -> tuple[int, bool, str] | None:
    """The output line of a finished job; None while it still runs."""
    if not job.status.finished:
        return None
    if job.status is JobStatus.SUCCEEDED:
        out = output_line(
            batch_id,
            item.line,
            item.custom_id,
            status_code=job.status_code or 200,
            request_id=_request_id(job),
            body=job.result,
        )
        return item.line, True, out
    if job.status is JobStatus.CANCELLED:
        error = {"code": "request_cancelled", "message": f"the line's job {job.id} was cancelled"}
        return item.line, False, output_line(batch_id, item.line, item.custom_id, error=error)
    err = job.error or {}
    status = err.get("status")
    out = output_line(
        batch_id,
        item.line,
        item.custom_id,
        status_code=int(status) if isinstance(status, int) else 500,
        request_id=_request_id(job),
        body={"error": error_object(err)},
    )
    return item.line, False, out


class BatchDriver:
    """Advances every active batch one step per :meth:`tick`."""

    def __init__(
        self,
        store: BatchStore,
        queue: JobQueue,
        settings: JobBatchSettings,
        *,
        max_attempts: int,
        lease_s: float = 60.0,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.queue = queue
        self.settings = settings
        self.max_attempts = max_attempts
        self.lease_s = lease_s
        self._clock = clock
        self.id = f"{socket.gethostname()[:100]}:{os.getpid()}:{secrets.token_hex(4)}"

    async def tick(self) -> int:
        """One step for each active batch this driver can claim; how many it stepped."""
        stepped = 0
        for batch_id in await self.store.active_batches():
            if not await self.store.claim(batch_id, self.id, self._clock(), self.lease_s):
                continue
            batch = await self.store.get_batch(batch_id)
            if batch is None:  # pragma: no cover - batches are not deleted
                continue
            try:
                await self.step(batch)
            except Exception as exc:  # the next tick tries again; never kill the loop
                log.warning("batch %s: step failed (%s)", batch_id, type(exc).__name__)
            stepped += 1
        return stepped

    async def step(self, b: Batch) -> None:
        now = self._clock()
        if b.status == "validating":
            if now >= b.expires_at:
                await self.store.set_status(b.id, "expired", now, expect=("validating",))
            else:
                await self._validate(b)
        elif b.status == "in_progress":
            await self._collect(b)
            if now >= b.expires_at:
                await self._stop(b, "expired", ("in_progress",))
            elif await self._all_done(b):
                if await self.store.set_status(b.id, "finalizing", now, expect=("in_progress",)):
                    await self._finalize(b, "completed", ("finalizing",))
            else:
                await self._fill(b)
        elif b.status == "cancelling":
            await self._stop(b, "cancelled", ("cancelling",))
        elif b.status == "finalizing":
            await self._finalize(b, "completed", ("finalizing",))

    # -- validating ----------------------------------------------------------------

    async def _fail(self, b: Batch, errors: list[dict[str, Any]]) -> None:
        await self.store.set_status(
            b.id, "failed", self._clock(), expect=("validating",), errors=errors
        )

    async def _validate(self, b: Batch) -> None:
        content = await self.store.file_content(b.input_file_id)
        if content is None:
            await self._fail(
                b,
                [
                    {
                        "code": "file_not_found",
                        "message": "the input file was deleted before the batch started",
                        "param": "input_file_id",
                        "line": None,
                    }
                ],
            )
            return
        try:
            parsed = lines.parse(content, max_lines=self.settings.max_lines)
        except lines.InvalidBatchFile as bad:
            await self._fail(b, [e.view() for e in bad.lines])
            return
        except Exception as exc:  # too many lines, empty: checked at upload already
            await self._fail(
                b,
                [
                    {
                        "code": "invalid_file",
                        "message": str(exc),
                        "param": "input_file_id",
                        "line": None,
                    }
                ],
            )
            return
        wrong = [
            {
                "code": "mismatched_url",
                "message": f"the line's url {line.url} is not the batch's endpoint {b.endpoint}",
                "param": "url",
                "line": line.number,
            }
            for line in parsed
            if line.url != b.endpoint
        ]
        if wrong:
            await self._fail(b, wrong[:MAX_ERRORS])
            return
        await self.store.start(
            b.id, ((line.number, line.custom_id, line.body) for line in parsed), self._clock()
        )

    # -- in progress ---------------------------------------------------------------

    async def _collect(self, b: Batch) -> None:
        """Record the lines whose jobs have finished."""
        done: list[tuple[int, bool, str]] = []
        for item in await self.store.items(b.id, QUEUED, self.settings.max_in_flight):
            job = await self.queue.get(item.job_id or "")
            if job is None:
                error = {"code": "job_missing", "message": "the line's job is no longer stored"}
                done.append(
                    (item.line, False, output_line(b.id, item.line, item.custom_id, error=error))
                )
                continue
            line = _job_line(b.id, item, job)
            if line is not None:
                done.append(line)
        if done:
            await self.store.finish_items(b.id, done)

    async def _all_done(self, b: Batch) -> bool:
        return (
            await self.store.count(b.id, PENDING) == 0 and await self.store.count(b.id, QUEUED) == 0
        )

    async def _fill(self, b: Batch) -> None:
        """Enqueue pending lines until ``max_in_flight`` of the batch wait in the queue."""
        room = self.settings.max_in_flight - await self.store.count(b.id, QUEUED)
        if room <= 0:
            return
        for item in await self.store.items(b.id, PENDING, room):
            job = Job(
                owner=b.owner,
                team=b.team,
                endpoint=b.endpoint,
                body=item.body,
                priority=self.settings.priority,
                metadata={"batch_id": b.id, "custom_id": item.custom_id},
                idempotency_key=idempotency_key(b.id, item.custom_id),
                max_attempts=self.max_attempts,
            )
            try:
                stored, _created = await self.queue.enqueue(job)
            except QueueFull:
                return  # backpressure: the lines wait in batch_items; next tick
            await self.store.mark_queued(b.id, item.line, stored.id)

    # -- stopping and finishing ----------------------------------------------------

    async def _stop(self, b: Batch, final: str, expect: tuple[str, ...]) -> None:
        """Cancel what has not run (``cancelled`` / ``expired``), keep what has, and write
        the files. Lines that never ran get ``error.code`` batch_cancelled / batch_expired."""
        code = "batch_cancelled" if final == "cancelled" else "batch_expired"
        never_ran = {"code": code, "message": f"the batch was {final} before this request ran"}
        while True:
            queued = await self.store.items(b.id, QUEUED, PAGE)
            if not queued:
                break
            done: list[tuple[int, bool, str]] = []
            for item in queued:
                job = await self.queue.get(item.job_id or "")
                if job is not None and not job.status.finished:
                    job = await self.queue.cancel(job.id, b.owner) or job
                line = _job_line(b.id, item, job) if job is not None else None
                if line is None or (job is not None and job.status is JobStatus.CANCELLED):
                    line = (
                        item.line,
                        False,
                        output_line(b.id, item.line, item.custom_id, error=never_ran),
                    )
                done.append(line)
            await self.store.finish_items(b.id, done)
        while True:
            pending = await self.store.items(b.id, PENDING, PAGE)
            if not pending:
                break
            await self.store.finish_items(
                b.id,
                [
                    (i.line, False, output_line(b.id, i.line, i.custom_id, error=never_ran))
                    for i in pending
                ],
            )
        await self._finalize(b, final, expect)

    async def _finalize(self, b: Batch, final: str, expect: tuple[str, ...]) -> None:
        files: dict[str, str | None] = {"output_file_id": None, "error_file_id": None}
        for state, kind, column in (
            (DONE_OK, "output", "output_file_id"),
            (DONE_FAILED, "error", "error_file_id"),
        ):
            out = await self.store.outputs(b.id, state)
            if not out:
                continue
            content = ("\n".join(out) + "\n").encode()
            rec = FileRecord(
                id=derived_file_id(b.id, kind),
                owner=b.owner,
                purpose="batch_output",
                filename=f"{b.id}_{kind}.jsonl",
                bytes=len(content),
                lines=len(out),
                created_at=self._clock(),
            )
            await self.store.add_file(rec, content)
            files[column] = rec.id
        await self.store.set_status(b.id, final, self._clock(), expect=expect, **files)
