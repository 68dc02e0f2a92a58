"""A stored value never breaks a listing; a refused one is a clean 4xx (issue 12, item 5).

Hypothesis generates the fields an API stores — budgets (amounts, scopes, windows, time
zones), jobs (deadline, metadata, priority), batches (completion window, metadata,
endpoint), keys (names, tags, models, metadata, rate limits), app-cache entries (names,
TTL, bodies) — as any JSON value, with the interesting valid values mixed in. Against a
real gateway: whatever is accepted, every listing and the dashboard data answer 200 with
JSON; whatever is refused is a 4xx with an OpenAI-style error body and a stable code.

Values stored before today's bounds existed (an older version accepted a budget of
1.2e308 USD and a job deadline of 1e300) are written straight into the database, and
the listings, the dashboard and the request path must still answer.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
MSG = [{"role": "user", "content": "hi"}]
CODE = re.compile(r"^[a-z][a-z0-9_]*$")
PROPERTY = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any JSON value, biased towards what breaks stores and renderers: huge and tiny numbers,
# 64-bit edges, empty and long strings, nesting.
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, -1, 1, 2**53 + 1, 2**63 - 1, 2**64 - 1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e300, 1.2e308, -1e308, 5e-324, 1e9, 1e9 + 0.5, 1e10, 31_622_401.0]),
    st.text(max_size=40),
    st.sampled_from(["", " ", "24h", "1e308", "NaN", "Infinity", "-1", "UTC", "\u0000"]),
)
json_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


# Numbers at the edges of what stores, Decimal contexts, JSON integers and clocks hold.
extremes = st.one_of(
    st.sampled_from([1e300, 1.2e308, -1e308, 5e-324, 2**53 + 1, 2**63 - 1, 2**64 - 1, 1e10]),
    st.floats(min_value=1e9, max_value=1.7e308),
    st.integers(min_value=2**31, max_value=2**64 - 1),
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A field's value: often a valid one, else an extreme number, anything at all, or
    left out."""
    return st.one_of(valid, valid, extremes, json_values, st.just(_ABSENT))


_ABSENT = object()


