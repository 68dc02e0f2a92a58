"""Success rate and latency under a scripted fault schedule (issue: resilience).

Two deployments, A and B, on the simulated provider (same server, two model names, so
faults can target A alone). Open-loop load at a fixed arrival rate; the schedule:

    0-10 s   healthy baseline
    10-40 s  A answers 500 (a 30 s outage)
    40-50 s  recovery (A healthy again; the breaker half-opens and closes)
    50-55 s  A returns 429 with Retry-After: 2 to every request (a 429 storm)
    55-65 s  A hangs (timeouts: first byte after 1 s)
    65-75 s  healthy tail

Reports success rate and p50/p99 per phase, and the added p99 during the outage against
the baseline. Everything targets 127.0.0.1 and stops by itself.

    .venv/bin/python bench/resilience.py [--rate 50] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from interlock.sim import SimControl
from interlock.sim.process import start_sim_process, stop_sim_process

ROOT = Path(__file__).resolve().parent.parent
MASTER = "bench-master-key-0123456789"
BODY = {"model": "ab", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 16}


def phases(scale: float) -> list[tuple[str, float, float, list[dict[str, Any]]]]:
    a = {"model": "sim-a"}
    s = scale
    return [
        ("baseline", 0, 10 * s, []),
        ("A 500s", 10 * s, 40 * s, [{"type": "status", "status": 500, "match": a}]),
        ("recovery", 40 * s, 50 * s, []),
        (
            "A 429 storm",
            50 * s,
            55 * s,
            [{"type": "status", "status": 429, "retry_after": 2, "match": a}],
        ),
        ("A hangs", 55 * s, 65 * s, [{"type": "timeout", "match": a}]),
        ("tail", 65 * s, 75 * s, []),
    ]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(sim_url: str, work: Path) -> tuple[subprocess.Popen[bytes], str]:
    timeouts = {"connect_s": 1, "first_byte_s": 1, "idle_s": 2, "total_s": 5}
    cfg = {
        "state_dir": str(work),
        "storage": {"url": f"sqlite+aiosqlite:///{work}/bench.db"},
        "auth": {"master_key": MASTER},
        "providers": {"sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1"}},
        "deployments": {
            "A": {"provider": "sim", "model": "sim-a", "timeouts": timeouts},
            "B": {"provider": "sim", "model": "sim-b", "timeouts": timeouts},
        },
        "models": {"ab": {"deployments": ["A", "B"]}},
        # sim-a / sim-b are not in the price table: charge a stated price.
        "spend": {"unknown_price": {"action": "allow", "input_per_mtok": 1.0, "output_per_mtok": 2.0}},
        "resilience": {
            "breaker": {"open_s": 2.0, "open_max_s": 8.0, "window_s": 10, "min_calls": 10}
        },
    }
    path = work / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "interlock.cli.main",
        "serve",
        "--config",
        str(path),
        "--port",
        str(port),
    ]
    if (os.cpu_count() or 1) >= 2:
        cmd = ["taskset", "-c", "0", *cmd]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("gateway did not start")


async def drive(
    url: str, sim: SimControl, rate: float, scale: float
) -> list[tuple[float, int, float, str]]:
    sched = phases(scale)
    end = sched[-1][2]
    results: list[tuple[float, int, float, str]] = []
    headers = {"authorization": f"Bearer {MASTER}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def one(t0: float) -> None:
            started = time.monotonic()
            try:
                async with session.post(
                    f"{url}/v1/chat/completions", json=BODY, headers=headers
                ) as r:
                    await r.read()
                    status, dep = r.status, r.headers.get("x-interlock-deployment", "")
            except aiohttp.ClientError:
                status, dep = 0, ""
            results.append((started - t0, status, time.monotonic() - started, dep))

        t0 = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        current = -1
        n = 0
        while True:
            now = time.monotonic() - t0
            if now >= end:
                break
            idx = next(i for i, p in enumerate(sched) if p[1] <= now < p[2])
            if idx != current:
                current = idx
                await asyncio.to_thread(sim.set_faults, sched[idx][3])
            # Open loop: request n is due at n / rate, whatever earlier ones are doing.
            due = n / rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            tasks.append(asyncio.create_task(one(t0)))
            n += 1
        await asyncio.gather(*tasks)
        await asyncio.to_thread(sim.set_faults, [])
    return results


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=50.0, help="requests per second (open loop)")
    ap.add_argument("--scale", type=float, default=1.0, help="stretch or shrink the schedule")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = ap.parse_args()
    sim_proc, sim_url = start_sim_process("--seed", "3")
    with tempfile.TemporaryDirectory() as tmp:
        gw, url = start_gateway(sim_url, Path(tmp))
        try:
            results = asyncio.run(drive(url, SimControl(sim_url), args.rate, args.scale))
        finally:
            os.killpg(gw.pid, signal.SIGTERM)
            gw.wait(10)
            stop_sim_process(sim_proc)
    rows = []
    base_p99 = None
    for name, start, end, _ in phases(args.scale):
        sample = [r for r in results if start <= r[0] < end]
        ok = [r for r in sample if r[1] == 200]
        lat = [r[2] * 1000 for r in ok]
        row = {
            "phase": name,
            "requests": len(sample),
            "success_rate": len(ok) / len(sample) if sample else float("nan"),
            "p50_ms": pct(lat, 0.5),
            "p99_ms": pct(lat, 0.99),
            "served_by_b": sum(1 for r in ok if r[3] == "B") / len(ok) if ok else float("nan"),
        }
        if name == "baseline":
            base_p99 = row["p99_ms"]
        rows.append(row)
    total_ok = sum(1 for r in results if r[1] == 200)
    summary = {
        "rate_rps": args.rate,
        "requests": len(results),
        "success_rate": total_ok / len(results),
        "added_p99_ms_during_outage": rows[1]["p99_ms"] - (base_p99 or 0.0),
        "phases": rows,
        "failures": sorted({r[1] for r in results if r[1] != 200}),
    }
    print(f"{'phase':<14} {'requests':>8} {'success':>9} {'p50 ms':>8} {'p99 ms':>8} {'via B':>6}")
    for r in rows:
        print(f"{r['phase']:<14} {r['requests']:>8} {r['success_rate']:>9.4%} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['served_by_b']:>6.0%}")  # fmt: skip
    print(f"overall success {summary['success_rate']:.4%} of {len(results)}; "
          f"added p99 during the outage {summary['added_p99_ms_during_outage']:.1f} ms")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"resilience-{int(time.time())}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "phases"}))


if __name__ == "__main__":
    main()
