"""Every upstream run of a job has a request id of its own, so no run loses its spend record.

A job run's ledger request id is ``<job id>-<run>``; the queue numbers runs at lease time
and nothing resets the number. Before, the id used the attempt count, which a requeue
resets: a dead letter sent back to the queue re-used ``<job id>-1`` and the ledger's
``ON CONFLICT (request_id)`` dropped the new run's row, or the new run's record replaced
the killed run's ``replica_lost`` row — either way one run billed by the provider was
missing from the ledger.

* The queue (SQLite, PostgreSQL, Redis; fake clock): runs never repeat across a lease
  taken back from a live worker, a requeue, a late completion.
* The real gateway in process (the simulated provider, SQLite / PostgreSQL / Redis
  queues): a job whose runner stalled past its lease on its last attempt is
  dead-lettered, requeued and run again: two ledger rows, both costs, their sum the
  simulator's bill; ``GET /v1/jobs/{id}`` and the spend report show it.
* ``interlock worker`` SIGKILLed while its run is at the provider, on the job's last
  attempt (SQLite and PostgreSQL queues): the job is dead-lettered (``lease_expired``),
  requeued and run again by the next worker; the killed run is a ``replica_lost`` row
  (once the same id: the re-run's record replaced it), the re-run its own row, and after
  reconciling with the provider's usage API the job's rows add up to the bill.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.api.job_runner import JobRuntime, body_check, run_job
from interlock.app import create_app
from interlock.gateway import Gateway
from interlock.jobs.queue import Job, JobQueue, JobStatus, RedisJobQueue, SqlJobQueue
from interlock.jobs.queue.base import job_of_request_id, run_request_id
from interlock.jobs.service import job_view
from interlock.settings import Settings, StorageSettings, parse_settings
from interlock.sim import SimControl
from interlock.spend.reconcile import reach_from, reconcile, views_from
from interlock.spend.reports import spend_by
from interlock.storage.engine import create_engine, run_migrations
from interlock.storage.ledger import LedgerStore
from interlock.storage.migrate import upgrade
from interlock.storage.tables import ledger
from interlock.types import Usage
from tests.jobs.conftest import QueueStore
from tests.jobs.support import CHAT_BODY, WorkerProcess, jobs_config, until_status
from tests.support.gateway import MASTER_KEY
from tests.support.services import PG_URL, REDIS_URL, delete_redis_keys, require

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
ERR = {"code": "upstream_error", "message": "boom"}


async def enqueue(q: JobQueue, **kw: Any) -> Job:
    job, _ = await q.enqueue(Job(owner="key_a", endpoint="/v1/chat/completions", body={}, **kw))
    return job


def test_a_run_request_id_names_its_job_and_run() -> None:
    assert run_request_id("job_ab12", 3) == "job_ab12-3"
    assert job_of_request_id("job_ab12-3") == ("job_ab12", 3)
    assert job_of_request_id("job_ab12-3-hedge") == ("job_ab12", 3)  # rows derived from a run
    assert job_of_request_id("req_0f3a00000001") is None
    assert job_of_request_id("job_ab12") is None
    assert job_of_request_id("job_ab12-x") is None


# -- the queue: numbers given at lease, never reused ----------------------------------------


async def test_requeue_resets_attempts_but_not_runs(store: QueueStore) -> None:
    q = await store.open()
    job = await enqueue(q, max_attempts=2)
    seen = []
    for _ in range(2):  # both attempts fail: a dead letter
        [leased] = await q.lease("w1", 1, 30)
        seen.append(leased.runs)
        await q.fail(job.id, "w1", ERR, retryable=True)
        store.clock.advance(1)
    dead = await q.get(job.id)
    assert dead is not None and dead.dead and dead.attempts == 2
    assert dead.runs == 2 and dead.result_run == 2  # the error shown is run 2's
    assert await q.requeue(job.id)
    back = await q.get(job.id)
    assert back is not None and back.attempts == 0 and back.runs == 2 and back.result_run is None
    [again] = await q.lease("w2", 1, 30)
    seen.append(again.runs)
    assert again.attempts == 1
    assert seen == [1, 2, 3]
    assert await q.complete(job.id, "w2", {"ok": True}, "0.5", 200, run=again.runs)
    done = await q.get(job.id)
    assert done is not None and done.runs == 3 and done.result_run == 3


async def test_a_lease_taken_back_from_a_live_worker_starts_a_new_run(store: QueueStore) -> None:
    q = await store.open()
    job = await enqueue(q, max_attempts=3)
    [first] = await q.lease("slow", 1, 5)
    store.clock.advance(6)  # "slow" stopped heartbeating, but is still running run 1
    [second] = await q.lease("fast", 1, 5)
    assert (first.runs, second.runs) == (1, 2)
    # The slow runner's result arrives first: it wins, and names its own run.
    assert await q.complete(job.id, "slow", {"by": "slow"}, "0.1", 200, run=first.runs)
    assert not await q.complete(job.id, "fast", {"by": "fast"}, "0.1", 200, run=second.runs)
    done = await q.get(job.id)
    assert done is not None and done.result == {"by": "slow"}
    assert done.runs == 2 and done.result_run == 1
    assert job_view(done)["request_id"] == f"{job.id}-1" and job_view(done)["runs"] == 2


async def test_a_lease_lost_on_the_last_attempt_is_buried_with_its_run(store: QueueStore) -> None:
    q = await store.open()
    job = await enqueue(q, max_attempts=1)
    [leased] = await q.lease("w1", 1, 5)
    store.clock.advance(6)
    assert await q.reclaim() == 1
    dead = await q.get(job.id)
    assert dead is not None and dead.dead and dead.error is not None
    assert dead.error["code"] == "lease_expired" and dead.result_run == leased.runs == 1
    # Its late result still counts (the first result wins) — with its own run.
    assert await q.complete(job.id, "w1", {"late": True}, "0.2", 200, run=1) is False
    assert await q.requeue(job.id)
    [rerun] = await q.lease("w2", 1, 5)
    assert rerun.runs == 2


async def test_jobs_stored_before_run_numbers_continue_above_every_old_id(
    tmp_path: Path,
) -> None:
    """Migration 0010: a job that ran before run numbers existed may have used any
    ``<job id>-<n>`` up to its max_attempts (a requeue reset its attempts); its next run
    starts above them. A job that never ran starts at 1."""
    engine = create_engine(StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path}/old.db"))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda c: upgrade(c, "0009"))
            for job_id, started in (("job_ran", 1.0), ("job_new", None)):
                await conn.execute(
                    text(
                        "INSERT INTO jobs (id, owner, tenant, endpoint, body, priority, metadata,"
                        " status, attempts, max_attempts, run_at, created_at, started_at, dead,"
                        " duplicate_completions) VALUES (:id, 'k', 'k', '/v1/embeddings', '{}',"
                        " 0, '{}', 'queued', 0, 3, 0, 0, :started, false, 0)"
                    ),
                    {"id": job_id, "started": started},
                )
        await run_migrations(engine, None)
        q = SqlJobQueue(engine)
        leased = {j.id: j.runs for j in await q.lease("w", 2, 30)}
        assert leased == {"job_ran": 4, "job_new": 1}
    finally:
        await engine.dispose()


@pytest.mark.redis
async def test_redis_jobs_stored_before_run_numbers_continue_above_every_old_id() -> None:
    require("Redis", "127.0.0.1", 6379)
    prefix = f"test:jobs:{secrets.token_hex(4)}:"
    client = Redis.from_url(REDIS_URL)
    try:
        q = RedisJobQueue(client, prefix)
        ran, fresh = await enqueue(q, max_attempts=3), await enqueue(q, max_attempts=3)
        # As an older version stored them: no runs field; one had run (and was requeued).
        await client.hdel(f"{prefix}job:{ran.id}", "runs")  # type: ignore[misc]
        await client.hdel(f"{prefix}job:{fresh.id}", "runs")  # type: ignore[misc]
        await client.hset(f"{prefix}job:{ran.id}", "started_at", "1.0")  # type: ignore[misc]
        leased = {j.id: j.runs for j in await q.lease("w", 2, 30)}
        assert leased == {ran.id: 4, fresh.id: 1}
    finally:
        delete_redis_keys(prefix)
        await client.aclose()


# -- the real gateway, in process --------------------------------------------------------


def gateway_settings(
    kind: str, sim_url: str, state: Path, *, schema: str | None, prefix: str
) -> Settings:
    cfg = jobs_config(sim_url, state, run_in_serve=False, max_attempts=1, lease_s=0.6, webhooks={})
    if kind == "postgres":
        cfg["storage"] = {"url": PG_URL, "db_schema": schema, "pool_size": 4}
    if kind == "redis":
        cfg["jobs"]["backend"] = "redis"
        cfg["state"] = {"redis_url": REDIS_URL, "key_prefix": prefix}
    return parse_settings(cfg)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
async def gw(
    request: pytest.FixtureRequest, sim_url: str, tmp_path: Path
) -> AsyncIterator[Gateway]:
    kind: str = request.param
    if kind == "postgres":
        require("PostgreSQL", "127.0.0.1", 5432)
    if kind == "redis":
        require("Redis", "127.0.0.1", 6379)
    schema = "jr_" + secrets.token_hex(5) if kind == "postgres" else None
    prefix = f"jr{secrets.token_hex(4)}:"
    g = Gateway(gateway_settings(kind, sim_url, tmp_path / "state", schema=schema, prefix=prefix))
    await g.start()
    try:
        yield g
    finally:
        await g.close()
        if schema is not None:
            engine = create_engine(g.settings.storage.model_copy(update={"db_schema": None}))
            async with engine.begin() as conn:
                await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            await engine.dispose()
        if kind == "redis":
            delete_redis_keys(prefix)


@pytest.fixture
async def rt(gw: Gateway) -> AsyncIterator[JobRuntime]:
    """The job runtime over ``gw``, as the app's composition root builds it (no pool)."""
    runtime = JobRuntime(gw)
    try:
        yield runtime
    finally:
        await runtime.close()


