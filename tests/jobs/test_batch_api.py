"""The OpenAI Batch API over real HTTP: a real `interlock serve` (with its embedded worker
pool and batch driver) in front of the simulated provider, driven by the official
`openai` SDK where it has a call for the route."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from interlock.sim import SimControl
from tests.jobs.support import MSG, client, jobs_config, make_key
from tests.support.gateway import MASTER_KEY, GatewayProcess

FINISHED = ("completed", "failed", "expired", "cancelled")


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("batch-gw")
    cfg = jobs_config(
        sim_url,
        work / "state",
        concurrency=2,
        batch={"poll_interval_s": 0.1, "max_in_flight": 4, "max_file_bytes": 200_000,
               "max_lines": 50},
    )  # fmt: skip
    g = GatewayProcess(cfg, work).start()
    yield g
    g.stop()


def sdk(g: GatewayProcess, key: str = MASTER_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{g.url}/v1", api_key=key, max_retries=0, timeout=30)


def line(custom_id: str, content: str = "hello", **extra: Any) -> dict[str, Any]:
    body = {"model": "chat", "messages": [{"role": "user", "content": content}]}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": body, **extra}  # fmt: skip


def jsonl(rows: list[Any]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def upload(c: httpx.Client, content: bytes, purpose: str = "batch") -> httpx.Response:
    return c.post(
        "/v1/files",
        data={"purpose": purpose},
        files={"file": ("in.jsonl", content, "application/jsonl")},
    )


def wait_batch(c: openai.OpenAI, batch_id: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        b = c.batches.retrieve(batch_id)
        if b.status in FINISHED:
            return b
        assert time.monotonic() < deadline, f"batch still {b.status}"
        time.sleep(0.1)


def test_the_sdk_runs_a_batch_end_to_end(gw: GatewayProcess, sim: SimControl) -> None:
    _, key = make_key(gw, user="batcher")
    c = sdk(gw, key)
    rows = [line(f"req-{i}", f"question {i}") for i in range(6)]
    sim.set_faults([{"type": "status", "status": 400, "count": 1}])  # one line fails
    f = c.files.create(file=("requests.jsonl", io.BytesIO(jsonl(rows))), purpose="batch")
    assert f.object == "file" and f.purpose == "batch" and f.bytes == len(jsonl(rows))
    assert c.files.retrieve(f.id).filename == "requests.jsonl"
    assert c.files.content(f.id).content == jsonl(rows)

    b = c.batches.create(
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"nightly": "yes"},
    )
    assert b.status == "validating" and b.metadata == {"nightly": "yes"}
    assert b.expires_at is not None and b.expires_at - b.created_at == 24 * 3600
    done = wait_batch(c, b.id)
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (6, 5)
    assert done.request_counts.failed == 1
    assert done.in_progress_at and done.finalizing_at and done.completed_at

    assert done.output_file_id and done.error_file_id
    out = [orjson.loads(x) for x in c.files.content(done.output_file_id).content.splitlines()]
    err = [orjson.loads(x) for x in c.files.content(done.error_file_id).content.splitlines()]
    assert sorted(o["custom_id"] for o in out + err) == sorted(r["custom_id"] for r in rows)
    for o in out:
        assert o["id"].startswith("batch_req_") and o["error"] is None
        assert o["response"]["status_code"] == 200
        assert o["response"]["body"]["object"] == "chat.completion"
        assert o["response"]["request_id"].startswith("job_")
    assert err[0]["response"]["status_code"] == 400
    assert err[0]["response"]["body"]["error"]["code"] == "upstream_bad_request"
    assert c.files.retrieve(done.output_file_id).purpose == "batch_output"

    # Lists show the key's own objects; the lines ran as low-priority jobs of this key.
    assert [x.id for x in c.batches.list()] == [b.id]
    assert {x.id for x in c.files.list()} == {f.id, done.output_file_id, done.error_file_id}
    with client(gw, key) as h:
        jobs = h.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert len(jobs) == 6
    assert {j["priority"] for j in jobs} == {-20}
    assert {j["metadata"]["batch_id"] for j in jobs} == {b.id}

    deleted = c.files.delete(f.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        c.files.retrieve(f.id)


def test_uploads_are_checked_line_by_line(gw: GatewayProcess) -> None:
    _, key = make_key(gw, user="checker", models=["chat"])
    rows: list[Any] = [
        line("a"),
        "not an object",
        line("a"),  # duplicate custom_id
        {**line("c"), "url": "/v1/messages"},
        {**line("d"), "method": "GET"},
        line("e") | {"body": {"model": "chat"}},  # no messages
        line("f") | {"body": {"model": "claude", "messages": MSG}},  # not this key's model
        line("g") | {"extra": 1},
    ]
    content = jsonl(rows).replace(b'"not an object"', b"{not json")
    with client(gw, key) as c:
        r = upload(c, content)
        assert r.status_code == 400, r.text
        e = r.json()["error"]
        assert e["code"] == "invalid_batch_file" and e["type"] == "invalid_request_error"
        assert e["bad_lines"] == 7
        got = {x["line"]: (x["code"], x["param"]) for x in e["lines"]}
        assert got == {
            2: ("invalid_json", None),
            3: ("duplicate_custom_id", "custom_id"),
            4: ("invalid_url", "url"),
            5: ("invalid_method", "method"),
            6: ("missing_required_parameter", "body.messages"),
            7: ("model_not_allowed", "body.model"),
            8: ("unknown_field", "extra"),
        }
        assert e["message"].startswith("line 2:")

        assert upload(c, jsonl([line("x")]), purpose="fine-tune").json()["error"]["param"] == (
            "purpose"
        )
        empty = upload(c, b"\n\n")
        assert (empty.status_code, empty.json()["error"]["code"]) == (400, "empty_file")
        many = upload(c, jsonl([line(f"n{i}") for i in range(51)]))
        assert (many.status_code, many.json()["error"]["code"]) == (400, "too_many_lines")
        big = upload(c, jsonl([line("big", "x" * 300_000)]))
        assert (big.status_code, big.json()["error"]["code"]) == (413, "payload_too_large")
        big = upload(c, jsonl([line("big", "x" * 210_000)]))
        assert (big.status_code, big.json()["error"]["code"]) == (413, "file_too_large")
        wrong = c.post("/v1/files", json={"purpose": "batch"})
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (415, "unsupported_media_type")
        missing = c.post("/v1/files", data={"purpose": "batch"}, files={"x": ("a", b"b")})
        assert missing.status_code == 400
        assert c.get("/v1/files").json()["data"] == []


def test_batches_and_files_of_another_key_are_not_found(gw: GatewayProcess) -> None:
    _, alice = make_key(gw, user="alice-b")
    _, bob = make_key(gw, user="bob-b")
    a = sdk(gw, alice)
    f = a.files.create(file=("in.jsonl", io.BytesIO(jsonl([line("one")]))), purpose="batch")
    b = a.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                         completion_window="24h")  # fmt: skip
    with client(gw, bob) as c:
        for method, path in [
            ("GET", f"/v1/files/{f.id}"),
            ("GET", f"/v1/files/{f.id}/content"),
            ("DELETE", f"/v1/files/{f.id}"),
            ("GET", f"/v1/batches/{b.id}"),
            ("POST", f"/v1/batches/{b.id}/cancel"),
        ]:
            r = c.request(method, path)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]["code"] in ("file_not_found", "batch_not_found")
        r = c.post("/v1/batches", json={"input_file_id": f.id, "endpoint": "/v1/chat/completions",
                                        "completion_window": "24h"})  # fmt: skip
        assert (r.status_code, r.json()["error"]["code"]) == (404, "file_not_found")
        assert c.get("/v1/files").json()["data"] == []
        assert c.get("/v1/batches").json()["data"] == []
    assert wait_batch(a, b.id).status == "completed"


def test_a_batch_whose_lines_do_not_match_its_endpoint_fails(gw: GatewayProcess) -> None:
    c = sdk(gw)
    f = c.files.create(file=("in.jsonl", io.BytesIO(jsonl([line("one")]))), purpose="batch")
    b = c.batches.create(input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h")
    done = wait_batch(c, b.id)
    assert done.status == "failed" and done.failed_at
    assert done.errors is not None and done.errors.data
    assert (done.errors.data[0].code, done.errors.data[0].line) == ("mismatched_url", 1)
    assert done.output_file_id is None and done.error_file_id is None
    with client(gw) as h:
        for body, param in [
            ({"input_file_id": f.id, "endpoint": "/v1/chat/completions",
              "completion_window": "1h"}, "completion_window"),
            ({"input_file_id": f.id, "endpoint": "/v1/messages", "completion_window": "24h"},
             "endpoint"),
            ({"input_file_id": f.id, "endpoint": "/v1/embeddings", "completion_window": "24h",
              "metadata": {"k": 1}}, "metadata"),
            ({"endpoint": "/v1/embeddings", "completion_window": "24h"}, "input_file_id"),
            ({"input_file_id": f.id, "endpoint": "/v1/embeddings", "completion_window": "24h",
              "bogus": 1}, "bogus"),
        ]:  # fmt: skip
            r = h.post("/v1/batches", json=body)
            assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
        assert h.get("/v1/batches/batch_nope").status_code == 404
        assert h.get("/v1/batches", params={"limit": 0}).status_code == 400


def test_cancelling_keeps_what_ran_and_reports_the_rest(
    gw: GatewayProcess, sim: SimControl
) -> None:
    c = sdk(gw)
    sim.set_faults([{"type": "latency", "ms": 400}])
    try:
        rows = [line(f"c{i}") for i in range(12)]
        f = c.files.create(file=("in.jsonl", io.BytesIO(jsonl(rows))), purpose="batch")
        b = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                             completion_window="24h")  # fmt: skip
        deadline = time.monotonic() + 10
        while c.batches.retrieve(b.id).status == "validating":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        cancelling = c.batches.cancel(b.id)
        assert cancelling.status in ("cancelling", "cancelled")
        done = wait_batch(c, b.id)
    finally:
        sim.set_faults([])
    assert done.status == "cancelled" and done.cancelling_at and done.cancelled_at
    counts = done.request_counts
    assert counts is not None and counts.total == 12
    assert counts.completed + counts.failed == 12 and counts.failed >= 8
    assert done.error_file_id is not None
    errs = [orjson.loads(x) for x in c.files.content(done.error_file_id).content.splitlines()]
    assert {e["error"]["code"] for e in errs} == {"batch_cancelled"}
    assert all(e["response"] is None for e in errs)
    # Cancelling a finished batch changes nothing.
    assert c.batches.cancel(b.id).status == "cancelled"


def test_files_list_pages_and_filters(gw: GatewayProcess) -> None:
    _, key = make_key(gw, user="pager")
    c = sdk(gw, key)
    ids = [
        c.files.create(file=(f"{i}.jsonl", io.BytesIO(jsonl([line("x")]))), purpose="batch").id
        for i in range(3)
    ]
    with client(gw, key) as h:
        first = h.get("/v1/files", params={"limit": 2}).json()
        assert [x["id"] for x in first["data"]] == ids[::-1][:2] and first["has_more"]
        rest = h.get("/v1/files", params={"limit": 2, "after": first["last_id"]}).json()
        assert [x["id"] for x in rest["data"]] == [ids[0]] and not rest["has_more"]
        asc = h.get("/v1/files", params={"order": "asc"}).json()
        assert [x["id"] for x in asc["data"]] == ids
        assert h.get("/v1/files", params={"purpose": "batch_output"}).json()["data"] == []
    assert [f.id for f in c.files.list()] == ids[::-1]
