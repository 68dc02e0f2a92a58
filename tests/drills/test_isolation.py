"""One tenant cannot move the shared state: 1,000 malformed or short-timeout requests from
one key leave the degradation level at `full`, every other tenant is served, and the
attacker gets 4xx (issue 12, "Done when", third line).

Two replicas sharing the ladder and the breakers through Redis, the degradation ladder
on with its defaults. The attacker mixes malformed bodies of every endpoint with
requests whose ``x-interlock-timeout`` is far below what a slow (but working) model
needs; two other tenants use the fast model and the slow model meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from interlock.sim import SimControl
from tests.drills.harness import (
    ADMIN,
    PgSchema,
    Result,
    client,
    drill_config,
    keep_sending,
    latency_figures,
    make_key,
    record,
    run_all,
    running,
    send,
    statuses,
)

pytestmark = [pytest.mark.drill, pytest.mark.redis, pytest.mark.postgres]

ATTACKS = 1000
SHORT_TIMEOUTS = 200  # of the 1,000
SLOW_MS = 2000  # the slow model answers in 2 s: slow, not broken


def _deep(levels: int) -> Any:
    value: Any = "x"
    for _ in range(levels):
        value = {"a": value}
    return value


def _msg(**extra: Any) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": "hi", **extra}]}


# (path, raw body) of malformed requests: wrong types, bad JSON, absurd numbers, depth;
# one (a prompt list mixing ids and text) passes the gateway and is refused upstream.
MALFORMED: list[tuple[str, bytes]] = [
    ("/v1/chat/completions", orjson.dumps({"model": "chat", "messages": [{"role": ["user"], "content": "hi"}]})),
    ("/v1/chat/completions", orjson.dumps({"model": "chat", "messages": [{"role": 7, "content": "hi"}]})),
    ("/v1/chat/completions", b'{"model": "chat", "messages": [{"role": "user", "content": "hi"'),
    ("/v1/chat/completions", orjson.dumps({"model": "chat", "messages": "hi"})),
    ("/v1/chat/completions", b'{"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1e300}'),
    ("/v1/chat/completions", orjson.dumps({**_msg(), "n": -5})),
    ("/v1/chat/completions", orjson.dumps({**_msg(), "temperature": "hot"})),
    ("/v1/chat/completions", orjson.dumps(_msg(content=_deep(60)))),
    ("/v1/chat/completions", orjson.dumps({"model": 12345, "messages": [{"role": "user", "content": "hi"}]})),
    ("/v1/chat/completions", orjson.dumps({**_msg(), "tools": "all of them"})),
    ("/v1/chat/completions", orjson.dumps({**_msg(), "stream": "yes"})),
    ("/v1/chat/completions", orjson.dumps([1, 2, 3])),
    ("/v1/chat/completions", orjson.dumps({**_msg(), "max_tokens": "ten"})),
    ("/v1/completions", orjson.dumps({"model": "chat", "prompt": {"a": 1}})),
    ("/v1/completions", orjson.dumps({"model": "chat", "prompt": [[1, "x"]]})),
    ("/v1/embeddings", orjson.dumps({"model": "sim-embed", "input": [[-1, "x"]]})),
    ("/v1/embeddings", orjson.dumps({"model": "sim-embed", "input": None})),
    ("/v1/messages", orjson.dumps({"model": "chat", "max_tokens": 5, "messages": [{"role": "robot", "content": "hi"}]})),
    ("/v1/messages", orjson.dumps({"model": "chat", "max_tokens": -1, "messages": [{"role": "user", "content": "hi"}]})),
    ("/v1/jobs", orjson.dumps({"endpoint": "/v1/chat/completions", "body": {"model": "chat", "messages": [{"role": {}, "content": 1}]}})),
]  # fmt: skip


@pytest.mark.timeout(400)
def test_one_tenant_cannot_degrade_the_others(
    sim_url: str, sim: SimControl, tmp_path: Path, redis_url: str, pg: PgSchema
) -> None:
    cfg = drill_config(sim_url, redis_url=redis_url, pg=pg)
    cfg["deployments"]["slowish"] = {
        "provider": "sim", "model": "sim-slowish", "price": cfg["deployments"]["sim-small"]["price"],
        "timeouts": {"connect_s": 2, "first_byte_s": 10, "idle_s": 10, "total_s": 20},
    }  # fmt: skip
    cfg["models"]["slowish"] = {"deployments": ["slowish"]}
    sim.set_faults([{"type": "latency", "ms": SLOW_MS, "match": {"model": "sim-slowish"}}])
    with running(cfg, tmp_path, replicas=2, pg=pg, sim=sim) as cluster:
        attacker, _ = make_key(cluster.urls[0], user="attacker")
        tenant_fast, _ = make_key(cluster.urls[0], user="tenant-fast")
        tenant_slow, _ = make_key(cluster.urls[0], user="tenant-slow")
        levels: list[str] = []

        async def watch(stop: asyncio.Event) -> None:
            async with httpx.AsyncClient(timeout=5, headers=ADMIN) as c:
                while not stop.is_set():
                    for url in cluster.urls:
                        try:
                            levels.append((await c.get(f"{url}/admin/degradation")).json()["level"])
                        except (httpx.HTTPError, ValueError, KeyError):
                            levels.append("unreachable")
                    await asyncio.sleep(0.5)

        async def go() -> tuple[list[Result], list[Result], list[Result]]:
            async with client(connections=64) as c:
                attack_forms = itertools.cycle(range(len(MALFORMED)))
                jobs = []
                for i in range(ATTACKS):
                    if i % (ATTACKS // SHORT_TIMEOUTS) == 0:
                        jobs.append(lambda i=i: send(
                            c, "POST", f"{cluster.lb()}/v1/chat/completions", tag="short_timeout",
                            headers={**attacker, "x-interlock-timeout": "0.01"},
                            json={"model": "slowish", "messages": [{"role": "user", "content": f"now {i}"}]}))  # fmt: skip
                    else:
                        path, raw = MALFORMED[next(attack_forms)]
                        jobs.append(lambda path=path, raw=raw: send(
                            c, "POST", f"{cluster.lb()}{path}", tag="malformed", content=raw,
                            headers={**attacker, "content-type": "application/json"}))  # fmt: skip
                stop = asyncio.Event()
                tenants = asyncio.gather(
                    keep_sending(lambda i: send(
                        c, "POST", f"{cluster.lb()}/v1/chat/completions", headers=tenant_fast,
                        tag="tenant_fast", json={"model": "chat", "messages": [
                            {"role": "user", "content": f"fine {i}"}]}), stop, 2, 0.05),
                    keep_sending(lambda i: send(
                        c, "POST", f"{cluster.lb()}/v1/chat/completions", headers=tenant_slow,
                        tag="tenant_slow", json={"model": "slowish", "messages": [
                            {"role": "user", "content": f"patient {i}"}]}), stop, 2),
                    watch(stop),
                )  # fmt: skip
                attack = await run_all(jobs, 20)
                # The ladder steps down after 5 s of a bad signal: watch for longer.
                await asyncio.sleep(12)
                stop.set()
                fast, slow, _ = await tenants
                return attack, fast, slow

        attack, fast, slow = asyncio.run(go())
        deployments = httpx.get(f"{cluster.urls[1]}/admin/deployments", headers=ADMIN,
                                timeout=10).json()["data"]  # fmt: skip
        circuits = {d["deployment"]: d["circuit"] for d in deployments}
        malformed = [r for r in attack if r.tag == "malformed"]
        short = [r for r in attack if r.tag == "short_timeout"]
        seen_levels = sorted(
            set(levels) | {r.extra.get("degradation") or "full" for r in fast + slow}
        )
        figures = {
            "replicas": 2,
            "attack": {"malformed": len(malformed), "short_timeout": len(short),
                       "malformed_statuses": statuses(malformed),
                       "short_timeout_statuses": statuses(short)},
            "tenants": {"fast": {"requests": len(fast), "statuses": statuses(fast), **latency_figures(fast)},
                        "slow": {"requests": len(slow), "statuses": statuses(slow), **latency_figures(slow)}},
            "levels_seen": seen_levels,
            "level_samples": len(levels),
            "circuits": {k: v for k, v in circuits.items() if k in ("sim-small", "slowish")},
        }  # fmt: skip
        checks = {
            "level stays full": seen_levels == ["full"],
            "other tenants 100% served": all(r.status == 200 for r in fast + slow)
            and len(fast) > 0
            and len(slow) > 0,
            "attacker: malformed -> 4xx": all(400 <= r.status < 500 for r in malformed),
            # A client's own deadline: a 4xx, or 504 naming the client's timeout.
            "attacker: short timeouts -> 4xx or 504": all(
                400 <= r.status < 500 or r.status == 504 for r in short
            ),
            "no breaker opened": circuits.get("sim-small") == "closed"
            and circuits.get("slowish") == "closed",
        }
        record("isolation", figures, checks)