async def job_rows(engine: AsyncEngine, job_id: str) -> dict[str, dict[str, Any]]:
    q = select(ledger).where(ledger.c.request_id.like(f"{job_id}-%"))
    rows = await LedgerStore(engine).rows(q)
    return {r["request_id"]: r for r in rows}


def sim_bill(gw: Gateway, sim: SimControl, deployment: str) -> tuple[Decimal, int]:
    """What the simulator billed, priced as the gateway prices ``deployment``; its calls."""
    entries = sim.ledger()["entries"]
    total = sum(
        (gw.spend.cost(deployment, Usage(e["prompt_tokens"], e["completion_tokens"]))
         for e in entries),
        Decimal(0),
    )  # fmt: skip
    return total, len(entries)


async def test_a_requeued_dead_letter_keeps_both_runs_in_the_ledger(
    gw: Gateway, rt: JobRuntime, sim: SimControl
) -> None:
    principal = await rt.principals.get("master")
    job, _ = await rt.service.submit(
        "master",
        None,
        {"endpoint": "/v1/chat/completions", "body": dict(CHAT_BODY)},
        body_check(gw, principal),
    )
    # Run 1: its runner stalls past its lease on the job's only attempt; the queue buries
    # the job as lease_expired, and the run's answer, billed all the same, comes late.
    [leased] = await rt.queue.lease("stalled", 1, 0.05)
    assert leased.runs == 1
    await asyncio.sleep(0.1)
    assert await rt.queue.reclaim() == 1
    late = await run_job(gw, rt.principals, leased)
    assert late.ok and late.cost_usd is not None
    assert not await rt.queue.complete(job.id, "stalled", late.result or {}, late.cost_usd, 200,
                                       run=leased.runs)  # fmt: skip
    dead = await rt.queue.get(job.id)
    assert dead is not None and dead.dead

    # An operator sends it back (the admin route), a worker pool runs it: run 2.
    app = create_app(gw.settings, gw)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw", headers=ADMIN
    ) as c:
        r = await c.post(f"/admin/jobs/{job.id}/requeue")
        assert r.status_code == 200 and r.json()["runs"] == 1 and r.json()["attempts"] == 0
        await rt.start(run_pool=True)
        await until_status(rt.queue, job.id, JobStatus.SUCCEEDED)
        view = (await c.get(f"/v1/jobs/{job.id}")).json()
    assert view["status"] == "succeeded" and view["attempts"] == 1 and view["runs"] == 2
    assert view["request_id"] == f"{job.id}-2"

    assert await gw.spend.ledger.flush()
    rows = await job_rows(gw.engine, job.id)
    billed, calls = sim_bill(gw, sim, "sim-small")
    assert calls == 2
    assert sorted(rows) == [f"{job.id}-1", f"{job.id}-2"]
    assert all(r["outcome"] == "ok" and Decimal(r["cost_usd"]) > 0 for r in rows.values())
    assert Decimal(rows[f"{job.id}-1"]["cost_usd"]) == Decimal(late.cost_usd)
    assert Decimal(view["cost_usd"]) == Decimal(rows[f"{job.id}-2"]["cost_usd"])
    assert sum(Decimal(r["cost_usd"]) for r in rows.values()) == billed
    # Reports count both runs for the key that submitted the job.
    since = datetime.now(UTC) - timedelta(hours=1)
    by_key = {r["group"]: r for r in await spend_by(gw.engine, "key", since)}
    assert by_key["master"]["requests"] == 2 and by_key["master"]["cost_usd"] == billed


