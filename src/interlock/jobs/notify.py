"""Job webhooks: tell a job's ``callback_url`` that it finished, at least once.

A job submitted with a ``callback_url`` is stored with ``webhook_state = "pending"``:
the webhook is owed from the moment the job exists, so no crash between finishing the
job and delivering can lose it. Then:

* The process that finishes a job (a worker; the API process for a cancellation)
  delivers ``job.succeeded`` / ``job.failed`` / ``job.cancelled`` in a task of its own,
  so the delivery's retry schedule (up to ``jobs.webhooks.max_total_s``) never holds a
  worker slot. The outcome is recorded with ``set_webhook_state``: ``delivered``,
  ``failed`` (retries exhausted, or the URL proved unsafe at delivery) or ``disabled``.
* The webhook id is ``<job id>-<status>``: the same on every retry and every
  re-delivery, so receivers deduplicate on ``webhook-id``.
* Sweeps re-deliver what is still pending: at start, every finished job whose webhook is
  pending (its deliverer died); periodically, jobs that never ran (a deadline expired in
  the queue) and jobs whose webhook stayed pending longer than any live delivery lasts.
  A receiver may therefore see a delivery twice (same ``webhook-id``), never zero times.
* URLs that answered ``410 Gone`` are disabled: remembered in ``<state_dir>/
  webhooks_disabled`` (one per line) and never called again by this installation's
  processes that share the state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from interlock.jobs.queue.base import Clock, Job, JobQueue
from interlock.jobs.service import webhook_data
from interlock.settings import JobWebhookSettings
from interlock.storage.files import private_dir
from interlock.webhooks import DeliveryResult, WebhookSender, generate_secret

log = logging.getLogger("interlock.jobs.notify")

SECRET_FILE = "webhook_secret"  # noqa: S105 - a file name, not a secret
DISABLED_FILE = "webhooks_disabled"


def load_or_create_webhook_secret(configured: str | None, state_dir: str) -> tuple[str, bool]:
    """The signing secret: configured, else generated once under ``state_dir`` (0600).

    Returns ``(secret, generated_now)``. ``O_EXCL`` makes concurrent first starts agree.
    """
    if configured:
        return configured, False
    path = Path(state_dir) / SECRET_FILE
    if path.exists():
        return path.read_text().strip(), False
    private_dir(path.parent)
    value = generate_secret()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip(), False
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value, True


def webhook_id(job: Job) -> str:
    return f"{job.id}-{job.status.value}"


class JobNotifier:
    """Delivers job webhooks in background tasks and records each outcome in the queue."""

    def __init__(
        self,
        queue: JobQueue,
        settings: JobWebhookSettings,
        secret: str,
        state_dir: str,
        *,
        on_outcome: Callable[[str], None] | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.queue = queue
        self.settings = settings
        self._disabled_path = Path(state_dir) / DISABLED_FILE
        self._on_outcome = on_outcome
        self._clock = clock
        self.sender = WebhookSender(
            secret=secret,
            timeout_s=settings.timeout_s,
            max_attempts=settings.max_attempts,
            base_delay_s=settings.base_delay_s,
            max_delay_s=settings.max_delay_s,
            max_total_s=settings.max_total_s,
            allow=settings.allow_hosts,
            disabled_urls=self._load_disabled(),
            on_disabled=self._remember_disabled,
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def _load_disabled(self) -> list[str]:
        try:
            return [u for u in self._disabled_path.read_text().splitlines() if u.strip()]
        except OSError:
            return []

    async def _remember_disabled(self, url: str) -> None:
        private_dir(self._disabled_path.parent)
        fd = os.open(self._disabled_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(url.replace("\n", "") + "\n")

    def finished(self, job: Job) -> None:
        """Deliver ``job``'s webhook in the background, if it owes one."""
        if job.callback_url is None or job.webhook_state != "pending" or not job.status.finished:
            return
        if job.id in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(job), name=f"webhook {job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job.id, None))

    async def _deliver(self, job: Job) -> None:
        assert job.callback_url is not None
        try:
            result = await self.sender.deliver(
                job.callback_url,
                f"job.{job.status.value}",
                webhook_data(job),
                webhook_id=webhook_id(job),
            )
        except Exception:
            log.exception("webhook for job %s could not be sent", job.id)
            return  # stays pending: the next sweep tries again
        state, outcome = _state_of(result)
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        try:
            await self.queue.set_webhook_state(job.id, state)
        except Exception as exc:
            log.warning("job %s: webhook state not recorded (%s)", job.id, type(exc).__name__)

    async def sweep(self, *, startup: bool = False, limit: int = 500) -> int:
        """Re-deliver owed webhooks; how many deliveries were started.

        At start every finished, still-pending job is taken (its deliverer is gone, or
        still busy elsewhere: receivers deduplicate). Later sweeps take only jobs nobody
        is delivering: never run (expired while queued) or pending for longer than a
        delivery can last.
        """
        now = self._clock()
        s = self.settings
        abandoned = now - (s.max_total_s + s.timeout_s + 60.0)
        jobs = await self.queue.pending_webhooks(now if startup else now - 5.0, limit)
        started = 0
        for job in jobs:
            if job.id in self._tasks:
                continue
            finished_at = job.finished_at or 0.0
            if startup or job.attempts == 0 or finished_at < abandoned:
                self.finished(job)
                started += 1
        return started

    async def close(self, timeout_s: float = 5.0) -> None:
        """Give in-flight deliveries a moment, then stop them (still pending: the next
        start's sweep re-delivers them)."""
        tasks = list(self._tasks.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.sender.close()


def _state_of(result: DeliveryResult) -> tuple[str, str]:
    """(webhook_state to store, metrics outcome)."""
    if result.delivered:
        return "delivered", "delivered"
    if result.disabled:
        return "disabled", "disabled"
    if result.attempts == 0:
        return "failed", "refused"
    return "failed", "failed"
