"""/metrics labels carry only operator-declared values, one tenant cannot crowd out
another's, and a scrape token can be required.

A real `interlock serve` with a small per-tenant label allotment and a scrape token, in
front of the simulated provider.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from interlock.sim import SimControl
from interlock.telemetry.labels import OTHER, LabelCap
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config
from tests.support.metrics import scrape

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
TOKEN = "scrape-token-canary-6d1e9b0f2a"
PER_TENANT = 5


def test_label_cap_allots_slots_per_tenant() -> None:
    cap = LabelCap(limit=8, per_tenant=3)
    assert [cap.label(f"a{i}", "team:a") for i in range(5)] == ["a0", "a1", "a2", OTHER, OTHER]
    assert cap.label("b0", "team:b") == "b0"  # another tenant still gets its own
    assert cap.label("a0", "team:b") == "a0"  # an admitted value is shared, free
    assert [cap.label(f"c{i}", "team:c") for i in range(4)] == ["c0", "c1", "c2", OTHER]
    assert cap.label("d0", "team:d") == "d0"
    assert cap.label("e0", "team:e") == OTHER  # the global bound (8) still holds
    assert LabelCap(1).label("bad value!" * 10) == "bad_value_" * 6 + "bad_"  # cut, made safe


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("labels")
    cfg = sim_config(sim_url, work / "state")
    cfg["telemetry"] = {"max_label_values_per_tenant": PER_TENANT, "metrics_token": TOKEN}
    g = GatewayProcess(cfg, work).start()
    yield g
    g.stop()


def _key(c: httpx.Client, **fields: object) -> dict[str, str]:
    r = c.post("/admin/keys", json=fields, headers=ADMIN)
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['key']}"}


def _chat(c: httpx.Client, auth: dict[str, str], tags: str | None = None) -> None:
    headers = {**auth, **({"x-interlock-tags": tags} if tags else {})}
    body = {"model": "chat", "messages": [{"role": "user", "content": "label me"}]}
    assert c.post("/v1/chat/completions", json=body, headers=headers).status_code == 200


def _features(c: httpx.Client) -> dict[str, float]:
    """Requests per feature subject, as /metrics shows them."""
    samples = scrape(c.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text)
    out: dict[str, float] = {}
    for (name, labels), v in samples.items():
        d = dict(labels)
        if name == "interlock_tenant_requests_total" and d["scope"] == "feature":
            out[d["subject"]] = out.get(d["subject"], 0.0) + v
    return out


def test_request_tags_never_become_labels_and_cannot_crowd_out_a_tenant(
    gw: GatewayProcess, sim: SimControl
) -> None:
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        victim = _key(c, team="shop", tags=["checkout"])
        attacker = _key(c, team="noisy", tags=["scraper"])
        _chat(c, victim)
        before = _features(c)
        assert before == {"checkout": 1}
        # 1,008 distinct client-chosen tags (16 per request, the most a request may send).
        for i in range(63):
            _chat(c, attacker, ",".join(f"t{i}-{j}" for j in range(16)))
        _chat(c, victim, "free-text-from-the-victim")
        after = _features(c)
    assert after == {"checkout": 2, "scraper": 63}


def test_one_tenant_with_many_declared_tags_does_not_take_every_slot(
    gw: GatewayProcess, sim: SimControl
) -> None:
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        wide = _key(c, team="wide", tags=[f"w{i}" for i in range(PER_TENANT + 3)])
        _chat(c, wide)
        late = _key(c, team="late", tags=["refund"])
        _chat(c, late)
        features = _features(c)
    mine = {s for s in features if s.startswith("w")}
    assert mine == {f"w{i}" for i in range(PER_TENANT)}
    assert features[OTHER] == 3  # the wide team's overflow, and only its own
    assert features["refund"] == 1


def test_the_scrape_token_is_required_and_never_echoed(gw: GatewayProcess) -> None:
    with httpx.Client(base_url=gw.url, timeout=10) as c:
        bare = c.get("/metrics")
        wrong = c.get("/metrics", headers={"authorization": "Bearer " + TOKEN[:-1] + "x"})
        master = c.get("/metrics", headers=ADMIN)
        right = c.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"})
    for r in (bare, wrong, master):
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_metrics_token"
        assert TOKEN not in r.text
    assert right.status_code == 200 and "interlock_requests_total" in right.text
    assert TOKEN not in gw.output()