@pytest.mark.parametrize("gw", ["sqlite"], indirect=True)
async def test_a_run_cancelled_at_the_provider_is_recorded_at_what_it_cost(
    gw: Gateway, rt: JobRuntime, sim: SimControl
) -> None:
    """The owner cancels a job while its run is at the provider: the job is cancelled at
    once, and the call, billed all the same, finishes in the background and gets its
    ledger row with the provider's usage (not a worst case left for a later replay)."""
    principal = await rt.principals.get("master")
    sim.set_faults([{"type": "latency", "ms": 800, "count": 1}])
    job, _ = await rt.service.submit(
        "master",
        None,
        {"endpoint": "/v1/chat/completions", "body": dict(CHAT_BODY)},
        body_check(gw, principal),
    )
    await rt.start(run_pool=True)
    assert rt.pool is not None
    rt.pool.wake()

    async def at_provider() -> bool:
        return len(sim.requests()) == 1

    await until(at_provider, "the run never reached the provider")
    cancelled, by_this_call = await rt.service.cancel("master", job.id)
    assert by_this_call and cancelled.status is JobStatus.CANCELLED

    async def row() -> dict[str, Any] | None:
        await gw.spend.ledger.flush()
        return (await job_rows(gw.engine, job.id)).get(f"{job.id}-1")

    rec = await until(row, "the cancelled run's ledger row")
    billed, calls = sim_bill(gw, sim, "sim-small")
    assert calls == 1 and rec["outcome"] == "ok" and not rec["usage_estimated"]
    assert Decimal(rec["cost_usd"]) == billed > 0
    final = await rt.queue.get(job.id)
    assert final is not None and final.status is JobStatus.CANCELLED and final.result is None


