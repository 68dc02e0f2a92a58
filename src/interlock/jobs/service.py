"""The Jobs API's rules: what a submission may contain, who may see or cancel which job.

This module knows the queue and nothing of the gateway: the check of the inner request
body (the very validation the synchronous route uses, plus routing's model check) is a
callable the API layer passes in, so ``interlock.jobs`` stays below ``interlock.gateway``.

Choices (docs/jobs.md):

* ``deadline`` is an ISO-8601 time (a time without a zone is UTC), or a number: epoch
  seconds when it is at least ``EPOCH_THRESHOLD`` (2001-09-09), else seconds from now.
  A deadline in the past is a 400; a queued job still waiting at its deadline fails with
  ``deadline_exceeded``, a running one is cut off at it.
* Every lookup is by owner: another key's job is "not found", never "forbidden", so a
  job id reveals nothing about whether it exists.
* Streaming bodies are refused at submit (400 ``stream_not_supported``): a job's result
  is one JSON document.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from interlock.errors import InvalidRequest
from interlock.jobs.queue.base import (
    PRIORITIES,
    Clock,
    Job,
    JobNotFound,
    JobQueue,
    JobStatus,
    priority_value,
    run_request_id,
)
from interlock.settings import JobSettings
from interlock.webhooks import Allowlist, UnsafeWebhookURL, check_url

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages")
FIELDS = frozenset({"endpoint", "body", "callback_url", "priority", "deadline", "metadata"})
EPOCH_THRESHOLD = 1_000_000_000.0
# The furthest a deadline may be set ahead: a job is work for later, not for next year,
# and a bounded value is one every store, view and client can hold (1e300 was stored and
# then broke every listing that showed it).
MAX_DEADLINE_AHEAD_S = 366 * 86400.0
MAX_IDEMPOTENCY_KEY = 255
MAX_LIST = 100

# (endpoint, body) -> None; raises an InterlockError (400/403/404) for a bad request.
BodyCheck = Callable[[str, dict[str, Any]], None]


def _bad(message: str, param: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, code=code, param=param)


def parse_deadline(value: Any, now: float) -> float | None:
    """Epoch seconds from an ISO-8601 string, epoch seconds, or seconds from now."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _bad("'deadline' must be an ISO-8601 time or a number of seconds", "deadline")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds <= 0:
            raise _bad("'deadline' must be a positive number", "deadline")
        at = seconds if seconds >= EPOCH_THRESHOLD else now + seconds
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _bad(
                "'deadline' must be an ISO-8601 time such as 2030-01-01T12:00:00Z", "deadline"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            at = parsed.timestamp()
        except (OverflowError, ValueError):  # year 1 with a positive offset, and the like
            raise _bad("'deadline' is in the past", "deadline", "deadline_in_past") from None
    else:
        raise _bad("'deadline' must be an ISO-8601 time or a number of seconds", "deadline")
    if at <= now:
        raise _bad("'deadline' is in the past", "deadline", "deadline_in_past")
    if at > now + MAX_DEADLINE_AHEAD_S:
        raise _bad(
            f"'deadline' must be at most {MAX_DEADLINE_AHEAD_S / 86400:g} days ahead",
            "deadline",
            "deadline_too_far",
        )
    return at


def parse_priority(value: Any) -> int:
    if value is None:
        return PRIORITIES["normal"]
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return priority_value(value)
        except ValueError as exc:
            raise _bad(str(exc), "priority") from None
    raise _bad("'priority' must be 'high', 'normal', 'low' or an integer", "priority")


def _metadata(value: Any, limit: int) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad("'metadata' must be an object", "metadata")
    if len(orjson.dumps(value)) > limit:
        raise _bad(f"'metadata' must be at most {limit} bytes of JSON", "metadata")
    return value


class JobService:
    """Submit, read, list and cancel jobs of one owner; dead letters for operators."""

    def __init__(
        self,
        queue: JobQueue,
        settings: JobSettings,
        *,
        allow: Allowlist | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.queue = queue
        self.settings = settings
        self.allow = allow or Allowlist.parse(settings.webhooks.allow_hosts)
        self._clock = clock

    def build(
        self,
        owner: str,
        team: str | None,
        data: dict[str, Any],
        check_body: BodyCheck,
        idempotency_key: str | None = None,
    ) -> Job:
        """A new job from a submission, every field checked (400 for the first bad one)."""
        for name in data:
            if name not in FIELDS:
                raise _bad(f"unknown field '{name[:64]}'", name[:64], "unknown_field")
        endpoint = data.get("endpoint")
        if endpoint not in ENDPOINTS:
            raise _bad(f"'endpoint' must be one of {list(ENDPOINTS)}", "endpoint")
        body = data.get("body")
        if not isinstance(body, dict):
            raise _bad("'body' must be the request object for the endpoint", "body")
        check_body(endpoint, body)
        callback = data.get("callback_url")
        if callback is not None:
            if not isinstance(callback, str):
                raise _bad("'callback_url' must be a string", "callback_url")
            try:
                check_url(callback, self.allow)
            except UnsafeWebhookURL as exc:
                raise _bad(
                    f"'callback_url' is not allowed: {exc}", "callback_url", "invalid_callback_url"
                ) from None
        if idempotency_key is not None and (
            not idempotency_key or len(idempotency_key) > MAX_IDEMPOTENCY_KEY
        ):
            raise _bad(
                f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters", "Idempotency-Key"
            )
        return Job(
            owner=owner,
            team=team,
            endpoint=endpoint,
            body=body,
            callback_url=callback,
            priority=parse_priority(data.get("priority")),
            deadline=parse_deadline(data.get("deadline"), self._clock()),
            metadata=_metadata(data.get("metadata"), self.settings.max_metadata_bytes),
            idempotency_key=idempotency_key,
            max_attempts=self.settings.max_attempts,
            # A webhook is owed from the start, so a crash between finishing the job and
            # delivering it cannot lose the delivery: the sweep finds it still pending.
            webhook_state="pending" if callback is not None else None,
        )

    async def submit(
        self,
        owner: str,
        team: str | None,
        data: dict[str, Any],
        check_body: BodyCheck,
        idempotency_key: str | None = None,
    ) -> tuple[Job, bool]:
        """Store the job durably (committed before this returns); ``(job, created)``."""
        return await self.queue.enqueue(self.build(owner, team, data, check_body, idempotency_key))

    async def get(self, owner: str, job_id: str) -> Job:
        job = await self.queue.get(job_id)
        if job is None or job.owner != owner:
            raise JobNotFound(f"no job with id '{job_id[:64]}'", param="job_id")
        return job

    async def list(
        self, owner: str, status: str | None, limit: str | None, after: str | None
    ) -> tuple[list[Job], bool]:
        """One page of the owner's jobs, newest first, and whether more follow."""
        wanted: JobStatus | None = None
        if status:
            try:
                wanted = JobStatus(status)
            except ValueError:
                raise _bad(
                    f"'status' must be one of {[s.value for s in JobStatus]}", "status"
                ) from None
        n = 20
        if limit:
            try:
                n = int(limit)
            except ValueError:
                n = 0
            if not 1 <= n <= MAX_LIST:
                raise _bad(f"'limit' must be an integer between 1 and {MAX_LIST}", "limit")
        jobs = await self.queue.list(owner, wanted, n + 1, after or None)
        return jobs[:n], len(jobs) > n

    async def cancel(self, owner: str, job_id: str) -> tuple[Job, bool]:
        """Cancel the owner's job if unfinished; ``(job, cancelled by this call)``."""
        before = await self.get(owner, job_id)
        if before.status.finished:
            return before, False
        after = await self.queue.cancel(job_id, owner)
        if after is None:  # pragma: no cover - it existed a moment ago; jobs are not deleted
            raise JobNotFound(f"no job with id '{job_id[:64]}'", param="job_id")
        return after, after.status is JobStatus.CANCELLED

    async def requeue(self, job_id: str) -> Job:
        if not await self.queue.requeue(job_id):
            job = await self.queue.get(job_id)
            if job is None:
                raise JobNotFound(f"no job with id '{job_id[:64]}'", param="job_id")
            raise _bad("only a dead-lettered job can be requeued", "job_id", "not_dead_letter")
        job = await self.queue.get(job_id)
        assert job is not None
        return job


# -- what clients see ------------------------------------------------------------------


def _ts(value: float | None) -> int | None:
    """Unix seconds for a view. A stored value no client could hold (not finite, beyond
    what JSON integers carry; written before the bounds existed) shows as null rather
    than breaking the listing it is in."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if abs(value) < 2**53 else None


def error_object(error: dict[str, Any] | None) -> dict[str, Any] | None:
    """An OpenAI error object, also for errors the queue itself recorded (deadline, lease)."""
    if error is None:
        return None
    code = error.get("code")
    default_type = "timeout_error" if code == "deadline_exceeded" else "server_error"
    return {
        "message": error.get("message", ""),
        "type": error.get("type", default_type),
        "param": error.get("param"),
        "code": code,
    }


def job_view(job: Job, *, with_owner: bool = False) -> dict[str, Any]:
    """The job as the API shows it to its owner (no secrets: the owner is a key *id*)."""
    view: dict[str, Any] = {
        "id": job.id,
        "object": "job",
        "status": job.status.value,
        "status_url": f"/v1/jobs/{job.id}",
        "endpoint": job.endpoint,
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        # Upstream runs so far (a requeue resets attempts, not runs); each is charged and
        # has its own ledger row, <job id>-<run>. request_id names the run whose result
        # or error is shown (the first result wins: not always the latest run).
        "runs": job.runs,
        "request_id": (
            run_request_id(job.id, job.result_run) if job.result_run is not None else None
        ),
        "created_at": _ts(job.created_at),
        "started_at": _ts(job.started_at),
        "finished_at": _ts(job.finished_at),
        "deadline": _ts(job.deadline),
        "metadata": job.metadata,
        "callback_url": job.callback_url,
        "webhook_state": job.webhook_state,
        "status_code": job.status_code,
        "result": job.result if job.status is JobStatus.SUCCEEDED else None,
        "error": error_object(job.error) if job.status is not JobStatus.SUCCEEDED else None,
        "cost_usd": str(job.cost_usd) if job.cost_usd is not None else None,
    }
    if job.status is JobStatus.QUEUED and job.error is not None:
        view["last_error"] = error_object(job.error)  # waiting to be retried
    if with_owner:
        view["owner"] = job.owner
        view["team"] = job.team
        view["dead"] = job.dead
    return view


def webhook_data(job: Job) -> dict[str, Any]:
    """The webhook payload's ``data``: the job view without the callback URL (webhook
    URLs often carry tokens) and without the webhook's own bookkeeping."""
    data = job_view(job)
    data.pop("callback_url", None)
    data.pop("webhook_state", None)
    return data
