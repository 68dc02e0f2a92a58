"""Load-tester accuracy and overhead: ``interlock loadtest`` at 2,000 requests/s against
nginx serving a static chat completion, and wrk against the same target.

Figures (written to bench/results/loadtest-<ts>.json):

- achieved arrival rate vs the 2,000 req/s target (the issue asks for within 1 %) and
  the dispatch lag percentiles (how late each send left);
- the generator's cost: CPU microseconds per request for ``interlock loadtest`` (open
  loop, asyncio + httptools) and for wrk (closed loop, C) on the same target, and the latency each
  reports for a static answer (the client-side share of every latency it measures).

nginx runs alone on core 0, the load generators on core 1 (``taskset``).
Run: ``.venv/bin/python bench/loadtest_accuracy.py [--rate 2000] [--duration 10] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

PLAIN = json.dumps({
    "id": "chatcmpl-static", "object": "chat.completion", "created": 0, "model": "static",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "route budget cache latency"}}],
    "usage": {"prompt_tokens": 70, "completion_tokens": 4, "total_tokens": 74},
}).encode()  # fmt: skip
SSE = (b'data: {"choices":[{"index":0,"delta":{"content":"route"}}]}\n\n'
       b'data: {"choices":[{"index":0,"delta":{"content":" budget"}}]}\n\ndata: [DONE]\n\n')  # fmt: skip


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_loadtest(url: str, rate: float, duration: float, out: Path, core: int) -> dict[str, Any]:
    cmd = ["taskset", "-c", str(core), str(harness.VENV_BIN / "interlock"), "loadtest",
           "--url", url, "--rate", str(rate), "--duration", str(duration), "--model", "static",
           "--json", str(out), "--no-progress", "--timeout", "5"]  # fmt: skip
    cpu0 = _children_cpu()
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    wall = time.monotonic() - t0
    cpu = _children_cpu() - cpu0
    if not out.exists():
        raise RuntimeError(f"loadtest failed (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    doc = json.loads(out.read_text())
    sent = doc["requests"]["sent"]
    return {
        "rc": proc.returncode,
        "target_rps": rate,
        "achieved_rps": doc["arrival"]["achieved_rps"],
        "arrival_error_pct": round(abs((doc["arrival"]["achieved_rps"] or 0) / rate - 1) * 100, 4),
        "lag_ms": doc["arrival"]["lag_ms"],
        "sent": sent,
        "ok": doc["requests"]["ok"],
        "errors": doc["errors"],
        "latency_ms": doc["latency_ms"],
        "wall_s": round(wall, 3),
        # process CPU including start-up (imports, ~0.7 s): see startup_cpu_s
        "cpu_s": round(cpu, 3),
    }


def run_wrk(url: str, body: Path, duration: int, conns: int, core: int) -> dict[str, Any]:
    cpu0 = _children_cpu()
    res = harness.wrk(url, conns, duration, body, None, core)
    cpu = _children_cpu() - cpu0
    return {
        "conns": conns,
        "rps": res.rps,
        "requests": res.requests,
        "p50_ms": res.p50_ms,
        "p99_ms": res.p99_ms,
        "errors": res.errors,
        "cpu_s": round(cpu, 3),
        "cpu_us_per_req": round(cpu * 1e6 / res.requests, 2) if res.requests else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    tools = harness.require_tools()
    if not tools["nginx"]:
        sys.exit("bench: nginx is needed for this benchmark")
    harness.exit_on_sigterm()
    gw_core, load_core = harness.cores()
    harness.RESULTS_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="interlock-ltbench-"))
    result: dict[str, Any] = {
        "machine": harness.machine(),
        "rate": args.rate,
        "duration_s": args.duration,
    }
    try:
        with harness.Procs(work) as procs:
            port = harness.free_port()
            conf = harness.nginx_conf(work, port, PLAIN, SSE)
            nginx = procs.start(
                "nginx", [str(tools["nginx"]), "-c", str(conf), "-p", str(work)], gw_core
            )
            harness.wait_http(f"http://{harness.HOST}:{port}/ping", nginx)
            base = f"http://{harness.HOST}:{port}/plain"
            body = work / "body.json"
            body.write_text(json.dumps({"model": "static", "messages": [{"role": "user", "content": "hi"}],
                                        "max_tokens": 32}))  # fmt: skip
            # fixed cost of the command (interpreter, imports): one request
            startup = run_loadtest(base, 1, 0.05, work / "lt-startup.json", load_core)["cpu_s"]
            result["startup_cpu_s"] = startup
            runs = []
            for i in range(args.runs):
                r = run_loadtest(base, args.rate, args.duration, work / f"lt-{i}.json", load_core)
                r["cpu_us_per_req"] = round(
                    max(r["cpu_s"] - startup, 0) * 1e6 / max(r["sent"], 1), 1
                )
                runs.append(r)
                print(json.dumps(runs[-1]), flush=True)
            result["loadtest"] = runs
            # wrk at 1 connection: the fastest possible round trip; at 16: its CPU per request
            result["wrk"] = [run_wrk(f"{base}/v1/chat/completions", body, int(args.duration), c, load_core)
                             for c in (1, 16)]  # fmt: skip
            print(json.dumps(result["wrk"]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    errs = sorted(r["arrival_error_pct"] for r in result["loadtest"])
    result["summary"] = {
        "median_arrival_error_pct": errs[len(errs) // 2],
        "max_arrival_error_pct": errs[-1],
        "within_1pct": all(e <= 1.0 for e in errs),
        "loadtest_cpu_us_per_req": sorted(r["cpu_us_per_req"] for r in result["loadtest"])[
            len(errs) // 2
        ],
        "wrk_cpu_us_per_req": result["wrk"][1]["cpu_us_per_req"],
        "loadtest_p50_ms": sorted(r["latency_ms"]["p50"] for r in result["loadtest"])[
            len(errs) // 2
        ],
        "wrk_p50_ms_1conn": result["wrk"][0]["p50_ms"],
    }
    path = harness.RESULTS_DIR / f"loadtest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
