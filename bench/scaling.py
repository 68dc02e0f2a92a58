"""Horizontal scaling on this machine: 3 gateways + 2 workers on Redis and PostgreSQL
behind nginx, one gateway SIGKILLed under load.

Steps (about 40 s):

1. the simulated provider; a fresh PostgreSQL schema (ledger, keys, jobs) and a fresh
   Redis key prefix (limits, budgets, circuit state); 3 ``interlock serve`` processes
   that run no jobs, 2 ``interlock worker`` processes; nginx with an upstream of the 3
   ports and ``proxy_next_upstream error timeout`` (a refused connection is retried on
   another gateway; a request already sent is not: POST is not idempotent);
2. **throughput**: wrk (closed loop, 32 connections) for a few seconds against one
   gateway directly, then against nginx in front of all three;
3. **kill**: ``interlock loadtest`` at a fixed rate through nginx while, at the same
   time, a key of team ``limited`` (``rpm`` limit) sends twice its limit, a key of team
   ``capped`` (a hard budget) spends past its limit, and jobs are submitted; a third of
   the way in, one gateway gets SIGKILL;
4. the verdicts: failed requests vs the requests nginx had in flight on the killed
   gateway (from its access log: upstream, end time, duration), requests each surviving
   gateway served after the kill, admitted RPM ≤ limit, admitted spend (PostgreSQL
   ledger) ≤ budget, every acknowledged job succeeded.

The throughput ratio (three processes behind nginx against one) is a figure of this
report, not a verdict: on two shared cores it moves with whatever else runs (1.02 under
a parallel test run, 1.83 on a quiet machine), so tests/capacity/test_scaling.py asserts
only what must hold however busy the machine is.

Run: ``.venv/bin/python bench/scaling.py`` (writes bench/results/scaling-<ts>.json).
Needs Redis and PostgreSQL at INTERLOCK_TEST_REDIS_URL / INTERLOCK_TEST_PG_URL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

from interlock.sim import SimControl
from interlock.sim.process import start_sim_process, stop_sim_process

ROOT = Path(__file__).resolve().parent
KEY = "scaling-master-key-3d9e"
PG_URL = os.environ.get(
    "INTERLOCK_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("INTERLOCK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
INTERLOCK = [sys.executable, "-m", "interlock.cli.main"]
RPM_LIMIT = 20
BUDGET_USD = Decimal("0.50")
MSG = [{"role": "user", "content": "one line about interlocking signals"}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(work: Path, sim_url: str, schema: str, prefix: str) -> dict[str, Any]:
    return {
        "state_dir": str(work / "state"),  # shared: a killed process's ledger spool is replayed
        "storage": {"url": PG_URL, "db_schema": schema},
        "state": {
            "backend": "redis",
            "redis_url": REDIS_URL,
            "key_prefix": prefix,
            "redis_timeout_s": 0.5,
        },
        # cluster mode: every replica and worker shares the key-hash pepper and the
        # webhook secret (startup refuses to generate one per process)
        "auth": {
            "master_key": KEY,
            "cache_ttl_s": 5.0,
            "key_hash_secret": secrets.token_urlsafe(32),
        },
        "providers": {"sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1"}},
        "deployments": {
            "small": {
                "provider": "sim",
                "model": "sim-small",
                "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
            },
            "pricey": {
                "provider": "sim",
                "model": "sim-medium",
                "price": {"input_per_mtok": 500.0, "output_per_mtok": 2000.0},
            },
        },
        "models": {"chat": {"deployments": ["small"]}, "pricey": {"deployments": ["pricey"]}},
        "spend": {
            "budgets": [
                {
                    "scope": "team",
                    "subject": "capped",
                    "window": "daily",
                    "limit_usd": float(BUDGET_USD),
                }
            ],
            "rate_limits": [{"scope": "team", "subject": "limited", "rpm": RPM_LIMIT}],
        },
        "cache": {"enabled": False},
        "resilience": {"degradation": {"signals": {}}},
        "alerts": {"enabled": False},
        "jobs": {
            "run_in_serve": False,
            "poll_interval_s": 0.05,
            "metrics_interval_s": 1.0,
            "webhooks": {"secret": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()},
        },
    }


def nginx_conf(work: Path, port: int, upstreams: list[int]) -> Path:
    tmp = work / "nginx-tmp"
    tmp.mkdir(exist_ok=True)
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;" for p in upstreams
    )
    conf = work / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    log_format up '$msec $request_time $status $upstream_addr';
    access_log {work}/nginx-access.log up;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream interlock {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://interlock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout;
        }}
    }}
}}
""")
    return conf


def spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    return subprocess.Popen(
        cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"not ready: {url}\n{log.read_text()}")


def wrk(url: str, seconds: float, work: Path) -> float:
    body = work / "body.json"
    body.write_text(json.dumps({"model": "chat", "messages": MSG, "max_tokens": 8}))
    env = {**os.environ, "BENCH_BODY_FILE": str(body), "BENCH_AUTH": KEY}
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c32",
            f"-d{max(1, round(seconds))}s",
            "-s",
            str(ROOT / "wrk_post.lua"),
            f"{url}/v1/chat/completions",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 30,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON "))
    doc = json.loads(line.removeprefix("BENCH_JSON "))
    ok = doc["requests"] - doc["status"] - doc["connect"] - doc["read"] - doc["timeout"]
    return ok / (doc["duration_us"] / 1e6)


def in_flight_at(log: Path, port: int, at: float) -> tuple[int, int]:
    """(requests nginx had in flight on 127.0.0.1:PORT at ``at``, of those the failed).

    A request that nginx retried elsewhere lists several upstreams; it was only in flight
    on the killed one if its last attempt went there."""
    n = failed = 0
    for line in log.read_text().splitlines():
        m = re.match(r"(\S+) (\S+) (\d+) (.*)", line)
        if not m:
            continue
        end, dur, status, ups = float(m[1]), float(m[2]), int(m[3]), m[4]
        last = ups.split(",")[-1].strip().split(" : ")[-1].strip()
        # Started before the process was gone: SIGKILL is sent at ``at`` but the process
        # (and its listening socket) takes a moment to disappear, so requests nginx handed
        # it just after ``at`` were in flight on it too.
        if last == f"127.0.0.1:{port}" and end - dur <= at + 0.25 and at <= end + 0.001:
            n += 1
            failed += status >= 500
    return n, failed


def served_after(log: Path, killed_port: int, at: float) -> dict[str, int]:
    """2xx answers per upstream for requests nginx started after the killed process was
    gone (``at`` + 0.25 s, as in :func:`in_flight_at`): the survivors' share."""
    out: dict[str, int] = {}
    for line in log.read_text().splitlines():
        m = re.match(r"(\S+) (\S+) (\d+) (.*)", line)
        if not m:
            continue
        end, dur, status, ups = float(m[1]), float(m[2]), int(m[3]), m[4]
        last = ups.split(",")[-1].strip().split(" : ")[-1].strip()
        if end - dur > at + 0.25 and 200 <= status < 300 and last != f"127.0.0.1:{killed_port}":
            out[last] = out.get(last, 0) + 1
    return out


async def ledger_sums(schema: str) -> dict[str, Any]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(PG_URL)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT team_id, outcome, count(*), coalesce(sum(cost_usd), 0) "
                        f'FROM "{schema}".ledger GROUP BY team_id, outcome'
                    )
                )
            ).fetchall()
    finally:
        await engine.dispose()
    return {
        f"{t or '-'}:{o}": {"requests": int(n), "cost_usd": Decimal(str(c))} for t, o, n, c in rows
    }


async def cleanup(schema: str, prefix: str) -> None:
    from redis.asyncio import Redis
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(PG_URL)
    async with engine.begin() as conn:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    await engine.dispose()
    r = Redis.from_url(REDIS_URL)
    keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await r.delete(*keys)
    await r.aclose()


