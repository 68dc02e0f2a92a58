"""One conformance suite for every job-queue backend (SQLite, PostgreSQL, Redis).

Time is a fake clock shared by every queue object of a test, so lease expiry, backoff
and deadlines are tested without sleeping.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from interlock.jobs.queue import (
    Job,
    JobNotFound,
    JobQueue,
    JobStatus,
    QueueFull,
    QueueLimits,
    priority_value,
)
from tests.jobs.conftest import START, FakeClock, QueueStore

CHAT = "/v1/chat/completions"


def job(owner: str = "key_a", **kw: Any) -> Job:
    body = kw.pop("body", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    return Job(owner=owner, endpoint=CHAT, body=body, **kw)


async def submit(q: JobQueue, owner: str = "key_a", **kw: Any) -> Job:
    stored, created = await q.enqueue(job(owner, **kw))
    assert created
    return stored


async def test_enqueue_is_durable(store: QueueStore) -> None:
    q = await store.open()
    stored, created = await q.enqueue(
        job(
            team="team_1",
            callback_url="https://example.test/hook",
            priority=priority_value("high"),
            deadline=START + 3600,
            metadata={"batch": "b1"},
            idempotency_key="idem-1",
            max_attempts=5,
        )
    )
    assert created and stored.id.startswith("job_") and stored.seq > 0

    other = await store.open()  # another replica, or this one after a restart
    got = await other.get(stored.id)
    assert got is not None
    assert got == stored
    assert got.status is JobStatus.QUEUED
    assert (got.owner, got.team, got.endpoint) == ("key_a", "team_1", CHAT)
    assert got.body["messages"][0]["content"] == "hi"
    assert (got.priority, got.deadline, got.max_attempts) == (10, START + 3600, 5)
    assert got.metadata == {"batch": "b1"} and got.callback_url == "https://example.test/hook"
    assert (got.created_at, got.run_at, got.attempts) == (START, START, 0)
    assert (got.result, got.error, got.cost_usd, got.dead) == (None, None, None, False)
    assert got.duplicate_completions == 0 and got.webhook_state is None
    assert await other.get("job_missing") is None


async def test_idempotency_key_is_per_owner(store: QueueStore) -> None:
    q = await store.open()
    first, created = await q.enqueue(job(idempotency_key="k1"))
    again, created_again = await q.enqueue(job(idempotency_key="k1", body={"other": True}))
    assert created and not created_again
    assert again.id == first.id and again.body == first.body

    theirs, created_theirs = await q.enqueue(job("key_b", idempotency_key="k1"))
    assert created_theirs and theirs.id != first.id

    no_key = [await submit(q) for _ in range(2)]
    assert no_key[0].id != no_key[1].id
    assert (await q.depth())["total"] == 4


async def test_priority_first_then_fifo(store: QueueStore, clock: FakeClock) -> None:
    q = await store.open()
    low = await submit(q, priority=priority_value("low"))
    n1 = await submit(q)
    later = await submit(q, run_at=START + 60)  # scheduled: not runnable yet
    n2 = await submit(q)
    high = await submit(q, priority=priority_value("high"))
    n3 = await submit(q, priority=0)

    got = await q.lease("w1", 3, 600)
    assert [j.id for j in got] == [high.id, n1.id, n2.id]
    assert all(j.status is JobStatus.RUNNING and j.attempts == 1 for j in got)
    assert all(j.worker == "w1" and j.lease_until == START + 600 for j in got)
    assert all(j.started_at == START for j in got)
    assert [j.id for j in await q.lease("w1", 10, 600)] == [n3.id, low.id]
    assert await q.lease("w1", 10, 600) == []

    clock.advance(60)
    assert [j.id for j in await q.lease("w1", 10, 600)] == [later.id]
    assert await q.lease("w1", 0, 600) == []


async def test_concurrent_leases_take_each_job_once(store: QueueStore) -> None:
    q = await store.open()
    ids = {(await submit(q, metadata={"i": i})).id for i in range(200)}
    workers = [await store.open() for _ in range(4)]

    async def drain(w: JobQueue, name: str) -> list[str]:
        taken: list[str] = []
        while batch := await w.lease(name, 7, 60):
            taken += [j.id for j in batch]
            await asyncio.sleep(0)
        return taken

    results = await asyncio.gather(*(drain(w, f"w{i}") for i, w in enumerate(workers)))
    taken = [job_id for r in results for job_id in r]
    assert len(taken) == len(set(taken)) == 200
    assert set(taken) == ids
    assert (await q.depth())["total"] == 0
    sample = await q.get(taken[0])
    assert sample is not None and sample.attempts == 1


async def test_expired_lease_is_reclaimed(store: QueueStore, clock: FakeClock) -> None:
    q = await store.open()
    j = await submit(q)
    (first,) = await q.lease("w1", 1, 30)
    assert await q.lease("w2", 1, 30) == []

    clock.advance(29)
    assert await q.reclaim() == 0
    clock.advance(2)  # w1 died: no heartbeat, the lease ran out
    (second,) = await store_open_lease(store, "w2")
    assert second.id == j.id == first.id
    assert (second.attempts, second.worker, second.lease_until) == (2, "w2", clock.now + 30)
    assert not await q.heartbeat(j.id, "w1", 30)  # w1 lost it

    clock.advance(31)
    assert await q.reclaim() == 1
    back = await q.get(j.id)
    assert back is not None and back.status is JobStatus.QUEUED and back.attempts == 2
    assert back.run_at == clock.now
    assert (await q.depth())["total"] == 1


async def store_open_lease(store: QueueStore, worker: str) -> list[Job]:
    return await (await store.open()).lease(worker, 5, 30)


async def test_heartbeat_extends_the_lease(store: QueueStore, clock: FakeClock) -> None:
    q = await store.open()
    j = await submit(q)
    await q.lease("w1", 1, 30)
    clock.advance(20)
    assert await q.heartbeat(j.id, "w1", 30)
    assert not await q.heartbeat(j.id, "w2", 30)
    assert not await q.heartbeat("job_missing", "w1", 30)
    clock.advance(20)  # 40 s after the lease, 20 s after the heartbeat
    assert await q.lease("w2", 1, 30) == []
    got = await q.get(j.id)
    assert got is not None and got.lease_until == START + 50 and got.worker == "w1"
    clock.advance(11)
    assert [x.id for x in await q.lease("w2", 1, 30)] == [j.id]


async def test_complete_first_wins_and_counts_duplicates(
    store: QueueStore, clock: FakeClock
) -> None:
    q = await store.open()
    j = await submit(q)
    await q.lease("w1", 1, 30)
    clock.advance(31)
    await q.lease("w2", 1, 30)  # w1 looked dead: w2 runs it again

    clock.advance(1)
    assert await q.complete(j.id, "w2", {"answer": 1}, Decimal("0.0012"), 200)
    assert not await q.complete(j.id, "w1", {"answer": 2}, "0.5", 200)
    assert not await q.complete(j.id, "w2", {"answer": 3})
    done = await q.get(j.id)
    assert done is not None
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"answer": 1} and done.cost_usd == Decimal("0.0012")
    assert (done.status_code, done.worker, done.finished_at) == (200, "w2", clock.now)
    assert done.duplicate_completions == 2 and done.lease_until is None
    assert not await q.heartbeat(j.id, "w2", 30)
    assert await q.fail(j.id, "w2", {"code": "x"}, retryable=True) is JobStatus.SUCCEEDED
    assert not await q.complete("job_missing", "w1", {})


async def test_completion_by_a_reclaimed_worker_still_counts(
    store: QueueStore, clock: FakeClock
) -> None:
    q = await store.open()
    j = await submit(q)
    await q.lease("w1", 1, 30)
    clock.advance(31)
    await q.reclaim()  # back in the queue, but w1 finishes after all
    assert await q.complete(j.id, "w1", {"ok": True})
    assert await q.lease("w2", 1, 30) == []
    assert (await q.depth())["total"] == 0


async def test_fail_retries_then_dead_letters_then_requeue(
    store: QueueStore, clock: FakeClock
) -> None:
    q = await store.open()
    j = await submit(q, max_attempts=2)
    await q.lease("w1", 1, 30)
    assert await q.fail(j.id, "w2", {"code": "x"}, retryable=True) is JobStatus.RUNNING
    err = {"code": "upstream_unavailable", "message": "502"}
    assert await q.fail(j.id, "w1", err, retryable=True, backoff_s=10) is JobStatus.QUEUED
    retry = await q.get(j.id)
    assert retry is not None and retry.run_at == START + 10 and retry.error == err
    assert retry.lease_until is None and retry.attempts == 1
    assert await q.lease("w1", 1, 30) == []  # backing off
    assert await q.oldest_age_s() is None

    clock.advance(10)
    (again,) = await q.lease("w1", 1, 30)
    assert again.attempts == 2
    assert await q.fail(j.id, "w1", err, retryable=True, backoff_s=10) is JobStatus.FAILED
    dead = await q.get(j.id)
    assert dead is not None and dead.status is JobStatus.FAILED and dead.dead
    assert dead.finished_at == clock.now and dead.error == err
    assert [x.id for x in await q.dead_letters()] == [j.id]
    assert await q.lease("w1", 1, 30) == []

    assert await q.requeue(j.id)
    assert not await q.requeue(j.id)
    back = await q.get(j.id)
    assert back is not None and back.status is JobStatus.QUEUED
    assert (back.attempts, back.dead, back.error, back.finished_at) == (0, False, None, None)
    assert await q.dead_letters() == []
    (third,) = await q.lease("w3", 1, 30)
    assert third.attempts == 1

    with pytest.raises(JobNotFound):
        await q.fail("job_missing", "w1", err, retryable=True)


async def test_non_retryable_failure_dead_letters_at_once(store: QueueStore) -> None:
    q = await store.open()
    a, b = await submit(q), await submit(q)
    await q.lease("w1", 2, 30)
    assert await q.fail(a.id, "w1", {"code": "bad"}, retryable=False) is JobStatus.FAILED
    assert await q.fail(b.id, "w1", {"code": "bad"}, retryable=False) is JobStatus.FAILED
    assert [x.id for x in await q.dead_letters()] == [b.id, a.id]  # newest first
    assert [x.id for x in await q.dead_letters(limit=1)] == [b.id]
    assert not await q.requeue("job_missing")


async def test_lease_lost_on_last_attempt_dead_letters(store: QueueStore, clock: FakeClock) -> None:
    q = await store.open()
    j = await submit(q, max_attempts=1)
    await q.lease("w1", 1, 30)
    clock.advance(31)
    assert await q.lease("w2", 1, 30) == []
    got = await q.get(j.id)
    assert got is not None and got.status is JobStatus.FAILED and got.dead
    assert got.error is not None and got.error["code"] == "lease_expired"
    assert [x.id for x in await q.dead_letters()] == [j.id]


async def test_cancel(store: QueueStore, clock: FakeClock) -> None:
    q = await store.open()
    queued, running, done = await submit(q), await submit(q), await submit(q)
    await q.lease("w1", 1, 30)  # takes `queued`
    await q.lease("w1", 1, 30)  # takes `running`
    await q.lease("w1", 1, 30)
    assert await q.complete(done.id, "w1", {"ok": 1})
    assert await q.fail(queued.id, "w1", {"code": "x"}, True, 5) is JobStatus.QUEUED

    assert await q.cancel(queued.id, "key_b") is None  # not theirs
    assert await q.cancel("job_missing", "key_a") is None
    c1 = await q.cancel(queued.id, "key_a")
    assert c1 is not None and c1.status is JobStatus.CANCELLED and c1.finished_at == clock.now
    c2 = await q.cancel(running.id, "key_a")
    assert c2 is not None and c2.status is JobStatus.CANCELLED
    c3 = await q.cancel(done.id, "key_a")
    assert c3 is not None and c3.status is JobStatus.SUCCEEDED and c3.result == {"ok": 1}

    # The worker learns it from its heartbeat; its late result does not overwrite.
    assert not await q.heartbeat(running.id, "w1", 30)
    assert not await q.complete(running.id, "w1", {"late": True})
    assert await q.fail(running.id, "w1", {"code": "x"}, True) is JobStatus.CANCELLED
    after = await q.get(running.id)
    assert after is not None and after.status is JobStatus.CANCELLED and after.result is None
    clock.advance(60)
    assert await q.lease("w1", 10, 30) == []
    assert (await q.depth())["total"] == 0


async def test_deadline_passed_is_not_started(store: QueueStore, clock: FakeClock) -> None:
    q = await store.open()
    late = await submit(q, deadline=START + 5)
    fine = await submit(q, deadline=START + 60)
    clock.advance(5)
    assert [j.id for j in await q.lease("w1", 5, 30)] == [fine.id]
    got = await q.get(late.id)
    assert got is not None and got.status is JobStatus.FAILED and not got.dead
    assert got.error is not None and got.error["code"] == "deadline_exceeded"
    assert got.attempts == 0 and got.finished_at == clock.now
    assert await q.dead_letters() == []
    assert not await q.requeue(late.id)


async def test_list_only_own_jobs(store: QueueStore) -> None:
    q = await store.open()
    mine = [await submit(q, "key_a") for _ in range(5)]
    theirs = [await submit(q, "key_b") for _ in range(2)]
    (leased,) = await q.lease("w1", 1, 30)
    await q.complete(leased.id, "w1", {"ok": True})
    assert leased.id == mine[0].id

    newest_first = [j.id for j in reversed(mine)]
    assert [j.id for j in await q.list("key_a")] == newest_first
    assert [j.id for j in await q.list("key_b")] == [j.id for j in reversed(theirs)]
    assert await q.list("key_c") == []
    assert [j.id for j in await q.list("key_a", status="succeeded")] == [mine[0].id]
    assert [j.id for j in await q.list("key_a", JobStatus.QUEUED, limit=2)] == newest_first[:2]

    page1 = await q.list("key_a", limit=2)
    page2 = await q.list("key_a", limit=2, after=page1[-1].id)
    page3 = await q.list("key_a", limit=2, after=page2[-1].id)
    assert [j.id for j in page1 + page2 + page3] == newest_first
    assert await q.list("key_a", limit=2, after=page3[-1].id) == []
    assert await q.list("key_a", after=theirs[0].id) == []  # a cursor from someone else
    queued_after = await q.list("key_a", "queued", limit=10, after=newest_first[1])
    assert [j.id for j in queued_after] == newest_first[2:4]


async def test_depth_and_oldest_age(store: QueueStore, clock: FakeClock) -> None:
    q = await store.open()
    assert await q.depth() == {"total": 0, "by_priority": {}}
    assert await q.oldest_age_s() is None
    await submit(q)
    clock.advance(4)
    await submit(q)
    await submit(q, priority=10)
    await submit(q, run_at=START + 100)  # scheduled: in depth, not waiting yet
    clock.advance(1)
    assert await q.depth() == {"total": 4, "by_priority": {0: 3, 10: 1}}
    assert await q.oldest_age_s() == pytest.approx(5.0)

    await q.lease("w1", 2, 30)  # the high one, then the oldest normal one
    assert await q.depth() == {"total": 2, "by_priority": {0: 2}}
    assert await q.oldest_age_s() == pytest.approx(1.0)
    clock.advance(200)
    assert await q.oldest_age_s() == pytest.approx(201.0)
    await q.lease("w1", 5, 300)
    assert await q.depth() == {"total": 0, "by_priority": {}}
    assert await q.oldest_age_s() is None


async def test_queue_full_per_priority(store: QueueStore) -> None:
    q = await store.open(QueueLimits(max_depth_per_priority={0: 2}, retry_after_s=7))
    a = await submit(q, idempotency_key="a")
    await submit(q)
    with pytest.raises(QueueFull) as info:
        await q.enqueue(job())
    assert info.value.scope == "priority" and info.value.limit == 2
    assert info.value.retry_after_s == 7 and info.value.status == 429
    assert info.value.code == "queue_full"
    again, created = await q.enqueue(job(idempotency_key="a"))  # a retry, not new work
    assert again.id == a.id and not created
    await submit(q, priority=10)  # other priorities are not limited by this map
    await q.lease("w1", 2, 30)  # the high one and one normal
    await submit(q)
    assert (await q.depth())["by_priority"] == {0: 2}

    flat = await store.open(QueueLimits(max_depth_per_priority=2))
    await submit(flat, priority=10)
    await submit(flat, priority=10)
    with pytest.raises(QueueFull):
        await flat.enqueue(job(priority=10))


async def test_queue_full_per_tenant(store: QueueStore) -> None:
    q = await store.open(QueueLimits(max_depth_per_tenant=2))
    await submit(q, "key_a", team="t1")
    await submit(q, "key_b", team="t1")  # same team, other key: same tenant
    with pytest.raises(QueueFull) as info:
        await q.enqueue(job("key_c", team="t1"))
    assert info.value.scope == "tenant" and info.value.retry_after_s == 5.0
    await submit(q, "key_c", team="t2")
    await submit(q, "key_d")  # no team: the key is its own tenant
    await submit(q, "key_d")
    with pytest.raises(QueueFull):
        await q.enqueue(job("key_d"))
    (first,) = await q.lease("w1", 1, 30)
    assert first.team == "t1"
    await submit(q, "key_c", team="t1")


async def test_webhook_state(store: QueueStore) -> None:
    q = await store.open()
    j = await submit(q, callback_url="https://example.test/hook", webhook_state="pending")
    assert (await q.get(j.id)).webhook_state == "pending"  # type: ignore[union-attr]
    assert await q.set_webhook_state(j.id, "delivered")
    assert (await q.get(j.id)).webhook_state == "delivered"  # type: ignore[union-attr]
    assert await q.set_webhook_state(j.id, None)
    assert (await q.get(j.id)).webhook_state is None  # type: ignore[union-attr]
    assert not await q.set_webhook_state("job_missing", "failed")
    with pytest.raises(ValueError):
        await q.set_webhook_state(j.id, "bogus")


async def test_rejects_invalid_jobs(store: QueueStore) -> None:
    q = await store.open()
    for bad in (job(priority=101), job(max_attempts=0), job(owner=""), job(priority="x")):
        with pytest.raises(ValueError):
            await q.enqueue(bad)
    assert await q.depth() == {"total": 0, "by_priority": {}}
    assert priority_value("normal") == 0 and priority_value("low") == -10


async def test_concurrent_submits_respect_limits_and_idempotency(store: QueueStore) -> None:
    limits = QueueLimits(max_depth_per_tenant=5)
    replicas = [await store.open(limits) for _ in range(4)]

    async def try_submit(q: JobQueue, i: int) -> str:
        try:
            _, created = await q.enqueue(job(team="t1", metadata={"i": i}))
        except QueueFull:
            return "full"
        return "created" if created else "existing"

    outcomes = await asyncio.gather(*(try_submit(replicas[i % 4], i) for i in range(20)))
    assert sorted(outcomes).count("created") == 5
    assert outcomes.count("full") == 15

    same = await asyncio.gather(
        *(q.enqueue(job("key_z", idempotency_key="once")) for q in replicas for _ in range(3))
    )
    assert len({stored.id for stored, _ in same}) == 1
    assert sum(created for _, created in same) == 1
    assert len(await replicas[0].list("key_z")) == 1
