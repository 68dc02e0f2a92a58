"""Crashes lose no job: workers SIGKILLed mid-run, and a gateway restarted mid-job.

At-least-once means a job whose worker died runs again elsewhere once its lease runs
out; the queue keeps the first result and counts later ones as duplicates.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

from interlock.sim import SimControl
from tests.jobs.support import (
    ADMIN,
    HOOK_SECRET,
    WorkerProcess,
    chat_job,
    client,
    db_rows,
    jobs_config,
    start_receiver,
    wait_job,
)
from tests.support.gateway import GatewayProcess

pytestmark = pytest.mark.slow

N = 1000


def counts(state: Path) -> dict[str, int]:
    rows = db_rows(state, "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


def wait_succeeded(state: Path, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while counts(state).get("succeeded", 0) < n:
        assert time.monotonic() < deadline, counts(state)
        time.sleep(0.1)


@pytest.fixture
def api(sim_url: str, tmp_path: Path, sim: SimControl) -> Iterator[GatewayProcess]:
    cfg = jobs_config(
        sim_url, tmp_path / "state", run_in_serve=False, lease_s=2.0, max_attempts=5, webhooks={}
    )
    cfg["auth"]["cache_ttl_s"] = 30  # keys are looked up once per process, not per job
    g = GatewayProcess(cfg, tmp_path).start()
    yield g
    g.stop()


@pytest.mark.long  # ~15 s of replicas/processes: run by make drills (.ci/run)
def test_sigkilled_workers_lose_no_job(api: GatewayProcess) -> None:
    state = api.workdir / "state"
    t0 = time.monotonic()

    def submit_many(indices: range) -> list[str]:
        with client(api) as c:
            return [c.post("/v1/jobs", json=chat_job(metadata={"i": i})).json()["id"]
                    for i in indices]  # fmt: skip

    with ThreadPoolExecutor(4) as pool:
        ids = [
            i for part in pool.map(submit_many, [range(k, N, 4) for k in range(4)]) for i in part
        ]
    assert len(set(ids)) == N
    submitted = time.monotonic() - t0

    assert api.config is not None
    workers: list[WorkerProcess] = []

    def worker() -> WorkerProcess:
        w = WorkerProcess(api.config or {}, api.workdir / "workers", concurrency=16).start()
        workers.append(w)
        return w

    try:
        first, second = worker(), worker()
        wait_succeeded(state, 250, 60)
        first.signal(signal.SIGKILL)  # mid-run: it holds leased, unfinished jobs
        worker()
        wait_succeeded(state, 600, 60)
        second.signal(signal.SIGKILL)
        worker()
        wait_succeeded(state, N, 90)
    finally:
        for w in workers:
            w.stop()
    elapsed = time.monotonic() - t0

    final = counts(state)
    dupes = db_rows(state, "SELECT SUM(duplicate_completions) AS d, MAX(attempts) AS a FROM jobs")[
        0
    ]
    reran = db_rows(state, "SELECT COUNT(*) AS n FROM jobs WHERE attempts > 1")[0]["n"]
    print(
        f"\n{N} jobs: submitted in {submitted:.1f}s, all done in {elapsed:.1f}s; "
        f"2 workers SIGKILLed; statuses {final}; re-run after a kill: {reran}; "
        f"duplicate completions: {dupes['d']}; max attempts: {dupes['a']}"
    )
    assert final == {"succeeded": N}  # 0 lost, none failed
    rows = db_rows(state, "SELECT id, result FROM jobs WHERE result IS NULL")
    assert rows == []


@pytest.fixture
def serving(sim_url: str, tmp_path: Path, sim: SimControl) -> dict[str, Any]:
    # drain_timeout_s 0.2: a stopping gateway hands its running job back to the queue
    # instead of finishing it, so the job really completes in the restarted process.
    return jobs_config(sim_url, tmp_path / "state", drain_timeout_s=0.2)


async def test_a_gateway_restart_between_submit_and_completion(
    serving: dict[str, Any], tmp_path: Path, sim: SimControl, free_port: int
) -> None:
    sim.set_faults([{"type": "latency", "ms": 2500}])
    receiver, runner = await start_receiver(free_port)
    first = GatewayProcess(serving, tmp_path).start()
    second: GatewayProcess | None = None
    try:
        with client(first) as c:
            job = c.post("/v1/jobs", json=chat_job(callback_url=receiver.url)).json()
            wait_job(c, job["id"], until=("running",))
        first.stop()  # SIGTERM mid-job

        second = GatewayProcess(serving, tmp_path).start()
        async with httpx.AsyncClient(base_url=second.url, headers=ADMIN, timeout=30) as c:
            (headers, body), *_ = await receiver.wait_for(1, timeout=30)
            view = (await c.get(f"/v1/jobs/{job['id']}")).json()
        payload = standardwebhooks.Webhook(HOOK_SECRET).verify(body, headers)
        assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job["id"]
        assert view["status"] == "succeeded" and view["attempts"] == 2
        assert view["result"]["object"] == "chat.completion"
    finally:
        first.stop()
        if second is not None:
            second.stop()
        await runner.cleanup()
