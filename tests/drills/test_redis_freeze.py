"""Redis frozen for 30 s (SIGSTOP of the drill's own redis-server, then SIGCONT): a key
without a budget keeps >= 99% success, no request takes more than 2 s, and the
degradation level is back to `full` at most 10 s after Redis returns (issue 12, "Done
when", fourth line).

Two replicas share the frozen Redis (state: budgets, rate limits, breakers, the ladder)
and a PostgreSQL schema. A budgeted key sends traffic too: its requests may be refused
while its budget cannot be checked, but those refusals are the gateway's own and must
not move the ladder for everyone.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
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
    running,
    send,
    statuses,
)
from tests.support.own_redis import OwnRedis

pytestmark = [pytest.mark.drill, pytest.mark.postgres]

BEFORE_S, FROZEN_S, AFTER_S = 5.0, 30.0, 15.0
RECOVERY_S = 10.0
SLOW_S = 2.0


@pytest.mark.timeout(300)
def test_frozen_redis(
    sim_url: str, sim: SimControl, tmp_path: Path, own_redis: OwnRedis, pg: PgSchema
) -> None:
    cfg = drill_config(sim_url, redis_url=own_redis.url, pg=pg)
    with running(cfg, tmp_path, replicas=2, pg=pg, sim=sim) as cluster:
        free, _ = make_key(cluster.urls[0], user="no-budget")
        budgeted, _ = make_key(cluster.urls[0], user="budgeted",
                               budgets=[{"limit_usd": 100, "window": "daily"}])  # fmt: skip
        time.sleep(2.5)  # both replicas have loaded the budget
        samples: list[tuple[float, str]] = []  # (monotonic time, level) per replica poll

        async def watch(stop: asyncio.Event) -> None:
            async with httpx.AsyncClient(timeout=5, headers=ADMIN) as c:
                while not stop.is_set():
                    for url in cluster.urls:
                        try:
                            level = (await c.get(f"{url}/admin/degradation")).json()["level"]
                        except (httpx.HTTPError, ValueError, KeyError):
                            level = "unreachable"
                        samples.append((time.monotonic(), level))
                    await asyncio.sleep(0.25)

        def body(tag: str, i: int) -> dict[str, object]:
            return {"model": "chat", "messages": [{"role": "user", "content": f"{tag} {i}"}]}

        async def go() -> tuple[list[Result], list[Result], float, float]:
            async with client(connections=32, timeout=30) as c:
                stop = asyncio.Event()
                load = asyncio.gather(
                    keep_sending(lambda i: send(c, "POST", f"{cluster.lb()}/v1/chat/completions",
                                                headers=free, tag="free", json=body("free", i)),
                                 stop, 6, 0.02),
                    keep_sending(lambda i: send(c, "POST", f"{cluster.lb()}/v1/chat/completions",
                                                headers=budgeted, tag="budgeted",
                                                json=body("budgeted", i)), stop, 2, 0.02),
                    watch(stop),
                )  # fmt: skip
                await asyncio.sleep(BEFORE_S)
                frozen_at = time.monotonic()
                own_redis.freeze()
                try:
                    await asyncio.sleep(FROZEN_S)
                finally:
                    own_redis.thaw()
                thawed_at = time.monotonic()
                await asyncio.sleep(AFTER_S)
                stop.set()
                free_results, budgeted_results, _ = await load
                return free_results, budgeted_results, frozen_at, thawed_at

        free_r, budgeted_r, frozen_at, thawed_at = asyncio.run(go())
        during = [r for r in free_r if frozen_at <= r.started <= thawed_at]
        ok = sum(r.status == 200 for r in free_r)
        # When did every replica last report a level other than full, after the thaw?
        not_full_after = [t for t, level in samples if t >= thawed_at and level != "full"]
        back_after = (max(not_full_after) - thawed_at) if not_full_after else 0.0
        ended_full = all(level == "full" for _, level in samples[-len(cluster.urls) :])
        slow = [r for r in free_r + budgeted_r if r.elapsed > SLOW_S]
        figures = {
            "replicas": 2,
            "frozen_s": FROZEN_S,
            "free_key": {"requests": len(free_r), "success_pct": round(100 * ok / max(1, len(free_r)), 2),
                         "during_freeze": len(during),
                         "during_freeze_success_pct": round(100 * sum(r.status == 200 for r in during) / max(1, len(during)), 2),
                         "statuses": statuses(free_r), **latency_figures(free_r)},
            "budgeted_key": {"requests": len(budgeted_r), "statuses": statuses(budgeted_r),
                             **latency_figures(budgeted_r)},
            "levels_seen": sorted({level for _, level in samples}),
            "level_full_again_after_thaw_s": round(back_after, 2) if ended_full else None,
            "requests_over_2s": len(slow),
        }  # fmt: skip
        checks = {
            "key without a budget: >= 99% success": ok >= 0.99 * len(free_r) and len(during) > 0,
            f"level full <= {RECOVERY_S:.0f} s after Redis returns": ended_full
            and back_after <= RECOVERY_S,
            "0 requests > 2 s": not slow,
            "budgeted key: refusals are 503 budget_state_unavailable with Retry-After": all(
                r.status == 200
                or (r.status == 503 and r.code == "budget_state_unavailable" and r.retry_after)
                for r in budgeted_r
            ),
        }
        record("redis_freeze", figures, checks)
