"""The batch driver against a real store (SQLite and PostgreSQL) and a fake clock: what
takes hours over HTTP (the 24 h expiry) or needs a crash at the right moment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.jobs.batch.driver import BatchDriver, idempotency_key
from interlock.jobs.batch.service import BatchService
from interlock.jobs.batch.store import PENDING, QUEUED, BatchStore
from interlock.jobs.queue import Job, JobStatus, QueueLimits, SqlJobQueue
from interlock.settings import JobBatchSettings
from tests.jobs.conftest import FakeClock
from tests.support.databases import BACKENDS, migrated

OWNER = "key_owner"
ENDPOINT = "/v1/chat/completions"


@dataclass
class Rig:
    engine: AsyncEngine
    clock: FakeClock

    def parts(
        self, limits: QueueLimits | None = None, **batch: Any
    ) -> tuple[SqlJobQueue, BatchService, BatchDriver]:
        settings = JobBatchSettings(**batch)
        store = BatchStore(self.engine)
        queue = SqlJobQueue(self.engine, limits=limits, clock=self.clock)
        service = BatchService(store, settings, clock=self.clock)
        driver = BatchDriver(store, queue, settings, max_attempts=3, clock=self.clock)
        return queue, service, driver


@pytest.fixture(params=BACKENDS)
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with migrated(request.param, tmp_path) as db:
        yield Rig(db.engine, FakeClock())


def _file(n: int) -> bytes:
    rows = [
        {"custom_id": f"r{i}", "method": "POST", "url": ENDPOINT,
         "body": {"model": "chat", "messages": [{"role": "user", "content": str(i)}]}}
        for i in range(n)
    ]  # fmt: skip
    return b"\n".join(orjson.dumps(r) for r in rows)


async def _batch(service: BatchService, n: int) -> str:
    f = await service.upload(OWNER, "batch", "in.jsonl", _file(n), None)
    b = await service.create(OWNER, None, {"input_file_id": f.id, "endpoint": ENDPOINT,
                                           "completion_window": "24h"})  # fmt: skip
    return b.id


async def _run_one(queue: SqlJobQueue) -> Job:
    (job,) = await queue.lease("w", 1, 30.0)
    assert await queue.complete(job.id, "w", {"ok": job.metadata.get("custom_id")}, "0.001", 200)
    return job


async def test_a_batch_expires_after_its_window_keeping_what_ran(rig: Rig) -> None:
    queue, service, driver = rig.parts(max_in_flight=2)
    batch_id = await _batch(service, 3)
    assert await driver.tick() == 1  # validating -> in_progress
    await driver.tick()  # two lines enqueued
    assert (await queue.depth())["total"] == 2
    assert (await queue.depth())["by_priority"] == {-20: 2}
    ran = await _run_one(queue)
    leased = (await queue.lease("w", 1, 30.0))[0]

    rig.clock.advance(24 * 3600 + 1)
    await driver.tick()
    b = await service.get(OWNER, batch_id)
    assert b.status == "expired" and b.times["expired_at"] is not None
    assert (b.total, b.completed, b.failed) == (3, 1, 2)
    assert (await queue.get(leased.id)) is not None
    assert (await queue.get(leased.id)).status is JobStatus.CANCELLED  # type: ignore[union-attr]
    assert b.output_file_id and b.error_file_id
    _, out = await service.content(OWNER, b.output_file_id)
    _, err = await service.content(OWNER, b.error_file_id)
    (ok,) = [orjson.loads(x) for x in out.splitlines()]
    assert ok["custom_id"] == ran.metadata["custom_id"]
    assert ok["response"] == {"status_code": 200, "request_id": f"{ran.id}-1",
                              "body": {"ok": ran.metadata["custom_id"]}}  # fmt: skip
    errors = [orjson.loads(x) for x in err.splitlines()]
    assert [e["error"]["code"] for e in errors] == ["batch_expired", "batch_expired"]
    assert await driver.tick() == 0  # nothing active any more


async def test_lines_are_enqueued_once_per_custom_id(rig: Rig) -> None:
    queue, service, driver = rig.parts()
    batch_id = await _batch(service, 3)
    await driver.tick()
    # A driver that enqueued line r1 and died before recording it:
    early, created = await queue.enqueue(
        Job(owner=OWNER, endpoint=ENDPOINT, body={}, priority=-20,
            idempotency_key=idempotency_key(batch_id, "r1"))
    )  # fmt: skip
    assert created
    await driver.tick()
    assert (await queue.depth())["total"] == 3
    items = await driver.store.items(batch_id, QUEUED, 10)
    assert [i.job_id for i in items if i.custom_id == "r1"] == [early.id]
    for _ in range(3):
        await _run_one(queue)
    await driver.tick()  # collect, then finalize
    b = await service.get(OWNER, batch_id)
    assert b.status == "completed" and (b.completed, b.failed) == (3, 0)
    finished = await driver.tick()
    assert finished == 0


async def test_a_full_queue_holds_lines_back_without_failing_them(rig: Rig) -> None:
    queue, service, driver = rig.parts(QueueLimits(max_depth_per_tenant=1))
    batch_id = await _batch(service, 3)
    await driver.tick()
    await driver.tick()
    assert (await queue.depth())["total"] == 1
    assert await driver.store.count(batch_id, PENDING) == 2
    for _ in range(3):
        await _run_one(queue)
        await driver.tick()
    await driver.tick()
    b = await service.get(OWNER, batch_id)
    assert b.status == "completed" and (b.total, b.completed) == (3, 3)
    _, out = await service.content(OWNER, b.output_file_id or "")
    assert [orjson.loads(x)["custom_id"] for x in out.splitlines()] == ["r0", "r1", "r2"]


async def test_one_driver_at_a_time_and_a_dead_drivers_batch_is_taken_over(rig: Rig) -> None:
    _, service, first = rig.parts()
    _, _, second = rig.parts()
    batch_id = await _batch(service, 1)
    assert await first.tick() == 1
    assert await second.tick() == 0  # claimed by the first
    rig.clock.advance(first.lease_s + 1)  # the first one died
    assert await second.tick() == 1
    b = await service.get(OWNER, batch_id)
    assert b.status == "in_progress"


async def test_cancel_before_the_batch_starts(rig: Rig) -> None:
    queue, service, driver = rig.parts()
    batch_id = await _batch(service, 2)
    b = await service.cancel(OWNER, batch_id)
    assert b.status == "cancelling"
    await driver.tick()
    b = await service.get(OWNER, batch_id)
    assert b.status == "cancelled" and b.output_file_id is None and b.error_file_id is None
    assert (await queue.depth())["total"] == 0
