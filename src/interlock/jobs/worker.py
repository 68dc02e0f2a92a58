"""The worker pool: lease jobs, run them, heartbeat, record the outcome, drain on stop.

The pool does not know what running a job means: it is handed ``run(job) -> Outcome``
(the API layer's glue that calls ``Gateway.handle``), so ``interlock.jobs`` never
imports the gateway. Guarantees and why:

* At-least-once. A job is leased for ``lease_s`` and the lease is extended every
  ``lease_s / 3`` while it runs; a worker that dies (even SIGKILL) stops heartbeating,
  and the next ``lease`` anywhere takes the job back. The queue lets only the first
  completion count, so a job that ran twice has one result (and a duplicate counted).
  Every run has a number of its own (``job.runs``, given at lease, never reused), which
  names its ledger row: each run that reached the provider is charged and recorded.
* A heartbeat that is refused means the job was cancelled (the run is cancelled, its
  late result discarded) or the lease was taken back (the run goes on: its result, if
  first, still counts).
* Retryable failures go back to the queue after an exponential backoff with jitter
  (at least the failure's Retry-After); the queue dead-letters a job at its
  ``max_attempts``. Non-retryable failures are dead letters at once.
* A job's deadline bounds its run: past it the run is cancelled and the job fails with
  ``deadline_exceeded``.
* ``stop()`` drains: no new leases, running jobs get ``drain_timeout_s`` to finish;
  the rest are released back to the queue (or, on their last attempt, left to lease
  expiry, which dead-letters them exactly as if the worker had died).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from interlock.jobs.queue.base import Clock, Job, JobQueue, JobStatus
from interlock.resilience.backoff import Backoff

log = logging.getLogger("interlock.jobs.worker")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running a job gave: a result, or an error and whether trying again may help."""

    result: dict[str, Any] | None = None
    cost_usd: str | Decimal | None = None
    status_code: int = 200
    error: dict[str, Any] | None = None
    retryable: bool = False
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def success(
        cls, result: dict[str, Any], cost_usd: str | Decimal | None = None, status_code: int = 200
    ) -> Outcome:
        return cls(result=result, cost_usd=cost_usd, status_code=status_code)

    @classmethod
    def failure(
        cls,
        error: dict[str, Any],
        *,
        retryable: bool,
        status_code: int = 500,
        retry_after_s: float | None = None,
    ) -> Outcome:
        return cls(
            error=error,
            retryable=retryable,
            status_code=status_code,
            retry_after_s=retry_after_s,
        )


Run = Callable[[Job], Awaitable[Outcome]]
OnFinished = Callable[[Job], Awaitable[None]]
OnStarted = Callable[[Job], None]


@dataclass(frozen=True, slots=True)
class PoolConfig:
    concurrency: int = 8
    lease_s: float = 30.0
    poll_interval_s: float = 0.5
    retry_base_delay_s: float = 2.0
    retry_max_delay_s: float = 300.0
    drain_timeout_s: float = 25.0


def new_worker_id() -> str:
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{secrets.token_hex(4)}"


def deadline_failure() -> Outcome:
    return Outcome.failure(
        {
            "message": "the job's deadline passed while it was running",
            "type": "timeout_error",
            "param": None,
            "code": "deadline_exceeded",
            "status": 504,
        },
        retryable=False,
        status_code=504,
    )


