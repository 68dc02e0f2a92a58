"""Charge what was generated: streams the client aborts are charged for what the provider
produced, so the ledger stays within 2% of the provider's bill (issue 12, "Done when").

Two replicas on Redis and PostgreSQL, the simulator streaming at a finite speed.
Part A is the issue's attack: a key with a $0.10 hard limit that disconnects near the end
of each of 40 streams (it made the provider bill $0.90 while the ledger showed $0).
Part B: 200 mixed requests of a key without a budget (plain answers, streams read to the
end, streams aborted early, midway and late, n=2 streams, Anthropic-format and Gemini
deployments, /v1/messages streams).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from interlock.sim import SimControl
from tests.drills.harness import (
    PgSchema,
    Result,
    client,
    drill_config,
    ledger_cost,
    make_key,
    money,
    provider_bill,
    record,
    run_all,
    running,
    send,
    statuses,
)

pytestmark = [pytest.mark.drill, pytest.mark.redis, pytest.mark.postgres]

LIMIT = Decimal("0.10")
TOKENS = 60  # the simulator's answer length; streamed one token per chunk
SPEED = 300  # tokens a second


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def within(ledger: Decimal, provider: Decimal, tolerance: Decimal) -> bool:
    if provider == 0:
        return ledger == 0
    return abs(ledger - provider) / provider <= tolerance


@pytest.mark.timeout(300)
def test_aborted_streams_are_charged(
    sim_url: str, sim: SimControl, tmp_path: Path, redis_url: str, pg: PgSchema
) -> None:
    cfg = drill_config(sim_url, redis_url=redis_url, pg=pg)
    sim.set_config(output_tokens=TOKENS, tokens_per_s=SPEED)
    with running(cfg, tmp_path, replicas=2, pg=pg, sim=sim) as cluster:
        a_headers, a_key = make_key(cluster.urls[0], user="aborter",
                                    budgets=[{"limit_usd": float(LIMIT), "window": "daily"}])  # fmt: skip
        b_headers, b_key = make_key(cluster.urls[0], user="mixed")
        time.sleep(2.5)  # every replica has loaded the budget

        async def part_a() -> list[Result]:
            async with client(connections=16) as c:
                return await run_all(
                    [lambda i=i: send(c, "POST", f"{cluster.lb()}/v1/chat/completions",
                                      headers=a_headers, tag="late", stream_read=TOKENS - 8,
                                      json=chat("chat", f"stream {i}", stream=True, max_tokens=TOKENS))
                     for i in range(40)],
                    8,
                )  # fmt: skip

        a = asyncio.run(part_a())
        time.sleep(1.0)
        a_provider, _ = provider_bill(sim)

        # (tag, path, body, data lines to read before dropping; None: read everything)
        mix: list[tuple[str, str, dict[str, Any], int | None]] = [
            ("plain", "/v1/chat/completions", chat("chat", "plain"), None),
            ("full_stream", "/v1/chat/completions", chat("chat", "full", stream=True), 10_000),
            ("abort_early", "/v1/chat/completions", chat("chat", "early", stream=True), 2),
            ("abort_mid", "/v1/chat/completions", chat("chat", "mid", stream=True), TOKENS // 2),
            ("abort_late", "/v1/chat/completions", chat("chat", "late", stream=True), TOKENS - 5),
            ("abort_n2", "/v1/chat/completions", chat("chat", "two", stream=True, n=2), TOKENS),
            ("abort_anthropic", "/v1/chat/completions", chat("claude", "an", stream=True), 20),
            ("abort_gemini", "/v1/chat/completions", chat("gemini", "ge", stream=True), 20),
            ("abort_messages", "/v1/messages",
             chat("chat", "msg", stream=True, max_tokens=TOKENS), 20),
            ("abort_completions", "/v1/completions",
             {"model": "chat", "prompt": "once upon", "stream": True, "max_tokens": TOKENS}, 25),
        ]  # fmt: skip
        forms = itertools.cycle(mix)

        async def part_b() -> list[Result]:
            async with client(connections=32) as c:
                jobs = []
                for i in range(200):
                    tag, path, body, read = next(forms)
                    # Distinct requests, no cache hits (the Messages API's field for it is
                    # metadata.user_id: it refuses OpenAI's top-level `user`, as Anthropic does).
                    who = ({"metadata": {"user_id": f"u{i}"}} if path == "/v1/messages"
                           else {"user": f"u{i}"})  # fmt: skip
                    body = {**body, **who}
                    jobs.append(lambda tag=tag, path=path, body=body, read=read: send(
                        c, "POST", f"{cluster.lb()}{path}", headers=b_headers, tag=tag,
                        json=body, stream_read=read))  # fmt: skip
                return await run_all(jobs, 20)

        b = asyncio.run(part_b())
        time.sleep(1.0)
        total_provider, totals = provider_bill(sim)
        b_provider = total_provider - a_provider
        rows = pg.wait_ledger([r.request_id for r in a + b], timeout=60)
        a_ledger = ledger_cost(r for r in rows if r["key_id"] == a_key["id"])
        b_ledger = ledger_cost(r for r in rows if r["key_id"] == b_key["id"])
        b_by_tag: dict[str, int] = {}
        for r in b:
            b_by_tag[r.tag] = b_by_tag.get(r.tag, 0) + (r.status == 200)
        aborted_rows = [r for r in rows if r["outcome"] == "client_closed"]
        figures = {
            "replicas": 2,
            "part_a": {"streams": len(a), "statuses": statuses(a), "limit_usd": str(LIMIT),
                       "provider_usd": money(a_provider), "ledger_usd": money(a_ledger)},
            "part_b": {"requests": len(b), "statuses": statuses(b), "served_by_form": b_by_tag,
                       "provider_usd": money(b_provider), "ledger_usd": money(b_ledger),
                       "ledger_vs_provider_pct": round(float((b_ledger - b_provider) / b_provider * 100), 2)
                       if b_provider else None},
            "client_closed_rows": len(aborted_rows),
            "client_closed_rows_with_0_tokens": sum(r["completion_tokens"] == 0 for r in aborted_rows),
            "provider_requests": totals["requests"],
            "ledger_vs_provider_pct": round(float((a_ledger + b_ledger - total_provider) / total_provider * 100), 2),
        }  # fmt: skip
        checks = {
            "A: provider billed <= the $0.10 limit": a_provider <= LIMIT,
            # Over the whole drill (A alone is 5-ish streams: one token is 1.7% of it).
            "ledger within 2% of the provider": within(
                a_ledger + b_ledger, total_provider, Decimal("0.02")
            ),
            "B: ledger within 2% of the provider": within(b_ledger, b_provider, Decimal("0.02")),
            "every aborted stream is charged tokens": all(
                r["completion_tokens"] > 0 for r in aborted_rows
            ),
            "B: every request answered": all(r.status == 200 for r in b),
        }
        record("aborted_streams", figures, checks)
