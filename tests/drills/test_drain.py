"""SIGTERM with 2 workers under load: 0 requests accepted and then dropped (issue 12,
"Done when", sixth line). During the drain a request is answered (200, or 503 with
Retry-After) or never accepted (connection refused); a connection the server accepted
and then closed without a status line is a dropped request. In-flight requests and
streams finish.

Every request uses a new connection, as behind a load balancer that does not pool, so
"accepted" means the TCP connection was established. Clients wait out a 503's
Retry-After, as the OpenAI SDKs do; 24 of them keep the server busy throughout."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.drills.harness import (
    Result,
    client,
    drill_config,
    keep_sending,
    make_key,
    record,
    running,
    send,
    statuses,
)

pytestmark = [pytest.mark.drill]

LOAD_S, DRAIN_WATCH_S = 3.0, 8.0


@pytest.mark.timeout(300)
def test_sigterm_with_two_workers_drops_nothing(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    sim.set_config(tokens_per_s=100, output_tokens=40)  # 0.4 s an answer
    with running(drill_config(sim_url), tmp_path, replicas=1, workers=2) as cluster:
        gw = cluster.replicas[0]
        headers, _ = make_key(gw.url, user="drain")

        def chat(i: int, stream: bool) -> dict[str, object]:
            return {"model": "chat", "stream": stream,
                    "messages": [{"role": "user", "content": f"drain {i}"}]}  # fmt: skip

        async def polite(c: httpx.AsyncClient, i: int, stream: bool) -> Result:
            """A client as the OpenAI SDKs are: it waits out a 503's Retry-After."""
            r = await send(c, "POST", f"{gw.url}/v1/chat/completions", headers=headers,
                           tag="stream" if stream else "plain", json=chat(i, stream),
                           stream_read=10_000 if stream else None)  # fmt: skip
            if r.status == 503 and r.retry_after:
                await asyncio.sleep(min(float(r.retry_after), 5.0))
            return r

        async def go() -> tuple[list[Result], list[Result], float, float]:
            async with client(connections=64, timeout=60, keepalive=False) as c:
                stop = asyncio.Event()
                load = asyncio.gather(
                    keep_sending(lambda i: polite(c, i, False), stop, 20, 0.01),
                    keep_sending(lambda i: polite(c, i, True), stop, 4, 0.01),
                )
                await asyncio.sleep(LOAD_S)
                term_at = time.monotonic()
                cluster.send_signal(0, signal.SIGTERM)
                await asyncio.sleep(DRAIN_WATCH_S)
                stop.set()
                plain, streams = await load
                assert gw.proc is not None
                exited = await asyncio.to_thread(gw.proc.wait, 40)
                return plain, streams, term_at, float(exited)

        plain, streams, term_at, _rc = asyncio.run(go())
        results = plain + streams
        # No response and not a refused connection: accepted, then dropped.
        dropped = [r for r in results if r.status == 0 and r.error != "ConnectError"]
        in_flight = [r for r in results if r.started < term_at <= r.started + r.elapsed]
        during = [r for r in results if r.started >= term_at]
        unfinished_streams = [r for r in streams if r in in_flight and not r.extra.get("done")]
        refusals = [r for r in during if r.status == 503]
        figures = {
            "workers": 2,
            "requests": len(results),
            "in_flight_at_sigterm": len(in_flight),
            "in_flight_statuses": statuses(in_flight),
            "sent_during_drain": len(during),
            "during_drain_statuses": statuses(during),
            "accepted_then_dropped": len(dropped),
        }
        checks = {
            "0 accepted-then-dropped requests": not dropped,
            "in-flight requests finish": all(r.status == 200 for r in in_flight),
            "in-flight streams finish": not unfinished_streams,
            "drain refusals are 503 with Retry-After": all(r.retry_after for r in refusals),
            "answers are 200 or 503": all(r.status in (0, 200, 503) for r in results),
        }
        record("drain", figures, checks)