class WorkerPool:
    """Up to ``concurrency`` jobs at once from ``queue``, each run by ``run``."""

    def __init__(
        self,
        queue: JobQueue,
        run: Run,
        config: PoolConfig,
        *,
        worker_id: str | None = None,
        on_finished: OnFinished | None = None,
        on_started: OnStarted | None = None,
        rand: Callable[[], float] = random.random,
        clock: Clock = time.time,
    ) -> None:
        self.queue = queue
        self.config = config
        self.id = worker_id or new_worker_id()
        self._run = run
        self._on_finished = on_finished
        self._on_started = on_started
        self._rand = rand
        self._clock = clock
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._runs: dict[str, asyncio.Task[Outcome]] = {}
        self._released: set[str] = set()

    @property
    def running(self) -> int:
        return len(self._tasks)

    def start(self) -> None:
        self._loop_task = asyncio.get_running_loop().create_task(
            self._lease_loop(), name=f"job pool {self.id}"
        )

    async def stop(self) -> None:
        """Drain: stop leasing, let running jobs finish for ``drain_timeout_s``, release
        the rest."""
        self._stopping.set()
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
            self._loop_task = None
        if not self._tasks:
            return
        log.info("draining %d running job(s)", len(self._tasks))
        _done, pending = await asyncio.wait(set(self._tasks), timeout=self.config.drain_timeout_s)
        if pending:
            log.warning("%d job(s) still running after the drain timeout; releasing", len(pending))
            for job_id, task in list(self._runs.items()):
                self._released.add(job_id)
                task.cancel()
            await asyncio.wait(pending, timeout=10)

    # -- leasing ------------------------------------------------------------------------

    def wake(self) -> None:
        """Lease now (a job was just submitted in this process)."""
        self._wake.set()

    async def _lease_loop(self) -> None:
        cfg = self.config
        failures = 0
        idle = 0  # empty polls in a row: an idle queue is polled less and less often
        while not self._stopping.is_set():
            free = cfg.concurrency - len(self._tasks)
            got = 0
            if free > 0:
                try:
                    jobs = await self.queue.lease(self.id, free, cfg.lease_s)
                    failures = 0
                except Exception as exc:
                    failures += 1
                    log.warning("leasing jobs failed (%s); retrying", type(exc).__name__)
                    jobs = []
                    await self._pause(Backoff(cfg.poll_interval_s, 10.0).ceiling(failures))
                    continue
                got = len(jobs)
                for job in jobs:
                    self._spawn(job)
            if got and got == free:
                continue  # there may be more: lease again once a slot frees
            # Polling an empty queue costs the serving process a database round trip each
            # time; back off to 8x the interval (jobs submitted here wake the pool at once,
            # other replicas' jobs wait at most that long).
            idle = 0 if got or self._tasks else min(idle + 1, 3)
            await self._pause(Backoff(cfg.poll_interval_s, math.inf).ceiling(idle))

    async def _pause(self, seconds: float) -> None:
        """Sleep until ``seconds`` pass, a slot frees (when full), or the pool stops."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _spawn(self, job: Job) -> None:
        task = asyncio.get_running_loop().create_task(self._work(job), name=f"job {job.id}")
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._wake.set()

        task.add_done_callback(done)

    # -- one job ------------------------------------------------------------------------

    async def _work(self, job: Job) -> None:
        if self._on_started is not None:
            self._on_started(job)
        run = asyncio.get_running_loop().create_task(self._bounded(job))
        self._runs[job.id] = run
        beat = asyncio.get_running_loop().create_task(self._heartbeat(job, run))
        try:
            try:
                outcome = await run
            except asyncio.CancelledError:
                me = asyncio.current_task()
                if me is not None and me.cancelling():
                    raise  # this task itself is being cancelled (event loop shutdown)
                await self._after_cancel(job)
                return
            except Exception:
                log.exception("job %s: the run raised", job.id)
                outcome = Outcome.failure(
                    {"message": "internal error", "type": "server_error", "param": None,
                     "code": "internal_error", "status": 500},
                    retryable=True,
                )  # fmt: skip
            await self._record(job, outcome)
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            self._runs.pop(job.id, None)
            self._released.discard(job.id)

    async def _bounded(self, job: Job) -> Outcome:
        if job.deadline is None:
            return await self._run(job)
        remaining = job.deadline - self._clock()
        if remaining <= 0:
            return deadline_failure()
        try:
            async with asyncio.timeout(remaining):
                return await self._run(job)
        except TimeoutError:
            return deadline_failure()

    async def _heartbeat(self, job: Job, run: asyncio.Task[Outcome]) -> None:
        interval = self.config.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                held = await self.queue.heartbeat(job.id, self.id, self.config.lease_s)
            except Exception as exc:
                log.warning("job %s: heartbeat failed (%s)", job.id, type(exc).__name__)
                continue
            if held:
                continue
            try:
                current = await self.queue.get(job.id)
            except Exception as exc:
                log.warning("job %s: status check failed (%s)", job.id, type(exc).__name__)
                continue
            if current is None or current.status is JobStatus.CANCELLED:
                log.info("job %s was cancelled; stopping its run", job.id)
                run.cancel()
            # Otherwise the lease was taken back: run on, the first result wins.
            return

    async def _after_cancel(self, job: Job) -> None:
        """The run was cancelled: by its owner (nothing to record) or by the drain."""
        if job.id not in self._released:
            return
        if job.attempts >= job.max_attempts:
            return  # releasing would dead-letter it; lease expiry does the same, later
        error = {
            "message": "the worker shut down before the job finished",
            "type": "server_error",
            "param": None,
            "code": "worker_shutdown",
            "status": 503,
        }
        with contextlib.suppress(Exception):
            await self.queue.fail(job.id, self.id, error, retryable=True, backoff_s=0.0)

    def backoff(self, attempts: int, retry_after_s: float | None) -> float:
        """Exponential with equal jitter: half the ceiling plus a random half, so retries
        of many jobs spread out but none comes back at once; at least Retry-After."""
        cfg = self.config
        backoff = Backoff(cfg.retry_base_delay_s, cfg.retry_max_delay_s, jitter="equal")
        return backoff.delay(attempts - 1, self._rand, retry_after_s, cfg.retry_max_delay_s)

    async def _record(self, job: Job, outcome: Outcome) -> None:
        for attempt in range(5):
            try:
                if outcome.ok:
                    assert outcome.result is not None
                    first = await self.queue.complete(
                        job.id,
                        self.id,
                        outcome.result,
                        outcome.cost_usd,
                        outcome.status_code,
                        run=job.runs,
                    )
                    finished = first
                else:
                    assert outcome.error is not None
                    status = await self.queue.fail(
                        job.id,
                        self.id,
                        outcome.error,
                        outcome.retryable,
                        self.backoff(job.attempts, outcome.retry_after_s),
                    )
                    finished = status is JobStatus.FAILED
                break
            except Exception as exc:
                # The store is down: try a little longer, then leave the job to lease
                # expiry (it will run again: at-least-once).
                log.warning("job %s: recording the outcome failed (%s)", job.id, type(exc).__name__)
                await asyncio.sleep(Backoff(0.2, math.inf).ceiling(attempt))
        else:
            return
        if finished and self._on_finished is not None:
            try:
                final = await self.queue.get(job.id)
                if final is not None:
                    await self._on_finished(final)
            except Exception:
                log.exception("job %s: the finish hook failed", job.id)