class Side:
    """The concurrent clients of the kill phase: rpm key, budget key, job submitter."""

    def __init__(self, lb: str, rpm_key: str, budget_key: str, duration: float) -> None:
        self.lb, self.duration = lb, duration
        self.rpm_key, self.budget_key = rpm_key, budget_key
        self.rpm: list[int] = []
        self.rpm_span: tuple[float, float] = (0.0, 0.0)
        self.budget: list[tuple[int, Decimal]] = []
        self.jobs: list[str] = []
        self.job_submit_failures = 0

    def post(self, key: str, path: str, body: dict[str, Any]) -> httpx.Response | None:
        try:
            return httpx.post(
                self.lb + path, json=body, timeout=30, headers={"authorization": f"Bearer {key}"}
            )
        except httpx.HTTPError:
            return None

    def rpm_client(self) -> None:
        n = RPM_LIMIT * 2
        first = time.monotonic()
        for _ in range(n):
            self.rpm_span = (first, time.monotonic())
            r = self.post(self.rpm_key, "/v1/chat/completions", {"model": "chat", "messages": MSG})
            self.rpm.append(r.status_code if r is not None else 0)
            time.sleep(self.duration / n)

    def budget_client(self) -> None:
        def one(_: int) -> tuple[int, Decimal]:
            r = self.post(
                self.budget_key,
                "/v1/chat/completions",
                {"model": "pricey", "messages": MSG, "max_tokens": 16},
            )
            if r is None:
                return 0, Decimal(0)
            return r.status_code, Decimal(r.headers.get("x-interlock-cost-usd", "0"))

        with ThreadPoolExecutor(4) as pool:
            self.budget = list(pool.map(one, range(40)))

    def job_client(self) -> None:
        for i in range(30):
            r = self.post(
                KEY,
                "/v1/jobs",
                {
                    "endpoint": "/v1/chat/completions",
                    "body": {
                        "model": "chat",
                        "messages": [{"role": "user", "content": f"job {i}"}],
                    },
                },
            )
            if r is not None and r.status_code == 202:
                self.jobs.append(r.json()["id"])
            else:
                self.job_submit_failures += 1
            time.sleep(self.duration / 30)


