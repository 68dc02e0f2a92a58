"""The simulator's OpenAI organization usage API: the published shape, from its ledger."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from interlock.sim import SimControl

ADMIN = {"Authorization": "Bearer sk-admin-test"}


@pytest.fixture
def http(sim: SimControl) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=10.0) as client:
        yield client


def chat(http: httpx.Client, model: str, text: str) -> None:
    r = http.post(
        "/v1/chat/completions",
        headers={"Authorization": "Bearer k"},
        json={"model": model, "messages": [{"role": "user", "content": text}]},
    )
    assert r.status_code == 200


def test_usage_per_minute_and_model_matches_the_ledger(http: httpx.Client, sim: SimControl) -> None:
    for i in range(3):
        chat(http, "sim-small", f"hello number {i}")
    chat(http, "sim-medium", "one more")
    r = http.post(
        "/v1/embeddings",
        headers={"Authorization": "Bearer k"},
        json={"model": "sim-embed", "input": ["a b c", "d e"]},
    )
    assert r.status_code == 200
    r = http.post(
        "/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={
            "model": "sim-claude",
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "not OpenAI's"}],
        },
    )
    assert r.status_code == 200
    now = int(time.time())
    start = (now - 120) // 60 * 60
    got = http.get(
        "/v1/organization/usage/completions",
        headers=ADMIN,
        params={
            "start_time": start,
            "end_time": start + 240,
            "bucket_width": "1m",
            "group_by": ["model"],
        },
    ).json()
    assert got["object"] == "page" and got["has_more"] is False and got["next_page"] is None
    assert [b["end_time"] - b["start_time"] for b in got["data"]] == [60] * 4
    assert all(b["object"] == "bucket" for b in got["data"])
    totals: dict[str, list[int]] = {}
    for b in got["data"]:
        for res in b["results"]:
            assert res["object"] == "organization.usage.completions.result"
            t = totals.setdefault(res["model"], [0, 0, 0])
            t[0] += res["input_tokens"]
            t[1] += res["output_tokens"]
            t[2] += res["num_model_requests"]
    ledger = sim.ledger()["by_model"]
    assert set(totals) == {"sim-small", "sim-medium"}  # no embeddings, no Anthropic traffic
    for model, (inp, out, reqs) in totals.items():
        m = ledger[model]
        assert (inp, out, reqs) == (m["prompt_tokens"], m["completion_tokens"], m["requests"])
    emb = http.get(
        "/v1/organization/usage/embeddings",
        headers=ADMIN,
        params={"start_time": start, "end_time": start + 240, "bucket_width": "1m"},
    ).json()
    rows = [res for b in emb["data"] for res in b["results"]]
    assert sum(r["input_tokens"] for r in rows) == ledger["sim-embed"]["prompt_tokens"]
    assert all(r["model"] is None for r in rows)  # not grouped by model: one result per bucket


def test_pages_and_refusals(http: httpx.Client) -> None:
    chat(http, "sim-small", "paged")
    start = (int(time.time()) - 120) // 60 * 60
    params = {"start_time": start, "end_time": start + 240, "bucket_width": "1m", "limit": 3}
    first = http.get("/v1/organization/usage/completions", headers=ADMIN, params=params).json()
    assert len(first["data"]) == 3 and first["has_more"] and first["next_page"]
    rest = http.get(
        "/v1/organization/usage/completions",
        headers=ADMIN,
        params={**params, "page": first["next_page"]},
    ).json()
    assert len(rest["data"]) == 1 and not rest["has_more"]
    assert rest["data"][0]["start_time"] == first["data"][-1]["end_time"]
    reqs = sum(
        r["num_model_requests"] for p in (first, rest) for b in p["data"] for r in b["results"]
    )
    assert reqs == 1
    assert http.get("/v1/organization/usage/completions", params=params).status_code == 401
    bad = http.get("/v1/organization/usage/completions", headers=ADMIN, params={"limit": 2})
    assert bad.status_code == 400  # start_time is required
    too_many = {**params, "limit": 5000}
    assert (
        http.get("/v1/organization/usage/completions", headers=ADMIN, params=too_many).status_code
        == 400
    )
