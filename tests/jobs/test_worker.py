"""The worker pool: leases and heartbeats, cancellation, deadlines, retries, draining.

The first tests drive :class:`WorkerPool` directly against a real SQLite queue with a
stand-in ``run``; the last ones run `interlock worker` as its own process beside an
`interlock serve` that runs no jobs itself.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from interlock.jobs.queue import Job, JobQueue, JobStatus, SqlJobQueue
from interlock.jobs.worker import Outcome, PoolConfig, WorkerPool
from interlock.settings import StorageSettings
from interlock.sim import SimControl
from interlock.storage.engine import create_engine, run_migrations
from tests.jobs.conftest import QueueStore
from tests.jobs.support import (
    chat_job,
    client,
    jobs_config,
    make_key,
    submit,
    until_status,
    wait_job,
)
from tests.support.gateway import GatewayProcess
from tests.support.services import REDIS_URL, require

FAST = PoolConfig(concurrency=4, lease_s=0.6, poll_interval_s=0.02, retry_base_delay_s=0.05,
                  retry_max_delay_s=0.2, drain_timeout_s=2.0)  # fmt: skip


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[JobQueue]:
    engine = create_engine(StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/jobs.db"))
    await run_migrations(engine, None)
    yield SqlJobQueue(engine)
    await engine.dispose()


async def enqueue(q: JobQueue, **kw: object) -> Job:
    job, _ = await q.enqueue(Job(owner="key_a", endpoint="/v1/chat/completions", body={}, **kw))  # type: ignore[arg-type]
    return job


async def test_heartbeats_keep_a_long_job_leased_to_one_worker(queue: JobQueue) -> None:
    runs: list[str] = []

    async def slow(job: Job) -> Outcome:
        runs.append(job.id)
        await asyncio.sleep(2.0)  # more than three lease periods
        return Outcome.success({"ok": True})

    job = await enqueue(queue)
    a, b = WorkerPool(queue, slow, FAST), WorkerPool(queue, slow, FAST)
    a.start()
    await until_status(queue, job.id, JobStatus.RUNNING)
    b.start()  # would take the job back if the lease had lapsed
    done = await until_status(queue, job.id, JobStatus.SUCCEEDED)
    await a.stop()
    await b.stop()
    assert runs == [job.id] and done.attempts == 1 and done.duplicate_completions == 0


async def test_cancelling_a_running_job_stops_its_run(queue: JobQueue) -> None:
    stopped = asyncio.Event()

    async def forever(job: Job) -> Outcome:
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()
        return Outcome.success({})

    finished: list[Job] = []

    async def on_finished(job: Job) -> None:
        finished.append(job)

    pool = WorkerPool(queue, forever, FAST, on_finished=on_finished)
    pool.start()
    job = await enqueue(queue)
    await until_status(queue, job.id, JobStatus.RUNNING)
    await queue.cancel(job.id, "key_a")
    await asyncio.wait_for(stopped.wait(), 3)  # the next heartbeat notices
    await pool.stop()
    after = await queue.get(job.id)
    assert after is not None and after.status is JobStatus.CANCELLED and after.result is None
    assert finished == []


async def test_a_deadline_cuts_a_run_short(queue: JobQueue) -> None:
    async def slow(job: Job) -> Outcome:
        await asyncio.sleep(30)
        return Outcome.success({})

    pool = WorkerPool(queue, slow, FAST)
    pool.start()
    job = await enqueue(queue, deadline=time.time() + 0.5)
    failed = await until_status(queue, job.id, JobStatus.FAILED, timeout=5)
    await pool.stop()
    assert failed.error is not None and failed.error["code"] == "deadline_exceeded"


async def test_retryable_failures_back_off_and_then_succeed(queue: JobQueue) -> None:
    calls: list[float] = []

    async def flaky(job: Job) -> Outcome:
        calls.append(time.monotonic())
        if len(calls) < 3:
            return Outcome.failure({"code": "upstream_unavailable"}, retryable=True,
                                   retry_after_s=0.15)  # fmt: skip
        return Outcome.success({"n": len(calls)})

    pool = WorkerPool(queue, flaky, FAST)
    pool.start()
    job = await enqueue(queue, max_attempts=3)
    done = await until_status(queue, job.id, JobStatus.SUCCEEDED)
    await pool.stop()
    assert done.attempts == 3 and done.result == {"n": 3}
    assert all(b - a >= 0.14 for a, b in itertools.pairwise(calls))  # Retry-After


async def test_retries_stop_at_max_attempts_and_bad_requests_are_not_retried(
    queue: JobQueue,
) -> None:
    async def failing(job: Job) -> Outcome:
        retry = job.body.get("retry", False)
        return Outcome.failure({"code": "x"}, retryable=bool(retry))

    pool = WorkerPool(queue, failing, FAST)
    pool.start()
    flaky = await enqueue(queue, max_attempts=2)
    flaky_body = await queue.get(flaky.id)
    assert flaky_body is not None
    bad = await enqueue(queue, max_attempts=3)
    retried, _ = await queue.enqueue(
        Job(owner="key_a", endpoint="/v1/chat/completions", body={"retry": True}, max_attempts=2)
    )
    for job_id, attempts in ((bad.id, 1), (retried.id, 2)):
        j = await until_status(queue, job_id, JobStatus.FAILED)
        assert j.attempts == attempts and j.dead
    await pool.stop()


def test_backoff_is_exponential_with_jitter_and_honours_retry_after() -> None:
    cfg = PoolConfig(retry_base_delay_s=1.0, retry_max_delay_s=30.0)
    low = WorkerPool(None, None, cfg, rand=lambda: 0.0)  # type: ignore[arg-type]
    high = WorkerPool(None, None, cfg, rand=lambda: 1.0)  # type: ignore[arg-type]
    assert [low.backoff(n, None) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert [high.backoff(n, None) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert high.backoff(10, None) == 30.0  # capped
    assert low.backoff(1, 7.0) == 7.0  # at least Retry-After
    assert low.backoff(1, 3600.0) == 30.0  # but never past the cap


async def test_drain_finishes_running_jobs_and_releases_what_overruns(queue: JobQueue) -> None:
    async def run(job: Job) -> Outcome:
        await asyncio.sleep(float(job.body["s"]))
        return Outcome.success({"slept": job.body["s"]})

    pool = WorkerPool(queue, run, FAST)  # drain_timeout_s 2
    quick, _ = await queue.enqueue(Job(owner="k", endpoint="/v1/embeddings", body={"s": 0.5}))
    slow, _ = await queue.enqueue(Job(owner="k", endpoint="/v1/embeddings", body={"s": 30}))
    pool.start()
    await until_status(queue, slow.id, JobStatus.RUNNING)
    await until_status(queue, quick.id, JobStatus.RUNNING)
    t0 = time.monotonic()
    await pool.stop()
    assert time.monotonic() - t0 < 4
    q = await queue.get(quick.id)
    s = await queue.get(slow.id)
    assert q is not None and q.status is JobStatus.SUCCEEDED
    assert s is not None and s.status is JobStatus.QUEUED  # released, not lost
    assert s.error is not None and s.error["code"] == "worker_shutdown"


# -- `interlock worker` as a process -------------------------------------------------------


@pytest.fixture
def api(sim_url: str, tmp_path: Path) -> Iterator[GatewayProcess]:
    """`interlock serve` with jobs.run_in_serve false: it takes jobs, workers run them."""
    cfg = jobs_config(sim_url, tmp_path / "state", run_in_serve=False, drain_timeout_s=10)
    g = GatewayProcess(cfg, tmp_path).start()
    yield g
    g.stop()


def start_worker(api: GatewayProcess, concurrency: int = 4):  # type: ignore[no-untyped-def]
    from tests.jobs.support import WorkerProcess

    assert api.config is not None
    return WorkerProcess(api.config, api.workdir / "worker", concurrency).start()


def test_a_separate_worker_runs_jobs_as_their_owner(api: GatewayProcess) -> None:
    _key_id, key = make_key(api, team="search")
    _gone_id, gone = make_key(api)
    with client(api, key) as c, client(api, gone) as cg:
        jobs = [submit(c)["id"] for _ in range(5)]
        orphan = submit(cg)["id"]
        with client(api) as admin:
            assert admin.post(f"/admin/keys/{_gone_id}/revoke").status_code == 200
        assert c.get(f"/v1/jobs/{jobs[0]}").json()["status"] == "queued"  # nobody runs them yet
        worker = start_worker(api)
        try:
            done = [wait_job(c, j) for j in jobs]
            with client(api) as admin:  # the revoked key cannot look any more; an admin can
                for _ in range(200):
                    dead = {d["id"]: d for d in admin.get("/admin/jobs/dead").json()["data"]}
                    if orphan in dead:
                        break
                    time.sleep(0.05)
        finally:
            worker.stop()
    assert all(j["status"] == "succeeded" for j in done)
    # A key revoked after submitting: its job fails as the request itself would.
    lost = dead[orphan]
    assert lost["status"] == "failed" and lost["attempts"] == 1
    assert lost["error"]["code"] == "invalid_api_key"


def test_sigterm_drains_a_worker_and_loses_nothing(api: GatewayProcess, sim: SimControl) -> None:
    sim.set_faults([{"type": "latency", "ms": 1500}])
    worker = start_worker(api, concurrency=4)
    try:
        with client(api) as c:
            jobs = [submit(c)["id"] for _ in range(6)]  # 4 run at once, 2 wait
            for j in jobs[:4]:
                wait_job(c, j, until=("running",))
            worker.signal(signal.SIGTERM)
            assert worker.wait(30) == 0, worker.output()
            states = {j: c.get(f"/v1/jobs/{j}").json()["status"] for j in jobs}
    finally:
        worker.stop()
    # The running ones finished during the drain; the others were never taken.
    assert [states[j] for j in jobs[:4]] == ["succeeded"] * 4, states
    assert [states[j] for j in jobs[4:]] == ["queued"] * 2, states
    assert "draining" in worker.output()


def test_a_deadline_fails_a_job_that_cannot_finish_in_time(
    api: GatewayProcess, sim: SimControl
) -> None:
    sim.set_faults([{"type": "latency", "ms": 3000}])
    worker = start_worker(api)
    try:
        with client(api) as c:
            job = submit(c, chat_job(deadline=1.5))  # seconds from now
            done = wait_job(c, job["id"])
    finally:
        worker.stop()
    assert done["status"] == "failed"
    assert done["error"]["code"] in ("deadline_exceeded", "upstream_timeout")


# -- the webhook sweep's query, and the Redis backend end to end ---------------------------


async def test_pending_webhooks_lists_finished_jobs_that_still_owe_one(store: QueueStore) -> None:
    q = await store.open()
    owed, _ = await q.enqueue(Job(owner="k", endpoint="/v1/embeddings", body={},
                                  callback_url="https://example.com/h", webhook_state="pending"))  # fmt: skip
    running, _ = await q.enqueue(Job(owner="k", endpoint="/v1/embeddings", body={},
                                     callback_url="https://example.com/h", webhook_state="pending"))  # fmt: skip
    plain, _ = await q.enqueue(Job(owner="k", endpoint="/v1/embeddings", body={}))
    leased = {j.id for j in await q.lease("w", 3, 30)}
    assert leased == {owed.id, running.id, plain.id}
    await q.complete(owed.id, "w", {"ok": True})
    await q.complete(plain.id, "w", {"ok": True})
    now = store.clock()
    assert [j.id for j in await q.pending_webhooks(now)] == [owed.id]
    assert await q.pending_webhooks(now - 1) == []  # finished too recently
    await q.set_webhook_state(owed.id, "delivered")
    assert await q.pending_webhooks(now) == []


@pytest.mark.redis
def test_jobs_on_the_redis_backend(sim_url: str, tmp_path: Path) -> None:
    require("Redis", "127.0.0.1", 6379)
    prefix = f"test:jobs-e2e:{secrets.token_hex(4)}:"
    cfg = jobs_config(sim_url, tmp_path / "state", backend="redis")
    cfg["state"] = {"key_prefix": prefix, "redis_url": REDIS_URL}
    g = GatewayProcess(cfg, tmp_path).start()
    try:
        with client(g) as c:
            job = wait_job(c, submit(c)["id"])
            assert job["status"] == "succeeded" and job["result"]["object"] == "chat.completion"
            assert c.get("/v1/jobs").json()["data"][0]["id"] == job["id"]
    finally:
        g.stop()
        with redis.Redis.from_url(REDIS_URL) as r:
            keys = list(r.scan_iter(match=prefix + "*", count=1000))
            assert any(k.startswith((prefix + "jobs:").encode()) for k in keys)
            if keys:
                r.delete(*keys)
