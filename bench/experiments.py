"""Measure proposed hot-path fixes before they are made: Interlock with and without each
patch of bench/patched_interlock.py, against the static nginx upstream, same pinning as
bench/core.py (gateway on core 0; wrk and nginx on core 1).

    python bench/experiments.py                 # ~3 minutes
    python bench/experiments.py --rounds 5 --duration 3

Every variant runs as its own `interlock serve` process (its own state directory); the
rounds are interleaved over the variants so that drifts of a noisy machine hit them all
alike. The figure is the gateway process's CPU time per request (utime+stime from
/proc/PID/stat around each wrk run at 16 connections), median of the rounds: unlike
req/s it hardly moves when neighbours steal the core. req/s is shown too.
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

import core
import harness
from harness import HOST, Procs

VARIANTS: list[tuple[str, str]] = [
    ("baseline", "none"),
    ("coalesce", "coalesce"),
    ("lazy-sse", "lazy-sse"),
    ("coalesce+lazy-sse", "coalesce,lazy-sse"),
    ("metrics-cache", "metrics-cache"),
    ("no-metrics", "no-metrics"),
    ("no-timeouts", "no-timeouts"),
    ("no-proxy-headers", "no-proxy-headers"),
    ("all-cheap-fixes", "coalesce,lazy-sse,metrics-cache,no-proxy-headers"),
    ("no-ledger", "no-ledger"),
    ("ledger-no-db-insert", "ledger-no-db-insert"),
]
CONNS = 16


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    p.add_argument("--only", default="", help="comma list of variant names")
    args = p.parse_args(argv)
    harness.exit_on_sigterm()
    tools = harness.require_tools()
    if not tools.get("nginx"):
        sys.exit("experiments.py needs nginx (the static upstream)")
    gw_core, load_core = harness.cores()
    harness.pin_self(load_core)
    wanted = [v for v in VARIANTS if not args.only or v[0] in args.only.split(",")]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results: dict[str, Any] = {
        "timestamp": stamp,
        "machine": harness.machine(),
        "settings": {"rounds": args.rounds, "duration_s": args.duration, "conns": CONNS},
        "variants": {},
    }
    with tempfile.TemporaryDirectory(prefix="interlock-exp-") as tmp, Procs(Path(tmp)) as procs:
        workdir = Path(tmp)
        sim_url, nginx_url = core.start_upstreams(procs, workdir, tools, ["nginx"])
        assert nginx_url is not None
        bodies = {m: workdir / f"{m}.json" for m in ("plain", "sse")}
        bodies["plain"].write_bytes(core.chat_body("chat-static-plain", False))
        bodies["sse"].write_bytes(core.chat_body("chat-static-sse", True))
        targets: dict[str, tuple[int, str, dict[str, Path], str | None]] = {}
        relay_port = harness.free_port()
        relay = procs.start(
            "relay",
            [
                sys.executable,
                str(harness.BENCH_DIR / "relay.py"),
                "--port",
                str(relay_port),
                "--upstream",
                nginx_url,
            ],
            gw_core,
        )
        direct = {m: workdir / f"direct-{m}.json" for m in ("plain", "sse")}
        direct["plain"].write_bytes(core.chat_body("sim-small", False))
        direct["sse"].write_bytes(core.chat_body("sim-small", True))
        started = []
        for name, patches in wanted:
            vdir = workdir / name
            vdir.mkdir()
            cfg = vdir / "interlock.yaml"
            cfg.write_text(yaml.safe_dump(core.gateway_config(vdir, sim_url, nginx_url)))
            port = harness.free_port()
            proc = procs.start(
                f"gw-{name}",
                [
                    sys.executable,
                    str(harness.BENCH_DIR / "patched_interlock.py"),
                    "--patches",
                    patches,
                    "serve",
                    "--config",
                    str(cfg),
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ],
                gw_core,
            )
            started.append((name, port, proc))
        harness.wait_http(f"http://{HOST}:{relay_port}/", relay)
        for name, port, proc in started:
            harness.wait_http(f"http://{HOST}:{port}/readyz", proc, timeout=60)
            status, raw = harness.http_json(
                "POST",
                f"http://{HOST}:{port}/admin/keys",
                {"user": "bench"},
                {"authorization": f"Bearer {core.MASTER_KEY}"},
            )
            if status != 201:
                raise RuntimeError(f"{name}: could not create a key: {status} {raw[:200]!r}")
            targets[name] = (port, "/v1/chat/completions", bodies, json.loads(raw)["key"])
        targets["relay (floor)"] = (relay_port, "", direct, None)
        pids = {name: proc.pid for name, _port, proc in started}
        pids["relay (floor)"] = relay.pid
        paths = {"plain": "/plain/v1/chat/completions", "sse": "/sse/v1/chat/completions"}
        for port, path, files, auth in targets.values():
            for mode in ("plain", "sse"):
                url = f"http://{HOST}:{port}{path or paths[mode]}"
                core.check_answer(url, files[mode].read_bytes(), auth, mode == "sse")
                harness.wrk(url, CONNS, 1, files[mode], auth, load_core)  # warm
        runs: dict[str, dict[str, list[harness.WrkResult]]] = {
            n: {"plain": [], "sse": []} for n in targets
        }
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", flush=True)
            for mode in ("plain", "sse"):
                for name, (port, path, files, auth) in targets.items():
                    url = f"http://{HOST}:{port}{path or paths[mode]}"
                    res = harness.wrk(
                        url, CONNS, args.duration, files[mode], auth, load_core, pids[name]
                    )
                    runs[name][mode].append(res)
    base = {m: harness.median([x.rps for x in runs["baseline"][m]]) for m in ("plain", "sse")}
    base_cpu = {
        m: harness.median([x.cpu_us_per_req or 0.0 for x in runs["baseline"][m]])
        for m in ("plain", "sse")
    }
    for name, modes in runs.items():
        entry: dict[str, Any] = {}
        for mode, rs in modes.items():
            rps = harness.median([x.rps for x in rs])
            cpu = harness.median([x.cpu_us_per_req or 0.0 for x in rs])
            entry[mode] = {
                "cpu_us_per_req": round(cpu, 1),
                "cpu_vs_baseline": round(cpu / base_cpu[mode], 3) if base_cpu.get(mode) else None,
                "rps": round(rps, 1),
                "us_per_req": round(1e6 / rps, 1) if rps else None,
                "vs_baseline": round(rps / base[mode], 3) if base.get(mode) else None,
                "p50_ms": round(harness.median([x.p50_ms for x in rs]), 3),
                "runs": [x.rps for x in rs],
                "errors": sum(x.errors for x in rs),
            }
        entry["patches"] = dict(VARIANTS).get(name, "")
        results["variants"][name] = entry
    harness.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = harness.RESULTS_DIR / f"experiments-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nresults: {out.relative_to(harness.ROOT)}")
    return 0


def rows(results: dict[str, Any]) -> list[list[str]]:
    out = []
    for name, e in results["variants"].items():
        row = [name]
        for mode in ("plain", "sse"):
            x = e[mode]
            row += [
                f"{x['cpu_us_per_req']:,.0f}",
                f"{x['cpu_vs_baseline']:.2f}",
                f"{x['rps']:,.0f}",
            ]
        out.append(row)
    return out


HEAD = [
    "variant",
    "CPU µs/req",
    "vs base",
    "req/s",
    "CPU µs/req (stream)",
    "vs base (stream)",
    "req/s (stream)",
]


def table(results: dict[str, Any]) -> str:
    r = rows(results)
    widths = [max(len(x[i]) for x in [HEAD, *r]) for i in range(len(HEAD))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(x, widths, strict=True))
        )
        for x in [HEAD, *r]
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