def wait_jobs(lb: str, ids: list[str], timeout: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    status: dict[str, str] = {}
    with httpx.Client(base_url=lb, headers={"authorization": f"Bearer {KEY}"}, timeout=10) as c:
        while time.monotonic() < deadline:
            for i in ids:
                if status.get(i) not in ("succeeded", "failed", "cancelled"):
                    r = c.get(f"/v1/jobs/{i}")
                    if r.status_code == 200:
                        status[i] = r.json()["status"]
            if all(status.get(i) in ("succeeded", "failed", "cancelled") for i in ids):
                break
            time.sleep(0.3)
    counts: dict[str, int] = {}
    for i in ids:
        counts[status.get(i, "unknown")] = counts.get(status.get(i, "unknown"), 0) + 1
    return counts


def run(
    work: Path, *, rate: float = 60.0, duration: float = 9.0, wrk_s: float = 4.0
) -> dict[str, Any]:
    """The whole experiment; returns the result document (nothing asserted here)."""
    schema, prefix = "scale_" + secrets.token_hex(4), f"sc{secrets.token_hex(4)}:"
    sim, sim_url = start_sim_process("--seed", "5")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        cfg = config(work, sim_url, schema, prefix)
        cfg_path = work / "interlock.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg))
        ports = [free_port() for _ in range(3)]
        gws = []
        for p in ports:
            log = work / f"gateway-{p}.log"
            gw = spawn([*INTERLOCK, "serve", "--config", str(cfg_path), "--port", str(p)], log)
            procs.append(gw)
            gws.append(gw)
            wait_ready(f"http://127.0.0.1:{p}/readyz", gw, log)  # one at a time: migrations
        for i in range(2):
            procs.append(
                spawn(
                    [*INTERLOCK, "worker", "--config", str(cfg_path), "--concurrency", "4"],
                    work / f"worker-{i}.log",
                )
            )
        lb_port = free_port()
        procs.append(
            spawn(["nginx", "-c", str(nginx_conf(work, lb_port, ports))], work / "nginx.log")
        )
        lb = f"http://127.0.0.1:{lb_port}"
        wait_ready(f"{lb}/readyz", procs[-1], work / "nginx.log")
        admin = {"authorization": f"Bearer {KEY}"}
        rpm_key = httpx.post(f"{lb}/admin/keys", headers=admin, json={"team": "limited"}).json()[
            "key"
        ]
        budget_key = httpx.post(f"{lb}/admin/keys", headers=admin, json={"team": "capped"}).json()[
            "key"
        ]

        # throughput: one process, then three behind nginx (the simulator answers at once)
        one = wrk(f"http://127.0.0.1:{ports[0]}", wrk_s, work)
        three = wrk(lb, wrk_s, work)

        # the kill: ~300 ms answers so that requests are in flight when it happens
        SimControl(sim_url).set_config(ttft_ms=300)
        time.sleep(0.5)
        kill_log_from = (work / "nginx-access.log").stat().st_size
        side = Side(lb, rpm_key, budget_key, duration)
        threads = [
            threading.Thread(target=f)
            for f in (side.rpm_client, side.budget_client, side.job_client)
        ]
        lt = subprocess.Popen(
            [
                *INTERLOCK,
                "loadtest",
                "--url",
                lb,
                "--api-key",
                KEY,
                "--model",
                "chat",
                "--rate",
                str(rate),
                "--duration",
                str(duration),
                "--timeout",
                "30",
                "--json",
                str(work / "lt.json"),
                "--no-progress",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        for t in threads:
            t.start()
        time.sleep(duration / 3)
        killed_at = time.time()
        gws[1].send_signal(signal.SIGKILL)
        lt.wait(duration + 90)
        for t in threads:
            t.join(120)
        jobs = wait_jobs(lb, side.jobs)
        time.sleep(1.5)  # ledger write-behind
        access = work / "nginx-access.log"
        tail = work / "nginx-access-kill.log"
        tail.write_bytes(access.read_bytes()[kill_log_from:])
        in_flight, failed_there = in_flight_at(tail, ports[1], killed_at)
        after = served_after(tail, ports[1], killed_at)
        survivors = {f"127.0.0.1:{q}": after.get(f"127.0.0.1:{q}", 0) for q in (ports[0], ports[2])}
        (work / "kill.json").write_text(json.dumps({"port": ports[1], "at": killed_at}))
        loadtest = json.loads((work / "lt.json").read_text())
        for p in (gws[0], gws[2]):
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        sums = asyncio.run(ledger_sums(schema))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        stop_sim_process(sim)
        asyncio.run(cleanup(schema, prefix))
    failed_5xx = [s for s in side.rpm if s == 0 or s >= 500] + [
        s for s, _ in side.budget if s == 0 or s >= 500
    ]
    lt_failed = sum(n for k, n in loadtest["errors"].items() if not k.startswith("http_4"))
    capped = sums.get("capped:ok", {"requests": 0, "cost_usd": Decimal(0)})
    limited_ok = sums.get("limited:ok", {"requests": 0})["requests"]
    return {
        "throughput_rps": {
            "1_process": round(one, 1),
            "3_processes_nginx": round(three, 1),
            "ratio": round(three / one, 2),
        },
        "kill": {
            "loadtest": {
                "rate": rate,
                "duration_s": duration,
                "sent": loadtest["requests"]["sent"],
                "ok": loadtest["requests"]["ok"],
                "unfinished": loadtest["requests"]["unfinished"],
                "errors": loadtest["errors"],
                "p95_ms": loadtest["latency_ms"]["p95"],
            },
            "failed_requests": lt_failed + len(failed_5xx) + side.job_submit_failures,
            "in_flight_on_killed": in_flight,
            "failed_on_killed_per_nginx": failed_there,
            # 2xx answers per surviving gateway to requests started after the kill
            "served_after_kill": survivors,
        },
        "rpm": {
            "limit": RPM_LIMIT,
            "sent": len(side.rpm),
            "admitted_client": side.rpm.count(200),
            # GCRA: a full bucket of `limit`, then one more every 60/limit s
            "gcra_bound": RPM_LIMIT + int((side.rpm_span[1] - side.rpm_span[0]) * RPM_LIMIT / 60),
            "admitted_ledger": limited_ok,
            "refused_429": side.rpm.count(429),
        },
        "budget": {
            "limit_usd": str(BUDGET_USD),
            "admitted_spend_usd": str(capped["cost_usd"]),
            "admitted": capped["requests"],
            "refused": sum(1 for s, _ in side.budget if s in (402, 403, 429)),
        },
        "jobs": {
            "acknowledged": len(side.jobs),
            "final": jobs,
            "submit_failures": side.job_submit_failures,
        },
    }


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=60.0)
    ap.add_argument("--duration", type=float, default=9.0)
    ap.add_argument("--wrk-s", type=float, default=4.0)
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep the logs")
    args = ap.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args.keep, rate=args.rate, duration=args.duration, wrk_s=args.wrk_s)
    else:
        with tempfile.TemporaryDirectory(prefix="interlock-scaling-") as tmp:
            result = run(Path(tmp), rate=args.rate, duration=args.duration, wrk_s=args.wrk_s)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    result["run"] = stamp
    out = ROOT / "results" / f"scaling-{stamp}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
