"""A key's policy holds on every path, over real HTTP against the simulated provider.

One real `interlock serve` with a cheap alias that falls back to a pricey one, a tiered
alias over both, a one-job-at-a-time worker pool, and a small application-cache quota.
Each test shows the restricted key refused (or routed around) *and* that the
simulator's request log has no call it should not have; a control key with more rights
shows the same request would have gone there, so no test passes vacuously.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from interlock.sim import SimControl
from tests.jobs.support import jobs_config, wait_job
from tests.support.gateway import MASTER_KEY, GatewayProcess

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
HARD = "Prove that e is irrational."  # the tier classifier sends this to `large`
QUOTA = 4096


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("policy")
    cfg = jobs_config(sim_url, work / "state", concurrency=1, batch={"poll_interval_s": 0.1})
    cfg["models"].update(
        {
            "cheap": {
                "deployments": ["sim-small"],
                "fallbacks": [{"models": ["pricey"], "on": ["server_error"]}],
            },
            "pricey": {"deployments": ["sim-large"]},
            "blocker": {"deployments": ["sim-medium"]},
            "auto": {"tiers": {"small": "cheap", "large": "pricey"}},
        }
    )
    cfg["cache"] = {"app": {"max_bytes_per_tenant": QUOTA, "max_ttl_s": 600}}
    g = GatewayProcess(cfg, work).start()
    yield g
    g.stop()


def make_key(gw: GatewayProcess, **fields: Any) -> tuple[str, dict[str, str]]:
    r = httpx.post(f"{gw.url}/admin/keys", json=fields, headers=ADMIN, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["id"], {"authorization": f"Bearer {r.json()['key']}"}


def chat(gw: GatewayProcess, auth: dict[str, str], model: str, text: str,
         **headers: str) -> httpx.Response:  # fmt: skip
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{gw.url}/v1/chat/completions", json=body,
                      headers={**auth, **headers}, timeout=30)  # fmt: skip


def calls(sim: SimControl, model: str, text: str | None = None) -> int:
    """Requests the simulator received for ``model`` (and containing ``text``)."""
    return sum(
        1
        for r in sim.requests()
        if f'"{model}"' in r["body"] and (text is None or text in r["body"])
    )


# -- fallbacks -------------------------------------------------------------------------


def test_a_fallback_the_key_may_not_use_is_never_tried(gw: GatewayProcess, sim: SimControl) -> None:
    _, only_cheap = make_key(gw, models=["cheap"])
    _, both = make_key(gw, models=["cheap", "pricey"])
    sim.set_faults([{"type": "status", "status": 500, "match": {"model": "sim-small"}}])

    refused = chat(gw, only_cheap, "cheap", "restricted fallback")
    assert refused.status_code == 502, refused.text  # the primary's error, not pricey's answer
    assert refused.json()["error"]["code"] != "model_not_allowed"
    assert calls(sim, "sim-large", "restricted fallback") == 0
    assert calls(sim, "sim-small", "restricted fallback") >= 1

    allowed = chat(gw, both, "cheap", "allowed fallback")
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["x-interlock-fallback"] == "pricey"
    assert calls(sim, "sim-large", "allowed fallback") == 1


# -- tiers -----------------------------------------------------------------------------


def test_a_tier_the_key_may_not_use_is_never_chosen(gw: GatewayProcess, sim: SimControl) -> None:
    _, small_only = make_key(gw, models=["auto", "cheap"])
    _, every = make_key(gw, models=["auto", "cheap", "pricey"])
    _, tiers_none = make_key(gw, models=["auto"])

    control = chat(gw, every, "auto", HARD + " (control)")
    assert control.status_code == 200 and control.headers["x-interlock-tier"] == "large"

    # The nearest tier the key may use serves it (docs/decisions.md), and says why.
    r = chat(gw, small_only, "auto", HARD + " (restricted)")
    assert r.status_code == 200, r.text
    assert r.headers["x-interlock-tier"] == "small"
    assert "not allowed for this key" in r.headers["x-interlock-route-reason"]
    assert calls(sim, "sim-large", "(restricted)") == 0
    assert calls(sim, "sim-small", "(restricted)") == 1

    # A client that pins the forbidden tier is refused, not silently moved.
    pinned = chat(gw, small_only, "auto", HARD + " (pinned)", **{"x-interlock-tier": "large"})
    assert pinned.status_code == 403
    assert pinned.json()["error"]["code"] == "model_not_allowed"
    assert pinned.json()["error"]["param"] == "x-interlock-tier"

    none = chat(gw, tiers_none, "auto", HARD + " (no tier)")
    assert none.status_code == 403 and none.json()["error"]["code"] == "model_not_allowed"
    assert calls(sim, "sim-large", "(pinned)") + calls(sim, "sim-large", "(no tier)") == 0
    assert calls(sim, "sim-small", "(no tier)") == 0


# -- jobs and batches ------------------------------------------------------------------


def _job(model: str, text: str) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    return {"endpoint": "/v1/chat/completions", "body": body}


def test_jobs_refuse_a_forbidden_model_at_submit_and_at_run(
    gw: GatewayProcess, sim: SimControl
) -> None:
    revoked_id, revoked = make_key(gw, models=["cheap"])
    narrowed_id, narrowed = make_key(gw, models=["cheap"])
    with (
        httpx.Client(base_url=gw.url, timeout=30) as c,
        httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as admin,
    ):
        # Submit time: the model check of the synchronous route.
        r = c.post("/v1/jobs", json=_job("pricey", "job for pricey"), headers=revoked)
        assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"

        # Run time: hold the single worker with a slow job, queue two jobs behind it,
        # then revoke one key and narrow the other before either job starts.
        sim.set_faults([{"type": "latency", "ms": 1500, "match": {"model": "sim-medium"}}])
        blocker = admin.post("/v1/jobs", json=_job("blocker", "blocker job")).json()
        wait_job(admin, blocker["id"], until=("running",))
        first = c.post("/v1/jobs", json=_job("cheap", "job of a revoked key"), headers=revoked)
        second = c.post("/v1/jobs", json=_job("cheap", "job of a narrowed key"), headers=narrowed)
        assert first.status_code == 202 and second.status_code == 202
        assert admin.post(f"/admin/keys/{revoked_id}/revoke").status_code == 200
        patch = admin.patch(f"/admin/keys/{narrowed_id}", json={"models": ["pricey"]})
        assert patch.status_code == 200

        assert wait_job(admin, blocker["id"])["status"] == "succeeded"
        with httpx.Client(base_url=gw.url, headers=narrowed, timeout=30) as own:
            done = wait_job(own, second.json()["id"])
        # The revoked key can no longer read its job; the dead-letter view shows it.
        deadline = time.monotonic() + 10
        while not (gone := [j for j in admin.get("/admin/jobs/dead").json()["data"]
                            if j["id"] == first.json()["id"]]):  # fmt: skip
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert done["status"] == "failed" and done["attempts"] == 1
    assert done["error"]["code"] == "model_not_allowed"
    assert gone[0]["status"] == "failed", gone
    assert gone[0]["error"]["code"] == "invalid_api_key", gone
    assert calls(sim, "sim-small", "revoked key") == 0
    assert calls(sim, "sim-small", "narrowed key") == 0


def test_batch_lines_honour_the_allowlist_at_upload_and_at_run(
    gw: GatewayProcess, sim: SimControl
) -> None:
    key_id, auth = make_key(gw, models=["cheap"])

    def jsonl(model: str, text: str) -> bytes:
        rows = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                 "body": _job(model, f"{text} {i}")["body"]} for i in range(3)]  # fmt: skip
        return b"".join(orjson.dumps(r) + b"\n" for r in rows)

    with httpx.Client(base_url=gw.url, headers=auth, timeout=30) as c:
        files = {"file": ("in.jsonl", jsonl("pricey", "batch pricey"), "application/jsonl")}
        bad = c.post("/v1/files", data={"purpose": "batch"}, files=files)
        assert bad.status_code == 400 and bad.json()["error"]["bad_lines"] == 3

        files = {"file": ("in.jsonl", jsonl("cheap", "batch narrowed"), "application/jsonl")}
        up = c.post("/v1/files", data={"purpose": "batch"}, files=files)
        assert up.status_code == 200, up.text
        # Narrowed after the upload was checked: every line is refused when it runs.
        r = httpx.patch(f"{gw.url}/admin/keys/{key_id}", json={"models": ["pricey"]},
                        headers=ADMIN, timeout=10)  # fmt: skip
        assert r.status_code == 200
        batch = c.post("/v1/batches", json={"input_file_id": up.json()["id"],
                                            "endpoint": "/v1/chat/completions",
                                            "completion_window": "24h"}).json()  # fmt: skip
        deadline = time.monotonic() + 20
        while (b := c.get(f"/v1/batches/{batch['id']}").json())["status"] not in (
            "completed", "failed", "expired", "cancelled"
        ):  # fmt: skip
            assert time.monotonic() < deadline, b
            time.sleep(0.1)
        assert b["request_counts"] == {"total": 3, "completed": 0, "failed": 3}
        errors = c.get(f"/v1/files/{b['error_file_id']}/content").content.splitlines()
    codes = {orjson.loads(e)["response"]["body"]["error"]["code"] for e in errors}
    assert codes == {"model_not_allowed"}
    assert calls(sim, "sim-large", "batch") + calls(sim, "sim-small", "batch") == 0


# -- the application cache -------------------------------------------------------------


def _put(c: httpx.Client, auth: dict[str, str], key: str, size: int, **params: str
         ) -> httpx.Response:  # fmt: skip
    return c.put(f"/v1/cache/ns/{key}", content=b"v" * size, headers=auth, params=params)


def test_the_app_cache_has_a_byte_quota_per_tenant(gw: GatewayProcess) -> None:
    _, alpha = make_key(gw, team="quota-alpha")
    _, alpha2 = make_key(gw, team="quota-alpha")
    _, beta = make_key(gw, team="quota-beta")
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        # Each 1,000-byte value counts ~1,300 bytes (name, content type, overhead): 3 fit.
        for i in range(3):
            assert _put(c, alpha, f"k{i}", 1000).status_code == 200
        assert _put(c, alpha, "k0", 1000).status_code == 200  # an overwrite is no growth
        full = _put(c, alpha2, "k3", 1000)  # the quota is the team's, whichever key writes
        assert full.status_code == 429
        assert full.json()["error"]["code"] == "cache_quota_exceeded"
        assert int(full.headers["retry-after"]) >= 1
        assert c.get("/v1/cache/ns/k3", headers=alpha).status_code == 404
        # Another tenant is not affected; deleting frees room.
        assert _put(c, beta, "k0", 1000).status_code == 200
        assert c.delete("/v1/cache/ns/k1", headers=alpha).status_code == 200
        assert _put(c, alpha2, "k3", 1000).status_code == 200
        # A value that could never fit is too large, not "wait and retry".
        huge = _put(c, beta, "huge", QUOTA)
        assert huge.status_code == 413 and huge.json()["error"]["code"] == "payload_too_large"
        # The TTL is bounded by cache.app.max_ttl_s.
        long = _put(c, beta, "k1", 10, ttl="601")
        assert long.status_code == 400 and long.json()["error"]["code"] == "invalid_ttl"
        assert _put(c, beta, "k1", 10, ttl="600").status_code == 200


def test_the_app_cache_counts_against_the_key_rate_limit(gw: GatewayProcess) -> None:
    _, limited = make_key(gw, rate_limits={"rpm": 2})
    _, other = make_key(gw)
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        assert _put(c, limited, "a", 10).status_code == 200
        assert c.get("/v1/cache/ns/a", headers=limited).status_code == 200
        refused = _put(c, limited, "b", 10)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert c.get("/v1/cache/ns/a", headers=limited).status_code == 429
        assert c.delete("/v1/cache/ns/a", headers=limited).status_code == 429
        assert _put(c, other, "b", 10).status_code == 200
