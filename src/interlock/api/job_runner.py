"""The glue between the job queue and the one request path: a job runs through
``Gateway.handle`` exactly like the synchronous request it describes.

It lives at the API layer because it needs both the gateway and the API's request
validation; ``interlock.jobs`` (queue, service, worker pool, webhooks) stays below the
gateway and receives :func:`run_job` as a callable.

* The principal is the submitting key, looked up again when the job runs (no secret is
  stored with a job, only the key id): a key revoked in the meantime fails the job with
  401 ``invalid_api_key``. Budgets, rate limits, routing, caching and the ledger then
  apply as for any request of that key.
* The ledger's request id is ``<job id>-<run>`` (``job_…-2``), the run's number given
  by the queue at lease and never reused (a requeue resets the attempts, not the runs),
  so every run has its own row: retries, re-runs after a worker died, two runners of one
  job after a lease was taken back, and runs of a requeued dead letter.
* Retryable: upstream 5xx, 429 and timeouts, 503 (``circuit_open``, ``degraded``, …),
  a key's own rate limit (429 ``rate_limited``, after its Retry-After) and unexpected
  errors. Not retryable: 4xx such as 400/401/403/404/413, and ``budget_exceeded`` (a
  hard budget frees up when its window ends, days away, not within a retry schedule: the
  job is dead-lettered, to be requeued once the budget allows).
* A run the pool stops waiting for (the job was cancelled, its deadline passed) is not
  cut off at the provider, which bills it anyway: it finishes in the background and is
  recorded with its real cost; only its result is discarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from interlock.api import validate
from interlock.api.messages_format import messages_to_openai, openai_to_message
from interlock.auth.service import principal_of
from interlock.errors import AuthenticationFailed, InterlockError, InvalidRequest, error_payload
from interlock.gateway import Gateway
from interlock.jobs.batch.driver import BatchDriver
from interlock.jobs.batch.service import BatchService
from interlock.jobs.batch.store import BatchStore
from interlock.jobs.notify import JobNotifier, load_or_create_webhook_secret
from interlock.jobs.queue import JobQueue, QueueLimits, RedisJobQueue, SqlJobQueue
from interlock.jobs.queue.base import Job, JobStatus, run_request_id
from interlock.jobs.service import BodyCheck, JobService
from interlock.jobs.worker import Outcome, PoolConfig, WorkerPool
from interlock.routing.loop import Periodic
from interlock.settings import ServerSettings, Settings
from interlock.spend.cost import format_usd
from interlock.state.redis_connect import connect
from interlock.types import GatewayRequest, GatewayResponse, Principal

log = logging.getLogger("interlock.jobs")

_VALIDATORS = {
    "/v1/chat/completions": validate.chat_request,
    "/v1/completions": validate.completion_request,
    "/v1/embeddings": validate.embeddings_request,
}
# deadline_exceeded: the job's own deadline ran out; another attempt has no time left.
_NOT_RETRYABLE_CODES = frozenset({"budget_exceeded", "deadline_exceeded"})
MASTER_KEY_ID = "master"


def build_queue(settings: Settings, gw: Gateway) -> JobQueue:
    """``jobs.backend``: auto/sql = the storage database; redis = ``state.redis_url``."""
    jobs = settings.jobs
    limits = QueueLimits(
        max_depth_per_priority=jobs.max_depth_per_priority,
        max_depth_per_tenant=jobs.max_depth_per_tenant,
        retry_after_s=jobs.queue_full_retry_after_s,
    )
    if jobs.backend == "redis":
        client = connect(
            settings.state.redis_url, timeout_s=jobs.redis_timeout_s, decode_responses=False
        )
        if not isinstance(client, Redis):
            # The queue's scripts touch several keys at once, which a cluster refuses.
            raise ValueError(
                "jobs.backend redis needs one Redis server (or Sentinel), not a Redis Cluster;"
                " use jobs.backend sql"
            )
        return RedisJobQueue(client, settings.state.key_prefix + "jobs:", limits=limits)
    return SqlJobQueue(gw.engine, limits=limits)


# -- requests from jobs ----------------------------------------------------------------


def _pop_tags(body: dict[str, Any]) -> tuple[str, ...]:
    """``metadata.tags`` (checked at submit) become request tags, not upstream fields."""
    meta = body.get("metadata")
    if not isinstance(meta, dict) or "tags" not in meta:
        return ()
    rest = {k: v for k, v in meta.items() if k != "tags"}
    if rest:
        body["metadata"] = rest
    else:
        del body["metadata"]
    tags = meta["tags"]
    return tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()


def build_request(cfg: ServerSettings, endpoint: str, body: dict[str, Any]) -> GatewayRequest:
    """The GatewayRequest a synchronous call of ``endpoint`` with ``body`` would make,
    validated by the same functions; ``body`` itself is not changed."""
    copy: dict[str, Any] = orjson.loads(orjson.dumps(body))
    tags = _pop_tags(copy)
    if endpoint == "/v1/messages":
        req = validate.chat_request(messages_to_openai(copy), b"", cfg)
    else:
        check = _VALIDATORS.get(endpoint)
        if check is None:
            raise InvalidRequest(f"unsupported endpoint {endpoint!r}", param="endpoint")
        req = check(copy, orjson.dumps(copy), cfg)
    if req.stream:
        raise InvalidRequest(
            "streaming is not available for jobs: a job's result is one JSON document; "
            "leave 'stream' out",
            code="stream_not_supported",
            param="body.stream",
        )
    req.tags = tags
    return req


def body_check(gw: Gateway, principal: Principal) -> BodyCheck:
    """Submit-time check: the sync route's validation and the key's access to the model."""

    def check(endpoint: str, body: dict[str, Any]) -> None:
        try:
            req = build_request(gw.settings.server, endpoint, body)
        except InvalidRequest as err:
            if err.param and not err.param.startswith("body"):
                err.param = "body." + err.param
            raise
        gw.route_for(req, principal)

    return check


class Principals:
    """Job owners' principals from the key store, cached like the sync path caches keys
    (``auth.cache_ttl_s`` bounds how long a revoked key's queued jobs still run)."""

    def __init__(self, gw: Gateway) -> None:
        self._gw = gw
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._generation = gw.keys.generation

    async def get(self, key_id: str) -> Principal:
        now = time.monotonic()
        if self._generation != self._gw.keys.generation:
            # A key was changed or revoked in this process: re-read every owner.
            self._cache.clear()
            self._generation = self._gw.keys.generation
        hit = self._cache.get(key_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        principal = await self._load(key_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_id] = (principal, now + self._gw.settings.auth.cache_ttl_s)
        return principal

    async def _load(self, key_id: str) -> Principal:
        gone = AuthenticationFailed(
            "the API key that submitted this job is no longer valid (revoked or deleted)"
        )
        if key_id == MASTER_KEY_ID:
            if self._gw.settings.auth.master_key is None:
                raise gone
            return Principal(key_id=MASTER_KEY_ID, is_admin=True)
        rec = await self._gw.keys.get(key_id)
        if rec is None or rec.revoked_at is not None:
            raise gone
        return principal_of(rec)


def is_retryable(err: InterlockError) -> bool:
    if err.code in _NOT_RETRYABLE_CODES:
        return False
    return err.retryable or err.status in (408, 429, 500, 502, 503, 504)


def failure(err: InterlockError) -> Outcome:
    error = {**error_payload(err)["error"], "status": err.status}
    return Outcome.failure(
        error, retryable=is_retryable(err), status_code=err.status, retry_after_s=err.retry_after
    )


async def run_job(gw: Gateway, principals: Principals, job: Job) -> Outcome:
    """Run one attempt of ``job`` through ``Gateway.handle`` as its owner."""
    try:
        principal = await principals.get(job.owner)
        req = build_request(gw.settings.server, job.endpoint, job.body)
        req.request_id = run_request_id(job.id, job.runs)
        if job.deadline is not None:
            req.timeout_s = max(0.001, job.deadline - time.time())
        result = await gw.handle(req, principal)
        if not isinstance(result, GatewayResponse):  # pragma: no cover - streams refused
            await result.chunks.aclose()
            raise InvalidRequest("streaming is not available for jobs")
        body = orjson.loads(result.body)
        if job.endpoint == "/v1/messages":
            body = openai_to_message(body, req.model)
        cost = format_usd(result.cost_usd) if result.cost_usd is not None else None
        return Outcome.success(body, cost, result.status)
    except InterlockError as err:
        return failure(err)


# -- the per-process runtime -----------------------------------------------------------


class JobRuntime:
    """Everything jobs need in one process: queue, service, webhooks, and (in workers and,
    by default, in ``serve``) a worker pool plus the queue-metrics and sweep loops."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        settings = gw.settings
        self.settings = settings.jobs
        self.queue = build_queue(settings, gw)
        self.service = JobService(self.queue, self.settings)
        hooks = self.settings.webhooks
        configured = hooks.secret.get_secret_value() if hooks.secret is not None else None
        self.webhook_secret, self.secret_generated = load_or_create_webhook_secret(
            configured, settings.state_dir
        )
        self.notifier = JobNotifier(
            self.queue,
            hooks,
            self.webhook_secret,
            settings.state_dir,
            on_outcome=gw.metrics.webhook_delivery,
        )
        self.principals = Principals(gw)
        # The Batch API keeps files and batches in the storage database whatever the
        # queue backend; its driver runs wherever a worker pool runs.
        batch_store = BatchStore(gw.engine)
        self.batches = BatchService(batch_store, self.settings.batch)
        self.batch_driver = BatchDriver(
            batch_store, self.queue, self.settings.batch, max_attempts=self.settings.max_attempts
        )
        self.depth_total = 0
        self.pool: WorkerPool | None = None
        self._loops: list[Periodic] = []
        self._swept = False
        # Runs the pool stopped waiting for (the job was cancelled, its deadline passed)
        # whose upstream call goes on until it is recorded (see _run).
        self._abandoned: set[asyncio.Task[Outcome]] = set()

    async def start(self, *, run_pool: bool, concurrency: int | None = None) -> None:
        s = self.settings
        self.gw.ladder.queue_depth = lambda: float(self.depth_total)
        self._loop(Periodic("job queue metrics", self._metrics, s.metrics_interval_s))
        if not run_pool:
            return
        config = PoolConfig(
            concurrency=concurrency or s.concurrency,
            lease_s=s.lease_s,
            poll_interval_s=s.poll_interval_s,
            retry_base_delay_s=s.retry_base_delay_s,
            retry_max_delay_s=s.retry_max_delay_s,
            drain_timeout_s=s.drain_timeout_s,
        )
        self.pool = WorkerPool(
            self.queue,
            self._run,
            config,
            on_finished=self._finished,
            on_started=self._started,
        )
        self.pool.start()
        self._loop(Periodic("webhook sweep", self._sweep, 30.0))
        self._loop(Periodic("batch driver", self.batch_driver.tick, s.batch.poll_interval_s))

    def _loop(self, periodic: Periodic) -> None:
        periodic.start()
        self._loops.append(periodic)

    async def _run(self, job: Job) -> Outcome:
        """One run, shielded from the pool's cancellation: when the pool stops waiting
        (the owner cancelled the job, its deadline passed) the call at the provider goes
        on — the provider bills it either way — and the gateway records it with what was
        generated, instead of leaving its intent open until this process exits (then a
        worst-case ``replica_lost`` row). Its result is discarded."""
        call = asyncio.get_running_loop().create_task(run_job(self.gw, self.principals, job))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            if not call.done():
                self._abandoned.add(call)
                call.add_done_callback(_abandoned_done(self._abandoned))
            raise

    def _started(self, job: Job) -> None:
        started = job.started_at if job.started_at is not None else time.time()
        self.gw.metrics.job_started(started - job.run_at)

    async def _finished(self, job: Job) -> None:
        self.gw.metrics.job_finished(job.status.value)
        self.notifier.finished(job)

    def cancelled(self, job: Job) -> None:
        """A job the API cancelled: count it and notify its webhook."""
        self.gw.metrics.job_finished(JobStatus.CANCELLED.value)
        self.notifier.finished(job)

    async def _metrics(self) -> None:
        depth = await self.queue.depth()
        oldest = await self.queue.oldest_age_s()
        self.gw.metrics.set_job_queue(depth["by_priority"], oldest)
        # The degradation ladder's queue_depth signal reads the same poll (queued jobs of
        # every priority, from the shared queue, so every replica sees the same value).
        self.depth_total = depth["total"]

    async def _sweep(self) -> None:
        # The first sweep of a process also picks up deliveries a dead one left claimed.
        await self.notifier.sweep(startup=not self._swept)
        self._swept = True

    async def close(self) -> None:
        """Drain the pool (``jobs.drain_timeout_s``), then stop webhooks and loops."""
        if self.pool is not None:
            await self.pool.stop()
        # Runs still at the provider (released by the drain, or cancelled just before):
        # cancelled now, their intents stay in the spool and the next process records
        # them at their worst case (replica_lost), as if this one had been killed.
        for call in list(self._abandoned):
            call.cancel()
        if self._abandoned:
            await asyncio.wait(set(self._abandoned), timeout=10)
        for periodic in self._loops:
            await periodic.stop(grace_s=10.0)
        await self.notifier.close()
        await self.queue.close()


def _abandoned_done(tasks: set[asyncio.Task[Outcome]]) -> Callable[[asyncio.Task[Outcome]], None]:
    def done(task: asyncio.Task[Outcome]) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("an abandoned job run failed: %r", task.exception())

    return done
