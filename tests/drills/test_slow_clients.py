"""Slow clients: connections that trickle their headers or their body a byte at a time
are closed within the configured read timeouts, and do not stop others being served
(issue 12, "What to build" 4 and the fault suite of item 6).

One gateway process (one worker: the one slow connections would starve), 40 connections
trickling a request head, 40 trickling a body, and a normal client meanwhile."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from interlock.settings import ServerSettings
from interlock.sim import SimControl
from tests.drills.harness import (
    Result,
    client,
    drill_config,
    keep_sending,
    latency_figures,
    make_key,
    percentile,
    record,
    running,
    send,
    statuses,
    trickle,
)

pytestmark = [pytest.mark.drill]

HEADER_TIMEOUT_S, BODY_TIMEOUT_S = 2.0, 3.0
SLACK_S = 1.5  # how late past its timeout a close may come (a check runs every so often)
SLOW = 40  # of each kind
LIMIT_S = 20.0  # a connection still open after this was never going to be closed


@pytest.mark.timeout(300)
def test_slow_clients_are_cut_off(sim_url: str, sim: SimControl, tmp_path: Path) -> None:
    cfg = drill_config(sim_url)
    fields = ServerSettings.model_fields
    server: dict[str, float] = {}
    if "header_timeout_s" in fields:
        server["header_timeout_s"] = HEADER_TIMEOUT_S
    if "body_timeout_s" in fields:
        server["body_timeout_s"] = BODY_TIMEOUT_S
    if server:
        cfg["server"] = server
    with running(cfg, tmp_path, replicas=1) as cluster:
        gw = cluster.replicas[0]
        headers, created = make_key(gw.url, user="patient")
        auth = headers["authorization"]
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
                "Content-Type: application/json\r\n").encode()  # fmt: skip
        body = (
            b'{"model": "chat", "messages": [{"role": "user", "content": "' + b"x" * 2000 + b'"}]}'
        )
        with_length = head + f"Content-Length: {len(body)}\r\n\r\n".encode()

        async def go() -> tuple[list[tuple[float, bytes]], list[tuple[float, bytes]], list[Result]]:
            loop = asyncio.get_running_loop()
            with ThreadPoolExecutor(2 * SLOW) as pool:
                heads = [loop.run_in_executor(pool, lambda: trickle(gw.port, head, limit_s=LIMIT_S))
                         for _ in range(SLOW)]  # fmt: skip
                bodies = [loop.run_in_executor(pool, lambda: trickle(
                    gw.port, with_length, body, trickle_head=False, limit_s=LIMIT_S))
                    for _ in range(SLOW)]  # fmt: skip
                async with client(connections=8) as c:
                    stop = asyncio.Event()
                    others = asyncio.ensure_future(keep_sending(lambda i: send(
                        c, "POST", f"{gw.url}/v1/chat/completions", headers=headers, tag="other",
                        json={"model": "chat", "messages": [{"role": "user", "content": f"hi {i}"}]}),
                        stop, 4, 0.05))  # fmt: skip
                    h = await asyncio.gather(*heads)
                    b = await asyncio.gather(*bodies)
                    stop.set()
                    return h, b, await others

        t0 = time.monotonic()
        h, b, others = asyncio.run(go())
        head_s = [s for s, _ in h]
        body_s = [s for s, _ in b]
        body_status = sorted({resp.split(b"\r\n", 1)[0].decode(errors="replace") for _, resp in b})
        figures = {
            "settings": server or "no server.header_timeout_s / body_timeout_s settings",
            "header_tricklers": {"count": SLOW, "closed_after_p50_s": round(percentile(head_s, 50), 2),
                                 "closed_after_max_s": round(max(head_s), 2),
                                 "never_closed": sum(s >= LIMIT_S for s in head_s)},
            "body_tricklers": {"count": SLOW, "closed_after_p50_s": round(percentile(body_s, 50), 2),
                               "closed_after_max_s": round(max(body_s), 2),
                               "never_closed": sum(s >= LIMIT_S for s in body_s),
                               "answers": body_status},
            "others": {"requests": len(others), "statuses": statuses(others), **latency_figures(others)},
            "drill_s": round(time.monotonic() - t0, 1),
        }  # fmt: skip
        checks = {
            "header timeout configured": "header_timeout_s" in server,
            "body timeout configured": "body_timeout_s" in server,
            f"header tricklers closed within {HEADER_TIMEOUT_S} s (+{SLACK_S})": max(head_s)
            <= HEADER_TIMEOUT_S + SLACK_S,
            f"body tricklers closed within {BODY_TIMEOUT_S} s (+{SLACK_S})": max(body_s)
            <= BODY_TIMEOUT_S + SLACK_S,
            "a trickled body is answered 408": body_status == ["HTTP/1.1 408 Request Timeout"],
            "others 100% served": bool(others) and all(r.status == 200 for r in others),
            "others not slowed (p99 < 1 s)": percentile([r.elapsed for r in others], 99) < 1.0,
        }
        assert created["id"]
        record("slow_clients", figures, checks)
