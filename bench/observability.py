"""Throughput with metrics and request logs on vs off: the cost of observability.

Two `interlock serve` processes (1 worker each, both pinned to the gateway core) sit in
front of the same upstream: one with the defaults (Prometheus metrics + one JSON log line
per request), one with `telemetry.metrics: false` and `telemetry.logs.enabled: false`.
wrk (pinned to the load core) drives each in interleaved rounds at a fixed concurrency,
so machine drift hits both alike; the figure is the median requests/s per side and the
overhead 1 - on/off (target: at most 10%).

    python bench/observability.py [--duration 5] [--rounds 3] [--conns 16] [--upstream nginx|sim]

Writes bench/results/observability-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import core
import harness

HOST = harness.HOST


def _config(base: dict[str, Any], on: bool, workdir: Path, name: str) -> dict[str, Any]:
    cfg = json.loads(json.dumps(base))
    cfg["state_dir"] = str(workdir / name)
    cfg["storage"] = {"url": f"sqlite+aiosqlite:///{workdir}/{name}/interlock.db"}
    if not on:
        cfg["telemetry"] = {"metrics": False, "logs": {"enabled": False}}
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per side")
    p.add_argument("--conns", type=int, default=16, help="wrk connections")
    p.add_argument("--upstream", default="nginx", choices=["nginx", "sim"])
    args = p.parse_args(argv)

    harness.exit_on_sigterm()
    tools = harness.require_tools()
    gw_core, load_core = harness.cores()
    harness.pin_self(load_core)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    with (
        tempfile.TemporaryDirectory(prefix="interlock-obs-") as tmp,
        harness.Procs(Path(tmp)) as procs,
    ):
        workdir = Path(tmp)
        wanted = ["nginx", "sim"] if args.upstream == "nginx" and tools.get("nginx") else ["sim"]
        sim_url, nginx_url = core.start_upstreams(procs, workdir, tools, wanted)
        base = core.gateway_config(workdir, sim_url, nginx_url)
        alias = "chat-static-plain" if nginx_url else "chat"
        body = workdir / "body.json"
        body.write_bytes(core.chat_body(alias, False))
        sides: dict[str, dict[str, Any]] = {}
        for side, on in (("on", True), ("off", False)):
            path = workdir / f"{side}.yaml"
            path.write_text(yaml.safe_dump(_config(base, on, workdir, side)))
            port = harness.free_port()
            proc = procs.start(f"interlock-{side}", [
                str(harness.VENV_BIN / "interlock"), "serve", "--config", str(path),
                "--port", str(port), "--workers", "1",
            ], gw_core)  # fmt: skip
            harness.wait_http(f"http://{HOST}:{port}/readyz", proc)
            url = f"http://{HOST}:{port}/v1/chat/completions"
            core.check_answer(url, body.read_bytes(), core.MASTER_KEY, False)
            harness.wrk(url, args.conns, 1, body, core.MASTER_KEY, load_core)  # warm up
            sides[side] = {"url": url, "pid": proc.pid, "runs": []}
        for _ in range(args.rounds):
            for side in ("on", "off"):
                s = sides[side]
                r = harness.wrk(s["url"], args.conns, args.duration, body, core.MASTER_KEY,
                                load_core, pid=s["pid"])  # fmt: skip
                s["runs"].append(r)
                print(f"  {side:>3}: {r.rps:8.1f} req/s  p99 {r.p99_ms:6.2f} ms  "
                      f"cpu {r.cpu_us_per_req} us/req  errors {r.errors}", flush=True)  # fmt: skip
    summary: dict[str, Any] = {}
    for side, s in sides.items():
        runs = s["runs"]
        summary[side] = {
            "rps_median": harness.median([r.rps for r in runs]),
            "p99_ms_median": harness.median([r.p99_ms for r in runs]),
            "cpu_us_per_req_median": harness.median(
                [r.cpu_us_per_req for r in runs if r.cpu_us_per_req is not None]
            ),
            "errors": sum(r.errors for r in runs),
            "runs": [r.__dict__ for r in runs],
        }
    on, off = summary["on"]["rps_median"], summary["off"]["rps_median"]
    overhead = 1 - on / off if off else None
    cpu_on = summary["on"]["cpu_us_per_req_median"]
    cpu_off = summary["off"]["cpu_us_per_req_median"]
    result = {
        "timestamp": stamp,
        "machine": harness.machine(),
        "command": "python bench/observability.py " + " ".join(argv or sys.argv[1:]),
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "conns": args.conns,
            "upstream": "nginx" if "nginx" in wanted else "sim",
            "gateway_core": gw_core,
            "load_core": load_core,
        },
        "on": summary["on"],
        "off": summary["off"],
        "overhead": round(overhead, 4) if overhead is not None else None,
        # CPU per request is steadier than req/s on a shared machine.
        "overhead_cpu": round(cpu_on / cpu_off - 1, 4) if cpu_on and cpu_off else None,
        "target_max_overhead": 0.10,
    }
    harness.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = harness.RESULTS_DIR / f"observability-{stamp}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"\nmetrics+logs on: {on:.1f} req/s, off: {off:.1f} req/s, overhead "
          f"{(overhead or 0) * 100:.1f}% (target <= 10%); CPU/request {cpu_on} vs {cpu_off} us"
          f"\nresults: {out.relative_to(harness.ROOT)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
