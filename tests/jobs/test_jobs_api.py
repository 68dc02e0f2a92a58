"""The Jobs API over real HTTP: a real `interlock serve` (with its embedded worker pool)
in front of the simulated provider, its SQLite store, and a real webhook receiver."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
import standardwebhooks

from interlock.sim import SimControl
from tests.jobs.support import (
    ADMIN,
    CHAT_BODY,
    HOOK_SECRET,
    MSG,
    chat_job,
    client,
    db_rows,
    jobs_config,
    make_key,
    start_receiver,
    submit,
    wait_job,
    wait_ledger,
)
from tests.support.gateway import MASTER_KEY, GatewayProcess
from tests.support.metrics import scrape, value


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway that runs jobs (jobs.run_in_serve, the default)."""
    work = tmp_path_factory.mktemp("jobs-gw")
    g = GatewayProcess(jobs_config(sim_url, work / "state"), work).start()
    yield g
    g.stop()


@pytest.fixture(scope="module")
def idle(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway that accepts jobs but runs none (no worker), with a small tenant limit
    and no webhook allowlist or configured secret."""
    work = tmp_path_factory.mktemp("jobs-idle")
    cfg = jobs_config(
        sim_url, work / "state", run_in_serve=False, max_depth_per_tenant=2, webhooks={}
    )
    g = GatewayProcess(cfg, work).start()
    yield g
    g.stop()


def state(g: GatewayProcess) -> Path:
    return g.workdir / "state"


def test_a_job_gives_what_the_sync_call_gives_and_charges_the_submitting_key(
    gw: GatewayProcess, sim: SimControl
) -> None:
    key_id, key = make_key(gw, user="alice")
    with client(gw, key) as c:
        r = c.post("/v1/jobs", json=chat_job(metadata={"batch": "nightly"}))
        assert r.status_code == 202
        queued = r.json()
        assert queued["object"] == "job" and queued["status"] == "queued"
        assert r.headers["location"] == queued["status_url"] == f"/v1/jobs/{queued['id']}"
        assert queued["metadata"] == {"batch": "nightly"}

        done = wait_job(c, queued["id"])
        sync = c.post("/v1/chat/completions", json=CHAT_BODY)

    assert done["status"] == "succeeded" and done["attempts"] == 1 and done["error"] is None
    result = done["result"]
    assert result.keys() == sync.json().keys()
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"]["role"] == "assistant"
    assert Decimal(done["cost_usd"]) == Decimal(sync.headers["x-interlock-cost-usd"])
    assert done["started_at"] >= done["created_at"] and done["finished_at"] >= done["started_at"]

    row = wait_ledger(state(gw), f"{queued['id']}-1")
    assert row["key_id"] == key_id and row["user_id"] == "alice"
    assert Decimal(str(row["cost_usd"])) == Decimal(done["cost_usd"])


def test_every_endpoint_returns_its_own_response_shape(gw: GatewayProcess) -> None:
    with client(gw) as c:
        msg = submit(c, {"endpoint": "/v1/messages",
                         "body": {"model": "chat", "max_tokens": 50, "messages": MSG}})  # fmt: skip
        emb = submit(c, {"endpoint": "/v1/embeddings",
                         "body": {"model": "sim-embed", "input": ["a", "b"]}})  # fmt: skip
        msg, emb = wait_job(c, msg["id"]), wait_job(c, emb["id"])
    assert msg["status"] == "succeeded" and msg["result"]["type"] == "message"
    assert msg["result"]["role"] == "assistant" and msg["result"]["content"][0]["type"] == "text"
    assert emb["status"] == "succeeded" and emb["result"]["object"] == "list"
    assert len(emb["result"]["data"]) == 2


def test_a_key_sees_only_its_own_jobs(gw: GatewayProcess) -> None:
    _a_id, a = make_key(gw, user="a")
    _b_id, b = make_key(gw, user="b")
    with client(gw, a) as ca, client(gw, b) as cb:
        mine = [submit(ca)["id"] for _ in range(3)]
        theirs = submit(cb)["id"]

        listed = ca.get("/v1/jobs").json()
        assert listed["object"] == "list" and listed["has_more"] is False
        assert [j["id"] for j in listed["data"]] == mine[::-1]  # newest first

        page = ca.get("/v1/jobs", params={"limit": 2}).json()
        assert [j["id"] for j in page["data"]] == mine[:0:-1] and page["has_more"] is True
        rest = ca.get("/v1/jobs", params={"limit": 2, "after": page["last_id"]}).json()
        assert [j["id"] for j in rest["data"]] == mine[:1] and rest["has_more"] is False

        for job_id in mine:
            wait_job(ca, job_id)
        assert len(ca.get("/v1/jobs", params={"status": "succeeded"}).json()["data"]) == 3
        assert ca.get("/v1/jobs", params={"status": "queued"}).json()["data"] == []
        assert ca.get("/v1/jobs", params={"status": "bogus"}).status_code == 400

        # Another key's job does not exist, as far as this key can tell.
        for r in (ca.get(f"/v1/jobs/{theirs}"), ca.delete(f"/v1/jobs/{theirs}")):
            assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
        unknown = ca.get("/v1/jobs/job_doesnotexist").json()["error"]
        foreign = ca.get(f"/v1/jobs/{theirs}").json()["error"]
        assert {**unknown, "message": ""} == {**foreign, "message": ""}
        assert theirs not in {j["id"] for j in listed["data"]}
    with httpx.Client(base_url=gw.url) as anon:
        assert anon.get("/v1/jobs").status_code == 401


def test_the_same_idempotency_key_returns_the_same_job(gw: GatewayProcess) -> None:
    _id, key = make_key(gw)
    with client(gw, key) as c:
        first = c.post("/v1/jobs", json=chat_job(), headers={"Idempotency-Key": "order-42"})
        again = c.post("/v1/jobs", json=chat_job(), headers={"Idempotency-Key": "order-42"})
        other = c.post("/v1/jobs", json=chat_job(), headers={"Idempotency-Key": "order-43"})
    assert first.status_code == 202
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] != other.json()["id"]


@pytest.mark.parametrize(
    ("job", "status", "code", "param"),
    [
        (chat_job(body={"model": "chat", "messages": []}), 400, "invalid_value", "body.messages"),
        (chat_job(body={"model": "chat"}), 400, "missing_required_parameter", "body.messages"),
        (chat_job(body={**CHAT_BODY, "stream": True}), 400, "stream_not_supported", "body.stream"),
        (chat_job(body={**CHAT_BODY, "api_base": "http://evil"}), 400, "forbidden_parameter", "body.api_base"),
        (chat_job(body={**CHAT_BODY, "model": "no-such-model"}), 404, "model_not_found", "model"),
        ({"endpoint": "/v1/messages", "body": {"model": "chat", "messages": MSG}}, 400, "invalid_request", "body.max_tokens"),
        ({"endpoint": "/v1/images", "body": {}}, 400, "invalid_value", "endpoint"),
        (chat_job(colour="red"), 400, "unknown_field", "colour"),
        (chat_job(priority="urgent"), 400, "invalid_value", "priority"),
        (chat_job(deadline="2001-01-01T00:00:00Z"), 400, "deadline_in_past", "deadline"),
        (chat_job(deadline="tomorrow"), 400, "invalid_value", "deadline"),
        (chat_job(metadata={"x": "y" * 5000}), 400, "invalid_value", "metadata"),
        (chat_job(callback_url="http://169.254.169.254/latest"), 400, "invalid_callback_url", "callback_url"),
        (chat_job(callback_url="ftp://example.com/x"), 400, "invalid_callback_url", "callback_url"),
    ],
)  # fmt: skip
def test_a_bad_submission_is_refused_at_submit(
    gw: GatewayProcess, job: dict[str, object], status: int, code: str, param: str
) -> None:
    with client(gw) as c:
        before = len(c.get("/v1/jobs", params={"limit": 100}).json()["data"])
        r = c.post("/v1/jobs", json=job)
        assert (r.status_code, r.json()["error"]["code"], r.json()["error"]["param"]) == (
            status,
            code,
            param,
        ), r.text
        assert len(c.get("/v1/jobs", params={"limit": 100}).json()["data"]) == before


def test_a_loopback_callback_needs_the_allowlist(idle: GatewayProcess, gw: GatewayProcess) -> None:
    job = chat_job(callback_url="http://127.0.0.1:9/hook")
    with client(idle) as c:
        r = c.post("/v1/jobs", json=job)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_callback_url"
    with client(gw) as c:  # jobs.webhooks.allow_hosts: ["127.0.0.1"]
        assert c.post("/v1/jobs", json=job).status_code == 202


def test_cancelling_a_queued_job(idle: GatewayProcess) -> None:
    _id, key = make_key(idle)
    with client(idle, key) as c:
        job = submit(c, chat_job(priority="low"))
        r = c.delete(f"/v1/jobs/{job['id']}")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert r.json()["finished_at"] is not None
        assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
        assert c.delete(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"


def test_a_full_queue_answers_429_with_retry_after(idle: GatewayProcess) -> None:
    _id, key = make_key(idle)  # jobs.max_depth_per_tenant: 2
    with client(idle, key) as c:
        first, _second = submit(c), submit(c)
        r = c.post("/v1/jobs", json=chat_job())
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        assert int(r.headers["retry-after"]) >= 1
        # Room again once a queued job leaves the queue.
        c.delete(f"/v1/jobs/{first['id']}")
        assert c.post("/v1/jobs", json=chat_job()).status_code == 202


async def test_a_finished_job_is_signed_and_delivered_to_its_callback(
    gw: GatewayProcess, free_port: int
) -> None:
    receiver, runner = await start_receiver(free_port)
    try:
        async with httpx.AsyncClient(base_url=gw.url, headers=ADMIN, timeout=30) as c:
            r = await c.post("/v1/jobs", json=chat_job(callback_url=receiver.url))
            job_id = r.json()["id"]
            (headers, body), *_ = await receiver.wait_for(1)
            payload = standardwebhooks.Webhook(HOOK_SECRET).verify(body, headers)
            assert payload["type"] == "job.succeeded"
            assert headers["webhook-id"] == f"{job_id}-succeeded"
            data = payload["data"]
            assert data["id"] == job_id and data["status"] == "succeeded"
            assert data["result"]["object"] == "chat.completion"
            assert "callback_url" not in data and MASTER_KEY not in body.decode()
            for _ in range(100):
                view = (await c.get(f"/v1/jobs/{job_id}")).json()
                if view["webhook_state"] == "delivered":
                    break
                await asyncio.sleep(0.05)
            assert view["webhook_state"] == "delivered"
    finally:
        await runner.cleanup()


def test_a_retryable_failure_is_retried(gw: GatewayProcess, sim: SimControl) -> None:
    sim.set_faults([{"type": "status", "status": 500, "count": 1}])
    with client(gw) as c:
        job = wait_job(c, submit(c)["id"])
    assert job["status"] == "succeeded" and job["attempts"] == 2
    # Each attempt is its own ledger row, told apart by the request id.
    failed = wait_ledger(state(gw), f"{job['id']}-1")
    ok = wait_ledger(state(gw), f"{job['id']}-2")
    assert failed["status"] == 502 and ok["outcome"] == "ok"


def test_a_non_retryable_failure_is_dead_lettered_and_can_be_requeued(
    gw: GatewayProcess, sim: SimControl
) -> None:
    sim.set_faults([{"type": "status", "status": 400, "count": 1}])
    with client(gw) as c:
        job = wait_job(c, submit(c)["id"])
        assert job["status"] == "failed" and job["attempts"] == 1
        assert job["error"]["code"] == "upstream_bad_request" and job["result"] is None

        dead = c.get("/admin/jobs/dead").json()["data"]
        assert job["id"] in {d["id"] for d in dead}
        r = c.post(f"/admin/jobs/{job['id']}/requeue")
        assert r.status_code == 200 and r.json()["status"] == "queued"
        assert wait_job(c, job["id"])["status"] == "succeeded"
        again = c.post(f"/admin/jobs/{job['id']}/requeue")
        assert again.status_code == 400 and again.json()["error"]["code"] == "not_dead_letter"
    _id, key = make_key(gw)
    with client(gw, key) as c:
        assert c.get("/admin/jobs/dead").status_code == 403
        assert c.post(f"/admin/jobs/{job['id']}/requeue").status_code == 403


def test_queue_and_job_metrics(gw: GatewayProcess, idle: GatewayProcess) -> None:
    _id, key = make_key(idle)
    with client(idle, key) as c:
        submit(c, chat_job(priority="high"))
    with client(idle) as c:
        for _ in range(50):  # the gauges are refreshed every jobs.metrics_interval_s
            samples = scrape(c.get("/metrics").text)
            if value(samples, "interlock_jobs_queue_depth", priority="10") >= 1:
                break
            time.sleep(0.1)
        assert value(samples, "interlock_jobs_queue_depth", priority="10") >= 1
        assert ("interlock_jobs_oldest_queued_age_seconds", frozenset()) in samples
    with client(gw) as c:
        wait_job(c, submit(c)["id"])
        samples = scrape(c.get("/metrics").text)
    assert value(samples, "interlock_jobs_finished_total", status="succeeded") >= 1
    assert value(samples, "interlock_jobs_wait_seconds_count") >= 1


def test_a_generated_webhook_secret_is_kept_and_shown_to_admins(idle: GatewayProcess) -> None:
    path = state(idle) / "webhook_secret"
    with client(idle) as c:
        r = c.get("/admin/jobs/webhook-secret")
    assert r.status_code == 200 and r.json()["source"] == "state_dir"
    assert r.json()["secret"].startswith("whsec_") and path.read_text() == r.json()["secret"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    standardwebhooks.Webhook(r.json()["secret"])  # a valid signing secret
    _id, key = make_key(idle)
    with client(idle, key) as c:
        assert c.get("/admin/jobs/webhook-secret").status_code == 403


def test_the_job_store_holds_no_secret(gw: GatewayProcess) -> None:
    _id, key = make_key(gw)
    with client(gw, key) as c:
        wait_job(c, submit(c)["id"])
    rows = db_rows(state(gw), "SELECT * FROM jobs")
    assert rows and key not in orjson.dumps(rows, default=str).decode()