def body_of(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not _ABSENT}


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("stored")
    cfg = sim_config(sim_url, work / "state")
    cfg["models"]["embed"] = {"deployments": ["sim-embed"]}
    gateway = GatewayProcess(cfg, work).start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def client(gw: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def user(client: httpx.Client) -> dict[str, str]:
    r = client.post("/admin/keys", json={"name": "stored-values-user"}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['key']}"}


def refused_cleanly(r: httpx.Response) -> None:
    """A 4xx with an OpenAI-style error body and a stable code."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    error = r.json()["error"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    assert error["param"] is None or isinstance(error["param"], str)
    assert isinstance(error["code"], str) and CODE.match(error["code"]), error


def listings_answer(client: httpx.Client, user: dict[str, str]) -> None:
    for path, who in (
        ("/admin/budgets", ADMIN), ("/admin/keys", ADMIN), ("/admin/jobs/dead", ADMIN),
        ("/admin/dashboard/data", ADMIN), ("/admin/budgets/alerts", ADMIN),
        ("/v1/jobs", user), ("/v1/jobs", ADMIN), ("/v1/batches", user), ("/v1/files", user),
        ("/v1/models", user),
    ):  # fmt: skip
        r = client.get(path, headers=who)
        assert r.status_code == 200, (path, r.status_code, r.text[:500])
        assert isinstance(r.json(), dict), path


def stored_or_refused(r: httpx.Response, ok: int) -> bool:
    if r.status_code == ok:
        return True
    refused_cleanly(r)
    return False


# -- budgets ---------------------------------------------------------------------------

_money = st.one_of(
    st.integers(min_value=0, max_value=10**9),
    st.floats(min_value=0, max_value=1e9),
    st.decimals(min_value=0, max_value=10**9, places=4).map(str),
)
_budget_fields = {
    "window": maybe(st.sampled_from(["daily", "weekly", "monthly", "lifetime"])),
    "limit_usd": maybe(_money),
    "budget_usd": maybe(_money),
    "timezone": maybe(st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Kiritimati"])),
}
budget_specs = st.one_of(
    # A tag budget for a tag no request carries: stored and listed, never in the way.
    st.fixed_dictionaries(
        {"scope": st.just("tag"), "subject": st.just("nobody"), **_budget_fields}
    ),
    st.fixed_dictionaries(
        {
            "scope": maybe(st.sampled_from(["key", "user", "team", "tag"])),
            "subject": maybe(st.sampled_from(["nobody", "a" * 200, "ü"])),
            **_budget_fields,
        }
    ),
).map(body_of)


@PROPERTY
@given(spec=budget_specs)
def test_budgets(client: httpx.Client, user: dict[str, str], spec: dict[str, Any]) -> None:
    r = client.post("/admin/budgets", json=spec, headers=ADMIN)
    if stored_or_refused(r, 201):
        budget = r.json()
        for field in ("limit_usd", "budget_usd", "spent_usd", "remaining_usd"):
            assert budget[field] is None or isinstance(budget[field], str)
        assert client.get(f"/admin/budgets/{budget['id']}", headers=ADMIN).status_code == 200
    listings_answer(client, user)


# -- jobs ------------------------------------------------------------------------------

job_fields = st.fixed_dictionaries(
    {
        "deadline": maybe(
            st.one_of(
                st.floats(min_value=1, max_value=366 * 86400),
                st.just("2030-01-01T00:00:00Z"),
                st.floats(min_value=time.time() + 60, max_value=time.time() + 300 * 86400),
            )
        ),
        "metadata": maybe(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
        "priority": maybe(
            st.one_of(st.sampled_from(["high", "normal", "low"]), st.integers(-100, 100))
        ),
    }
).map(body_of)


@PROPERTY
@given(fields=job_fields)
def test_jobs(client: httpx.Client, user: dict[str, str], fields: dict[str, Any]) -> None:
    submission = {"endpoint": "/v1/chat/completions", "body": {"model": "chat", "messages": MSG}, **fields}  # fmt: skip
    r = client.post("/v1/jobs", json=submission, headers=user)
    if stored_or_refused(r, 202):
        job = r.json()
        again = client.get(f"/v1/jobs/{job['id']}", headers=user)
        assert again.status_code == 200 and again.json()["id"] == job["id"]
        for field in ("created_at", "deadline"):
            assert job[field] is None or (isinstance(job[field], int) and abs(job[field]) < 2**53)
    listings_answer(client, user)


# -- batches ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch_file(client: httpx.Client, user: dict[str, str]) -> str:
    line = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "chat", "messages": MSG}}  # fmt: skip
    files = {"file": ("in.jsonl", json.dumps(line).encode() + b"\n", "application/jsonl")}
    r = client.post("/v1/files", data={"purpose": "batch"}, files=files, headers=user)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


batch_fields = st.fixed_dictionaries(
    {
        "endpoint": maybe(st.sampled_from(["/v1/chat/completions", "/v1/embeddings"])),
        "completion_window": maybe(st.just("24h")),
        "metadata": maybe(
            st.dictionaries(st.text(max_size=64), st.text(max_size=512), max_size=16)
        ),
    }
).map(body_of)


@PROPERTY
@given(fields=batch_fields)
def test_batches(client: httpx.Client, user: dict[str, str], batch_file: str,
                 fields: dict[str, Any]) -> None:  # fmt: skip
    r = client.post("/v1/batches", json={"input_file_id": batch_file, **fields}, headers=user)
    if stored_or_refused(r, 200):
        batch = r.json()
        assert client.get(f"/v1/batches/{batch['id']}", headers=user).status_code == 200
        # Cancel at once: the property is about what is stored, not about running it.
        assert client.post(f"/v1/batches/{batch['id']}/cancel", headers=user).status_code == 200
    listings_answer(client, user)


_any_message = st.fixed_dictionaries({"role": json_values, "content": json_values})
batch_lines = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "custom_id": maybe(st.text(min_size=1, max_size=8)),
                "method": maybe(st.just("POST")),
                "url": maybe(st.just("/v1/chat/completions")),
                "body": maybe(
                    st.fixed_dictionaries(
                        {
                            "model": st.just("chat"),
                            "messages": st.one_of(
                                st.just(MSG), st.lists(_any_message, min_size=1, max_size=2)
                            ),
                        }
                    )
                ),
            }
        ).map(body_of),
        json_values,
    ),
    min_size=1,
    max_size=4,
)


@PROPERTY
@given(lines=batch_lines)
def test_batch_files(client: httpx.Client, user: dict[str, str], lines: list[Any]) -> None:
    data = b"\n".join(json.dumps(line).encode() for line in lines)
    files = {"file": ("in.jsonl", data, "application/jsonl")}
    r = client.post("/v1/files", data={"purpose": "batch"}, files=files, headers=user)
    if stored_or_refused(r, 200):
        file_id = r.json()["id"]
        assert client.get(f"/v1/files/{file_id}/content", headers=user).status_code == 200
        client.delete(f"/v1/files/{file_id}", headers=user)
    listings_answer(client, user)


# -- keys ------------------------------------------------------------------------------

_names = st.lists(st.text(min_size=1, max_size=20), max_size=5)
key_fields = st.fixed_dictionaries(
    {
        "name": maybe(st.text(min_size=1, max_size=200)),
        "user": maybe(st.text(min_size=1, max_size=20)),
        "team": maybe(st.text(min_size=1, max_size=20)),
        "tags": maybe(_names),
        "models": maybe(st.just(["chat"])),
        "metadata": maybe(st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
        "rate_limits": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "rpm": st.integers(1, 10**9),
                    "tpm": st.integers(1, 10**12),
                    "max_concurrency": st.integers(1, 10**6),
                    "priority": st.integers(0, 9),
                    "max_wait_s": st.floats(0, 60),
                },
            )
        ),
        "budgets": maybe(st.lists(budget_specs, max_size=2)),
    }
).map(body_of)


@PROPERTY
@given(fields=key_fields, patch=key_fields)
def test_keys(client: httpx.Client, user: dict[str, str], fields: dict[str, Any],
              patch: dict[str, Any]) -> None:  # fmt: skip
    r = client.post("/admin/keys", json=fields, headers=ADMIN)
    if stored_or_refused(r, 201):
        key = r.json()
        patch.pop("budgets", None)
        stored_or_refused(client.patch(f"/admin/keys/{key['id']}", json=patch, headers=ADMIN), 200)
        assert client.get(f"/admin/keys/{key['id']}", headers=ADMIN).status_code == 200
        # The new key can still be used for a request: 200, or a clean refusal.
        reply = client.post("/v1/chat/completions", json={"model": "chat", "messages": MSG},
                            headers={"authorization": f"Bearer {key['key']}"})  # fmt: skip
        stored_or_refused(reply, 200)
    listings_answer(client, user)


# -- the app cache ---------------------------------------------------------------------

_entry_names = st.one_of(
    st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True), st.text(max_size=10)
)


_ttls = st.one_of(
    st.none(), st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=6)
)


@PROPERTY
@given(namespace=_entry_names, name=_entry_names, ttl=_ttls, value=st.binary(max_size=256))
def test_app_cache(client: httpx.Client, user: dict[str, str], namespace: str, name: str,
                   ttl: str | None, value: bytes) -> None:  # fmt: skip
    path = f"/v1/cache/{quote(namespace, safe='')}/{quote(name, safe='')}"
    params = {"ttl": ttl} if ttl is not None else {}
    r = client.put(path, content=value, params=params, headers=user)
    if r.status_code in (200, 201, 204):
        got = client.get(path, headers=user)
        if got.status_code == 404:  # only a value that already expired (a TTL of 1e-300 s)
            assert float(r.json()["ttl_s"]) < 1, r.text
        else:
            assert got.status_code == 200 and got.content == value
        assert client.delete(path, headers=user).status_code in (200, 204)
    else:
        refused_cleanly(r)
    listings_answer(client, user)


# -- rows written before the bounds existed ------------------------------------------


def test_values_stored_by_an_older_version_never_break_a_listing(
    sim_url: str, tmp_path: Path
) -> None:
    """Rows no current API call can write (the bounds refuse them) but an older version did:
    a 1.2e308 USD budget, a 1e300 job deadline and start time. The listings, the dashboard
    and the request path still answer; the budget reads as the bound, MAX_USD."""
    cfg = sim_config(sim_url, tmp_path / "state")
    gw = GatewayProcess(cfg, tmp_path).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            created = c.post("/admin/budgets", json={"scope": "global", "limit_usd": 5, "budget_usd": 4}, headers=ADMIN)  # fmt: skip
            assert created.status_code == 201, created.text
            job = c.post("/v1/jobs", headers=ADMIN, json={
                "endpoint": "/v1/chat/completions", "body": {"model": "chat", "messages": MSG}})  # fmt: skip
            assert job.status_code == 202, job.text
    finally:
        gw.stop()
    db = sqlite3.connect(tmp_path / "state" / "interlock.db")
    with db:
        db.execute("UPDATE budgets SET limit_usd = 1.2e308, budget_usd = 1e300")
        db.execute("UPDATE jobs SET deadline = 1e300, started_at = -1e300, metadata = ?",
                   (json.dumps({"n": 2**64 - 1, "x": 1e308}),))  # fmt: skip
    db.close()
    gw = GatewayProcess(cfg, tmp_path).start()
    try:
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            listings_answer(c, ADMIN)
            budgets = c.get("/admin/budgets", headers=ADMIN).json()["data"]
            assert [b["limit_usd"] for b in budgets] == ["1000000000"]
            jobs = c.get("/v1/jobs", headers=ADMIN).json()["data"]
            assert jobs and all(j["deadline"] is None for j in jobs)
            r = c.post("/v1/chat/completions", json={"model": "chat", "messages": MSG}, headers=ADMIN)  # fmt: skip
            assert r.status_code == 200, r.text
    finally:
        gw.stop()
