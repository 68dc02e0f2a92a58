"""One tenant cannot move the state every tenant shares (issue 12, item 3).

A gateway with the degradation ladder ON and set to react fast (a few counted failures
would move it within a second), a slow deployment, and two keys: the attacker sends a
mix of malformed requests (roles of the wrong type, broken JSON, huge numbers, bad
content parts, unknown models) and valid requests with a client-chosen timeout far
shorter than the slow deployment's answer, plus a rate-limited key hammering; the other
key sends normal traffic at the same time. The level stays ``full`` (every response's
``x-interlock-degradation`` header and ``/admin/degradation``), no breaker opens, the
other key is served every time, and the attacker gets only 4xx — and ``504
deadline_exceeded`` for its own deadlines (docs/decisions.md).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.sim import SimControl
from tests.resilience.conftest import ADMIN, MSG, ab_config
from tests.support.gateway import GatewayProcess

SLOW_MS = 600  # the slow deployment's answer time; the attacker's deadline is 50 ms

# Bodies that must each be a 4xx (never a 500, never a counted failure).
_MALFORMED: list[tuple[str, Any]] = [
    ("role-list", {"model": "slow", "messages": [{"role": ["user"], "content": "hi"}]}),
    ("role-object", {"model": "slow", "messages": [{"role": {"a": 1}, "content": "hi"}]}),
    ("role-number", {"model": "ab", "messages": [{"role": 7, "content": "hi"}]}),
    ("part-text-number", {"model": "ab", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
    ("tool-calls-float", {"model": "ab", "messages": [{"role": "assistant", "content": None, "tool_calls": 1.5}]}),
    ("max-tokens-huge", {"model": "ab", "messages": MSG, "max_tokens": 1e300}),
    ("temperature-huge", {"model": "ab", "messages": MSG, "temperature": 1.2e308}),
    ("n-huge", {"model": "ab", "messages": MSG, "n": 2**63}),
    ("unknown-model", {"model": "no-such-model", "messages": MSG}),
    ("messages-string", {"model": "slow", "messages": "hello"}),
]  # fmt: skip


def _config(sim_url: str, state: Path) -> dict[str, Any]:
    degradation = {
        # Sensitive on purpose: a handful of counted failures would move it at once.
        "evaluate_every_s": 0.1, "window_s": 5.0, "min_requests": 5,
        "down_after_s": 0.3, "up_after_s": 1.0,
    }  # fmt: skip
    res = {"degradation": degradation, "client_timeout_min_s": 0.05,
           "breaker": {"consecutive_failures": 3, "min_calls": 5}}  # fmt: skip
    cfg = ab_config(sim_url, state, resilience=res)
    cfg["deployments"]["S"] = {
        "provider": "sim", "model": "sim-slowpoke",
        "timeouts": {"connect_s": 1, "first_byte_s": 5, "idle_s": 5, "total_s": 10},
    }  # fmt: skip
    cfg["models"]["slow"] = {"deployments": ["S"]}
    return cfg


def _key(gw: GatewayProcess, **fields: Any) -> dict[str, str]:
    r = httpx.post(f"{gw.url}/admin/keys", json=fields, headers=ADMIN, timeout=10)
    assert r.status_code == 201, r.text
    return {"authorization": f"Bearer {r.json()['key']}"}


def _attack(gw: GatewayProcess, client: httpx.Client, auth: dict[str, str], i: int) -> tuple[str, httpx.Response]:  # fmt: skip
    kind = i % 4
    if kind == 0:  # the client's own deadline, far shorter than the slow deployment
        headers = {**auth, "x-interlock-timeout": "0.01"}
        body = {"model": "slow", "messages": MSG, "stream": i % 8 == 4}  # streamed too
        return "deadline", client.post(f"{gw.url}/v1/chat/completions", json=body, headers=headers)
    if kind == 1:  # broken JSON
        return "bad-json", client.post(
            f"{gw.url}/v1/chat/completions",
            content=b'{"model": "slow", "messages": [{"role": "user",',
            headers={**auth, "content-type": "application/json"},
        )
    name, body = _MALFORMED[(i // 4) % len(_MALFORMED)]
    url = "/v1/jobs" if kind == 3 and i % 8 == 3 else "/v1/chat/completions"
    if url == "/v1/jobs":
        body = {"endpoint": "/v1/chat/completions", "body": body}
    return name, client.post(f"{gw.url}{url}", content=json.dumps(body), headers={**auth, "content-type": "application/json"})  # fmt: skip


def _run(sim_url: str, sim: SimControl, tmp_path: Path,
         start_gateway: Callable[..., GatewayProcess], attacks: int) -> None:  # fmt: skip
    sim.set_faults([{"type": "latency", "ms": SLOW_MS, "match": {"model": "sim-slowpoke"}}])
    gw = start_gateway(_config(sim_url, tmp_path / "state"))
    attacker = _key(gw, name="attacker")
    hammer = _key(gw, name="hammer", rate_limits={"rpm": 2})
    victim = _key(gw, name="victim")
    levels: Counter[str] = Counter()
    bad: list[str] = []
    victim_status: Counter[int] = Counter()
    attack_status: Counter[tuple[str, int, str]] = Counter()
    stop = False

    def victim_loop() -> None:
        with httpx.Client(timeout=30) as c:
            while not stop:
                r = c.post(f"{gw.url}/v1/chat/completions", json={"model": "ab", "messages": MSG}, headers=victim)  # fmt: skip
                victim_status[r.status_code] += 1
                levels[r.headers["x-interlock-degradation"]] += 1
                if r.status_code != 200:
                    bad.append(f"victim {r.status_code} {r.text[:200]}")
                time.sleep(0.02)  # steady traffic, not a CPU race with the attack

    def attack_one(i: int) -> None:
        with httpx.Client(timeout=30) as c:
            if i % 10 == 9:  # a rate-limited key: the gateway's own refusals
                kind, r = "hammer", c.post(f"{gw.url}/v1/chat/completions", json={"model": "ab", "messages": MSG}, headers=hammer)  # fmt: skip
            else:
                kind, r = _attack(gw, c, attacker, i)
            code = str((r.json().get("error") or {}).get("code")) if r.status_code >= 400 else "ok"
            attack_status[(kind, r.status_code, code)] += 1
            levels[r.headers["x-interlock-degradation"]] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=10) as pool:
        victims = [pool.submit(victim_loop) for _ in range(2)]
        list(pool.map(attack_one, range(attacks)))
        # Long enough for the ladder (every 0.1 s, 0.3 s to step down) to have reacted.
        time.sleep(1.0)
        stop = True
        for v in victims:
            v.result()
    elapsed = time.monotonic() - started
    state = httpx.get(f"{gw.url}/admin/degradation", headers=ADMIN, timeout=10).json()
    deps = httpx.get(f"{gw.url}/admin/deployments", headers=ADMIN, timeout=10).json()["data"]
    print(f"\n{attacks} attacks in {elapsed:.1f}s; attacker {dict(attack_status)}; "
          f"victim {dict(victim_status)}; levels {dict(levels)}; signals {state['signals']}")  # fmt: skip
    assert not bad, bad[:5]
    assert sum(victim_status.values()) >= 20 and set(victim_status) == {200}
    assert set(levels) == {"full"}, levels
    assert state["level"] == "full" and state["local_level"] == "full", state
    assert all(d["circuit"] == "closed" for d in deps), deps
    for (kind, status, code), n in attack_status.items():
        if kind == "deadline":
            assert (status, code) == (504, "deadline_exceeded"), (kind, status, code, n)
        elif kind == "hammer":
            assert status == 429 or status == 200, (kind, status, code, n)
        else:
            assert 400 <= status < 500, (kind, status, code, n)
    # The attack did reach the slow deployment, and it was cut by the client's deadline.
    assert sum(n for (k, _, _), n in attack_status.items() if k == "deadline") >= attacks // 5


@pytest.mark.slow
def test_one_key_cannot_move_the_ladder_or_breakers(
    sim_url: str, sim: SimControl, tmp_path: Path, start_gateway: Callable[..., GatewayProcess]
) -> None:
    _run(sim_url, sim, tmp_path, start_gateway, attacks=200)


@pytest.mark.drill
def test_one_key_cannot_move_the_ladder_or_breakers_1000(
    sim_url: str, sim: SimControl, tmp_path: Path, start_gateway: Callable[..., GatewayProcess]
) -> None:
    _run(sim_url, sim, tmp_path, start_gateway, attacks=1000)


def test_the_deployments_own_timeout_still_counts(
    sim_url: str, sim: SimControl, tmp_path: Path, start_gateway: Callable[..., GatewayProcess]
) -> None:
    """The other side of the rule: a timeout under the deployment's own settings is the
    upstream's failure (504 upstream_timeout) and does feed its breaker."""
    sim.set_faults([{"type": "latency", "ms": 3000, "match": {"model": "sim-slowpoke"}}])
    cfg = _config(sim_url, tmp_path / "state")
    cfg["deployments"]["S"]["timeouts"] = {"connect_s": 1, "first_byte_s": 0.2, "idle_s": 1, "total_s": 2}  # fmt: skip
    cfg["resilience"]["retry"] = {"max_attempts": 1}
    gw = start_gateway(cfg)
    codes = []
    with httpx.Client(timeout=30) as c:
        for _ in itertools.repeat(None, 3):
            r = c.post(f"{gw.url}/v1/chat/completions", json={"model": "slow", "messages": MSG}, headers=ADMIN)  # fmt: skip
            codes.append((r.status_code, r.json()["error"]["code"]))
    assert codes == [(504, "upstream_timeout")] * 3
    deps = {d["deployment"]: d for d in httpx.get(f"{gw.url}/admin/deployments", headers=ADMIN).json()["data"]}  # fmt: skip
    assert deps["S"]["circuit"] == "open", deps["S"]