# -- `interlock worker` SIGKILLed while its run is at the provider ----------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def kill_cfg(
    request: pytest.FixtureRequest, sim_url: str, tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    cfg = jobs_config(
        sim_url, tmp_path / "state", run_in_serve=False, lease_s=1.0, max_attempts=1, webhooks={}
    )
    # A run can be billed until request_timeout_s after it started: reconcile after that.
    cfg["server"] = {"request_timeout_s": 3}
    cfg["spend"]["ledger_flush_interval_s"] = 0.1
    cfg["providers"]["sim"]["usage_api"] = {"admin_key": "sk-admin-test", "settle_delay_s": 0}
    schema = None
    if request.param == "postgres":
        require("PostgreSQL", "127.0.0.1", 5432)
        schema = "jk_" + secrets.token_hex(5)
        cfg["storage"] = {"url": PG_URL, "db_schema": schema, "pool_size": 2}
    yield cfg
    if schema is not None:
        engine = create_engine(parse_settings(cfg).storage.model_copy(update={"db_schema": None}))
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


async def until(check: Any, what: str, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_a_killed_run_and_its_rerun_are_two_rows_that_add_up_to_the_bill(
    kill_cfg: dict[str, Any], sim: SimControl, tmp_path: Path
) -> None:
    settings = parse_settings(kill_cfg)
    engine = create_engine(settings.storage)
    await run_migrations(engine, settings.storage.db_schema)
    queue = SqlJobQueue(engine)
    sim.set_faults([{"type": "latency", "ms": 1500, "count": 1}])  # run 1 is slow
    killed = WorkerProcess(kill_cfg, tmp_path / "killed").start()
    rerun: WorkerProcess | None = None
    try:
        job, _ = await queue.enqueue(
            Job(owner="master", endpoint="/v1/chat/completions", body=dict(CHAT_BODY),
                max_attempts=1)
        )  # fmt: skip

        async def at_provider() -> bool:
            return len(sim.requests()) == 1

        await until(at_provider, "run 1 never reached the provider")
        started = datetime.now(UTC)
        killed.signal(signal.SIGKILL)
        killed.wait(10)
        # The next worker replays the dead one's spool (run 1: replica_lost at its worst
        # case) and, once run 1's lease runs out, buries the job: it was its last attempt.
        rerun = WorkerProcess(kill_cfg, tmp_path / "rerun").start()
        dead = await until_status(queue, job.id, JobStatus.FAILED)
        assert dead.dead and dead.error is not None and dead.error["code"] == "lease_expired"
        assert await queue.requeue(job.id)  # what POST /admin/jobs/{id}/requeue does
        done = await until_status(queue, job.id, JobStatus.SUCCEEDED)
        assert (done.runs, done.result_run, done.attempts) == (2, 2, 1)

        async def both_rows() -> dict[str, dict[str, Any]] | None:
            rows = await job_rows(engine, job.id)
            return rows if len(rows) == 2 else None

        rows = await until(both_rows, "the job's two ledger rows")
        lost, ok = rows[f"{job.id}-1"], rows[f"{job.id}-2"]
        assert lost["outcome"] == "replica_lost" and lost["usage_estimated"]
        assert ok["outcome"] == "ok" and Decimal(ok["cost_usd"]) == done.cost_usd

        async def billed_twice() -> bool:
            return len(sim.ledger()["entries"]) == 2  # run 1 is billed though its caller died

        await until(billed_twice, "the provider did not bill both runs")
        gw = Gateway(settings)  # for its prices only (not started)
        billed, _ = sim_bill(gw, sim, "sim-small")
        worst = Decimal(lost["cost_usd"])
        assert worst == Decimal(lost["reserved_usd"]) and worst + Decimal(ok["cost_usd"]) > billed

        # Reconcile once run 1 can no longer be billed: its worst case becomes its bill.
        wait = started + timedelta(seconds=settings.server.request_timeout_s + 0.5)
        await asyncio.sleep(max(0.0, (wait - datetime.now(UTC)).total_seconds()))
        report = await reconcile(
            LedgerStore(engine),
            views_from(settings),
            reach_from(settings),
            started - timedelta(minutes=5),
            datetime.now(UTC),
            reach_s=settings.server.request_timeout_s,
        )
        assert report.rewritten == 1, report
        rows = await job_rows(engine, job.id)
        total = sum((Decimal(r["cost_usd"]) for r in rows.values()), Decimal(0))
        print(
            f"\nprovider billed ${billed} for 2 runs; ledger: killed run ${worst} (worst case)"
            f" + re-run ${ok['cost_usd']} before reconcile, ${total} after"
        )
        assert abs(total - billed) <= Decimal("1e-9"), (total, billed)
        assert rows[f"{job.id}-1"]["outcome"] == "replica_lost"
        await gw.engine.dispose()
    finally:
        killed.stop()
        if rerun is not None:
            rerun.stop()
        await engine.dispose()
