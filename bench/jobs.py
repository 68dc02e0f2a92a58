"""The jobs benchmark (`make bench-jobs`): jobs/s end to end per queue backend, and a burst.

For each backend (SQLite, PostgreSQL, Redis) one `interlock serve` (one process, its
embedded worker pool of ``--concurrency`` slots, pinned to core 0) runs jobs against the
simulated provider with no added latency (core 1, with this driver):

1. **Throughput**: submit ``--jobs`` chat jobs (32 submitters), and time from the first
   submit to the last job finished, read from ``interlock_jobs_finished_total``. Jobs
   have unique prompts (no cache hits), so each one is a full pass through
   ``Gateway.handle`` and an upstream call.
2. **Burst**: submit 10× what the pool finishes in one second (at least 10× its
   concurrency) as fast as possible, then let it drain: submit errors, the peak queue
   depth (``interlock_jobs_queue_depth``, polled every 0.1 s), the time to drain, and
   failed jobs. The claim under test is "0 errors": the queue absorbs the spike.

Results go to bench/results/jobs-<timestamp>.json.

    python bench/jobs.py                          # all three backends (~2 minutes)
    python bench/jobs.py --backends sqlite --jobs 500
PostgreSQL and Redis are taken from INTERLOCK_TEST_PG_URL / INTERLOCK_TEST_REDIS_URL
(defaults: postgresql+asyncpg://postgres@127.0.0.1:5432/test, redis://127.0.0.1:6379/0);
a backend whose server does not answer is skipped and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

import harness
from harness import HOST, Procs

MASTER_KEY = "bench-master-key-7c1e9a2f4b"
SIM_KEY = "sim-provider-secret-bench"
PG_URL = os.environ.get(
    "INTERLOCK_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("INTERLOCK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}


def reachable(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def gateway_config(work: Path, sim_url: str, backend: str, concurrency: int) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "state_dir": str(work / "state"),
        "storage": {"url": f"sqlite+aiosqlite:///{work}/state/interlock.db"},
        "auth": {"master_key": MASTER_KEY, "cache_ttl_s": 60.0},
        "providers": {
            "sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1", "api_key": SIM_KEY}
        },
        "deployments": {"sim-small": {"provider": "sim", "model": "sim-small"}},
        "models": {"chat": {"deployments": ["sim-small"]}},
        "spend": {
            "unknown_price": {"action": "allow", "input_per_mtok": 1.0, "output_per_mtok": 2.0}
        },
        "resilience": {"degradation": {"signals": {}}},
        "jobs": {"concurrency": concurrency, "poll_interval_s": 0.02, "metrics_interval_s": 0.1},
    }
    if backend == "postgres":
        cfg["storage"] = {"url": PG_URL, "db_schema": "bench_" + secrets.token_hex(4)}
    elif backend == "redis":
        cfg["state"] = {"redis_url": REDIS_URL, "key_prefix": f"bench:{secrets.token_hex(4)}:"}
        cfg["jobs"]["backend"] = "redis"
    return cfg


def metric(text: str, name: str, label: str | None = None) -> float:
    """Sum of a metric's samples (those whose labels contain ``label`` if given)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {") and (label is None or label in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def submit_all(c: httpx.AsyncClient, n: int, tag: str, workers: int = 32) -> dict[str, Any]:
    """Submit ``n`` jobs with ``workers`` concurrent submitters; statuses and latencies."""
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    counter = iter(range(n))

    async def one() -> None:
        for i in counter:
            body = {"endpoint": "/v1/chat/completions", "body": {
                "model": "chat", "max_tokens": 8,
                "messages": [{"role": "user", "content": f"{tag} job {i}: summarise the timetable"}]}}  # fmt: skip
            t = time.perf_counter()
            try:
                r = await c.post("/v1/jobs", json=body)
                code = r.status_code
            except httpx.HTTPError:
                code = 0
            latencies.append(time.perf_counter() - t)
            statuses[code] = statuses.get(code, 0) + 1

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(workers)))
    latencies.sort()
    return {
        "submitted": n,
        "seconds": time.perf_counter() - start,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "submit_p50_ms": 1000 * latencies[len(latencies) // 2],
        "submit_p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


async def run_phase(c: httpx.AsyncClient, n: int, tag: str, timeout: float) -> dict[str, Any]:
    """Submit ``n`` jobs and wait for all to finish, watching depth and finished counts."""
    base = (await c.get("/metrics")).text
    done0 = metric(base, "interlock_jobs_finished_total")
    failed0 = metric(base, "interlock_jobs_finished_total", 'status="failed"')
    peak = 0.0
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            text = (await c.get("/metrics")).text
            peak = max(peak, metric(text, "interlock_jobs_queue_depth"))
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch())
    t0 = time.perf_counter()
    sub = await submit_all(c, n, tag)
    t_submitted = time.perf_counter()
    accepted = sub["statuses"].get("202", 0)
    finished = 0.0
    while time.perf_counter() - t0 < timeout:
        text = (await c.get("/metrics")).text
        finished = metric(text, "interlock_jobs_finished_total") - done0
        if finished >= accepted:
            break
        await asyncio.sleep(0.05)
    t_done = time.perf_counter()
    stop.set()
    await watcher
    text = (await c.get("/metrics")).text
    failed = metric(text, "interlock_jobs_finished_total", 'status="failed"') - failed0
    return {
        **sub,
        "accepted": accepted,
        "finished": int(finished),
        "failed_jobs": int(failed),
        "submit_errors": n - accepted,
        "errors": (n - accepted) + int(failed) + max(0, accepted - int(finished)),
        "end_to_end_s": t_done - t0,
        "jobs_per_s": finished / (t_done - t0),
        "drain_s_after_last_submit": t_done - t_submitted,
        "peak_queue_depth": int(peak),
    }


async def drive(url: str, jobs: int, concurrency: int, timeout: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, limits=limits, timeout=30) as c:
        await run_phase(c, min(100, jobs), "warm", timeout)
        steady = await run_phase(c, jobs, "steady", timeout)
        burst_n = max(10 * concurrency, int(10 * steady["jobs_per_s"]))
        burst = await run_phase(c, burst_n, "burst", timeout)
        burst["worker_capacity_jobs_per_s"] = steady["jobs_per_s"]
        burst["burst_over_capacity"] = burst_n / max(1.0, steady["jobs_per_s"])
    return {"throughput": steady, "burst": burst}


async def cleanup(cfg: dict[str, Any]) -> None:
    if "db_schema" in cfg["storage"]:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        engine = create_async_engine(PG_URL)
        async with engine.begin() as conn:
            await conn.execute(
                text(f'DROP SCHEMA IF EXISTS "{cfg["storage"]["db_schema"]}" CASCADE')
            )
        await engine.dispose()
    if cfg.get("state"):
        from redis.asyncio import Redis

        r = Redis.from_url(REDIS_URL)
        keys = [k async for k in r.scan_iter(match=cfg["state"]["key_prefix"] + "*", count=1000)]
        for i in range(0, len(keys), 1000):
            await r.delete(*keys[i : i + 1000])
        await r.aclose()


def bench_backend(backend: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    gw_core, load_core = harness.cores()
    work.mkdir(parents=True, exist_ok=True)
    with Procs(work) as procs:
        sim_port = harness.free_port()
        sim = procs.start("sim", [sys.executable, "-m", "interlock.sim", "--port", str(sim_port)],
                          load_core)  # fmt: skip
        sim_url = f"http://{HOST}:{sim_port}"
        harness.wait_http(sim_url + "/v1/models", sim)
        cfg = gateway_config(work, sim_url, backend, args.concurrency)
        path = work / "interlock.yaml"
        path.write_text(yaml.safe_dump(cfg))
        port = harness.free_port()
        gw = procs.start("gateway", [str(harness.VENV_BIN / "interlock"), "serve", "--config",
                                     str(path), "--port", str(port)], gw_core)  # fmt: skip
        url = f"http://{HOST}:{port}"
        try:
            harness.wait_http(url + "/readyz", gw)
            return asyncio.run(drive(url, args.jobs, args.concurrency, args.timeout))
        except Exception:
            print(procs.log("gateway")[-3000:], file=sys.stderr)
            raise
        finally:
            procs.stop_all()
            asyncio.run(cleanup(cfg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgres,redis")
    ap.add_argument("--jobs", type=int, default=1000, help="jobs in the throughput phase")
    ap.add_argument("--concurrency", type=int, default=16, help="the pool's slots")
    ap.add_argument("--timeout", type=float, default=180.0, help="per phase, seconds")
    args = ap.parse_args()
    harness.exit_on_sigterm()
    harness.pin_self(harness.cores()[1])
    results: dict[str, Any] = {
        "kind": "jobs",
        "machine": harness.machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "jobs": args.jobs,
        "concurrency": args.concurrency,
        "backends": {},
    }
    ports = {"postgres": 5432, "redis": 6379}
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
        for backend in args.backends.split(","):
            if backend in ports and not reachable(ports[backend]):
                print(f"{backend}: server not reachable on 127.0.0.1:{ports[backend]}; skipped")
                results["backends"][backend] = {"skipped": "server not reachable"}
                continue
            print(f"{backend}: running …", flush=True)
            out = bench_backend(backend, args, Path(tmp) / backend)
            results["backends"][backend] = out
            t, b = out["throughput"], out["burst"]
            print(f"  {t['jobs_per_s']:.0f} jobs/s end to end ({t['finished']} jobs, "
                  f"{t['errors']} errors); burst {b['submitted']} jobs "
                  f"({b['burst_over_capacity']:.1f}x capacity): peak depth "
                  f"{b['peak_queue_depth']}, drained {b['drain_s_after_last_submit']:.1f} s after "
                  f"the last submit, {b['errors']} errors", flush=True)  # fmt: skip
    harness.RESULTS_DIR.mkdir(exist_ok=True)
    out_path = harness.RESULTS_DIR / f"jobs-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out_path.write_text(json.dumps(results, indent=2))
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
