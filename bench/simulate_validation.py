"""Validation of ``interlock simulate``: its 1× prediction against a real load test.

1. the simulated provider (time to first token + tokens/s, so latency grows with the
   output) behind a real ``interlock serve`` (SQLite ledger, configured prices);
2. ``interlock loadtest`` at a modest open-loop rate with a mix of two models and
   streams, its output lengths drawn per request;
3. ``interlock simulate --scale 1`` on the ledger the run left behind (the discrete-event
   model: latency per deployment fitted from the ledger, prices from the configuration);
4. the errors: predicted cost vs the ledger's recorded cost, predicted p95 vs the load
   test's measured p95 (client side) and vs the ledger's p95 (gateway side).

Also measured: the gateway's CPU per request (utime + stime over the run), the figure
``launch.replica_rps`` sizes replicas with. Results: bench/results/simulate-<ts>.json.

Run: ``.venv/bin/python bench/simulate_validation.py [--rate 20] [--duration 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from interlock.sim.process import start_sim_process, stop_sim_process

ROOT = Path(__file__).resolve().parent
KEY = "bench-master-key-5b1e"
INTERLOCK = [sys.executable, "-m", "interlock.cli.main"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_config(sim_url: str, state: Path) -> dict[str, Any]:
    return {
        "state_dir": str(state),
        "storage": {"url": f"sqlite+aiosqlite:///{state}/interlock.db"},
        "auth": {"master_key": KEY},
        "providers": {"sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1"}},
        "deployments": {
            "small": {
                "provider": "sim",
                "model": "sim-small",
                "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
            },
            "large": {
                "provider": "sim",
                "model": "sim-large",
                "price": {"input_per_mtok": 5.0, "output_per_mtok": 15.0},
            },
        },
        "models": {"chat": {"deployments": ["small"]}, "big": {"deployments": ["large"]}},
        "resilience": {"degradation": {"signals": {}}},
        "alerts": {"enabled": False},
    }


WORKLOAD = {
    "model": "chat",
    "seed": 7,
    "mix": [
        {
            "kind": "chat",
            "weight": 5,
            "prompt_tokens": {"dist": "lognormal", "mean": 300, "sigma": 0.6},
            "max_tokens": {"dist": "uniform", "min": 8, "max": 96},
        },
        {
            "kind": "chat",
            "model": "big",
            "weight": 2,
            "prompt_tokens": 500,
            "max_tokens": {"dist": "uniform", "min": 16, "max": 96},
        },
        {"kind": "stream", "weight": 2, "max_tokens": {"dist": "uniform", "min": 8, "max": 64}},
    ],
}


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_gateway(cfg_path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    proc = subprocess.Popen(
        [*INTERLOCK, "serve", "--config", str(cfg_path), "--port", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"gateway did not start:\n{log.read_text()}")


def nearest_rank(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[max(1, -(-int(p * len(xs)) // 100)) - 1] if xs else 0.0


def validate(work: Path, rate: float, duration: float) -> dict[str, Any]:
    """One run: load test, then the 1× simulation of its ledger; the comparison."""
    sim, sim_url = start_sim_process(
        "--ttft-ms", "60", "--tokens-per-s", "400", "--output-tokens", "96", "--seed", "3"
    )
    cfg_path = work / "interlock.yaml"
    cfg_path.write_text(yaml.safe_dump(gateway_config(sim_url, work / "state")))
    (work / "mix.yaml").write_text(yaml.safe_dump(WORKLOAD))
    port = free_port()
    try:
        gw = start_gateway(cfg_path, port, work / "gateway.log")
        try:
            idle0 = cpu_s(gw.pid)
            time.sleep(3.0)  # the gateway's background loops alone (flushers, syncs)
            idle_per_s = (cpu_s(gw.pid) - idle0) / 3.0
            cpu0 = cpu_s(gw.pid)
            t0 = time.monotonic()
            lt = subprocess.run(
                [
                    *INTERLOCK,
                    "loadtest",
                    "--url",
                    f"http://127.0.0.1:{port}",
                    "--api-key",
                    KEY,
                    "--workload",
                    str(work / "mix.yaml"),
                    "--rate",
                    str(rate),
                    "--duration",
                    str(duration),
                    "--json",
                    str(work / "lt.json"),
                    "--no-progress",
                ],
                capture_output=True,
                text=True,
                timeout=duration + 120,
            )
            gateway_cpu = cpu_s(gw.pid) - cpu0
            busy_s = time.monotonic() - t0
        finally:
            gw.send_signal(signal.SIGTERM)
            gw.wait(30)
    finally:
        stop_sim_process(sim)
    if not (work / "lt.json").exists():
        raise RuntimeError(f"loadtest failed:\n{lt.stdout}\n{lt.stderr}")
    loadtest = json.loads((work / "lt.json").read_text())
    with sqlite3.connect(work / "state" / "interlock.db") as db:
        rows = db.execute("SELECT cost_usd, latency_ms FROM ledger WHERE outcome = 'ok'").fetchall()
    recorded_cost = sum(float(c) for c, _ in rows)
    ledger_p95 = nearest_rank([float(lat) for _, lat in rows], 95)
    sim_run = subprocess.run(
        [
            *INTERLOCK,
            "simulate",
            "--config",
            str(cfg_path),
            "--since",
            "1h",
            "--scale",
            "1",
            "--json",
            "-",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if sim_run.returncode != 0:
        raise RuntimeError(f"simulate failed:\n{sim_run.stdout}\n{sim_run.stderr}")
    doc = json.loads(sim_run.stdout)
    one = doc["results"][0]
    predicted_cost = float(one["cost_usd"])
    predicted_p95 = one["latency_ms"]["p95"]
    measured_p95 = loadtest["latency_ms"]["p95"]
    ok = loadtest["requests"]["ok"]
    return {
        "rate": rate,
        "duration_s": duration,
        "loadtest": {
            "sent": loadtest["requests"]["sent"],
            "ok": ok,
            "achieved_rps": loadtest["arrival"]["achieved_rps"],
            "latency_ms": loadtest["latency_ms"],
        },
        "ledger": {"requests_ok": len(rows), "cost_usd": recorded_cost, "p95_ms": ledger_p95},
        "simulated": {
            "requests": one["requests"],
            "ok": one["ok"],
            "cost_usd": predicted_cost,
            "latency_ms": one["latency_ms"],
            "http_429": one["http_429"],
            "latency_models": doc["latency_models"],
        },
        "error": {
            "cost_pct": 100 * (predicted_cost - recorded_cost) / recorded_cost,
            "p95_vs_loadtest_pct": 100 * (predicted_p95 - measured_p95) / measured_p95,
            "p95_vs_ledger_pct": 100 * (predicted_p95 - ledger_p95) / ledger_p95,
        },
        "gateway_cpu_us_per_request": 1e6 * gateway_cpu / max(ok, 1),
        # less the idle background over the same time: the part that grows with load
        "gateway_cpu_us_per_request_net": 1e6 * (gateway_cpu - idle_per_s * busy_s) / max(ok, 1),
        "gateway_idle_cpu_pct": 100 * idle_per_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep the files")
    args = ap.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = validate(args.keep, args.rate, args.duration)
    else:
        with tempfile.TemporaryDirectory(prefix="interlock-simval-") as tmp:
            result = validate(Path(tmp), args.rate, args.duration)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    result["run"] = stamp
    out = ROOT / "results" / f"simulate-{stamp}.json"
    out.write_text(json.dumps(result, indent=2))
    e = result["error"]
    print(
        f"cost: recorded ${result['ledger']['cost_usd']:.6f}, predicted "
        f"${result['simulated']['cost_usd']:.6f} ({e['cost_pct']:+.3f} %)"
    )
    print(
        f"p95: load test {result['loadtest']['latency_ms']['p95']:.1f} ms, ledger "
        f"{result['ledger']['p95_ms']:.1f} ms, predicted {result['simulated']['latency_ms']['p95']:.1f} ms "
        f"({e['p95_vs_loadtest_pct']:+.1f} % vs load test)"
    )
    print(
        f"gateway CPU per request: {result['gateway_cpu_us_per_request']:.0f} µs gross, "
        f"{result['gateway_cpu_us_per_request_net']:.0f} µs net of idle "
        f"({result['gateway_idle_cpu_pct']:.1f} % of a core idle)"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
