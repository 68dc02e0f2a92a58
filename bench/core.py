"""The core benchmark (`make bench`): what one Interlock worker adds over its upstream.

For each instant upstream (a static nginx answering a fixed chat completion, if nginx is
installed, and the simulated provider with zero latency) it measures three targets:

    a  direct      wrk -> upstream
    b  relay       wrk -> bench/relay.py (uvicorn+uvloop+httptools, raw ASGI, aiohttp) -> upstream
    c  interlock   wrk -> `interlock serve` (virtual key, validation, metrics) -> upstream

with the process under test (relay or gateway) alone on core 0 and wrk, the upstream and
this script on core 1. Figures: latency at concurrency 1 (and what b and c add over a),
the maximum requests/s whose p99 stays under 50 ms (a sweep over wrk connection counts),
non-streaming and streaming, the time to first body byte on streams, and the gateway's
peak RSS. Results go to bench/results/core-<timestamp>.json and docs/benchmarks.md.

    python bench/core.py                  # the whole run (~3 minutes)
    python bench/core.py --duration 5     # longer sweep points
    python bench/core.py --upstreams sim  # only the simulated provider
    python bench/core.py --profile        # also py-spy the gateway under load
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

import harness
import report
from harness import HOST, Procs

MASTER_KEY = "bench-master-key-7c1e9a2f4b"
SIM_KEY = "sim-provider-secret-bench"
OUTPUT_TOKENS = 16
CONNS = [1, 2, 4, 8, 16, 32, 64]
P99_LIMIT_MS = 50.0

TARGETS = {
    "added_p50_ms": 0.6,  # Interlock minus direct, p50 at concurrency 1
    "rps_ratio": 0.60,  # Interlock max rps / relay max rps
    "rps": 1500.0,  # Interlock non-streaming max rps on one core
    "rss_mib": 130.0,  # Interlock peak RSS
}


def chat_body(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant for a railway operator."},
            {"role": "user", "content": "In one sentence: what does a railway interlocking do?"},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


class Upstream:
    """Where a, b and c send their requests for one upstream, per mode."""

    def __init__(
        self,
        name: str,
        base: str,
        paths: dict[str, str],
        models: dict[str, str],
        aliases: dict[str, str],
        label: str,
    ) -> None:
        self.name = name
        self.base = base  # http://127.0.0.1:port
        self.paths = paths  # mode -> path on the upstream (direct and relay)
        self.models = models  # mode -> model name the upstream expects
        self.aliases = aliases  # mode -> Interlock model alias
        self.label = label


def gateway_config(workdir: Path, sim_url: str, nginx_url: str | None) -> dict[str, Any]:
    providers: dict[str, Any] = {
        "sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1", "api_key": SIM_KEY},
    }
    deployments: dict[str, Any] = {"sim-small": {"provider": "sim", "model": "sim-small"}}
    models: dict[str, Any] = {"chat": {"deployments": ["sim-small"]}}
    if nginx_url:
        for mode in ("plain", "sse"):
            providers[f"nginx-{mode}"] = {
                "kind": "openai_compatible",
                "base_url": f"{nginx_url}/{mode}/v1",
                "api_key": SIM_KEY,
            }
            deployments[f"static-{mode}"] = {"provider": f"nginx-{mode}", "model": "sim-small"}
            models[f"chat-static-{mode}"] = {"deployments": [f"static-{mode}"]}
    return {
        "state_dir": str(workdir / "state"),
        "storage": {"url": f"sqlite+aiosqlite:///{workdir}/state/interlock.db"},
        "auth": {"master_key": MASTER_KEY, "cache_ttl_s": 2.0},
        "providers": providers,
        "deployments": deployments,
        "models": models,
    }


def fetch(url: str, body: bytes) -> bytes:
    import urllib.request

    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return bytes(r.read())


def check_answer(url: str, body: bytes, auth: str | None, stream: bool) -> None:
    """Fail fast when a target does not answer a proper chat completion."""
    import urllib.error
    import urllib.request

    headers = {"content-type": "application/json"}
    if auth:
        headers["authorization"] = f"Bearer {auth}"
    req = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"{url} answered {err.code}: {err.read()[:300]!r}") from None
    ok = b"chat.completion.chunk" in data and b"[DONE]" in data if stream else b'"choices"' in data
    if not ok:
        raise RuntimeError(f"{url} gave an unexpected answer: {data[:300]!r}")


def measure_upstream(
    up: Upstream, procs: Procs, workdir: Path, cfg_path: Path, args: argparse.Namespace
) -> dict[str, Any]:
    gw_core, load_core = harness.cores()
    py = sys.executable
    relay_port, gw_port = harness.free_port(), harness.free_port()
    relay = procs.start(
        f"relay-{up.name}",
        [py, str(harness.BENCH_DIR / "relay.py"), "--port", str(relay_port), "--upstream", up.base],
        gw_core,
    )
    gw = procs.start(
        f"interlock-{up.name}",
        [
            str(harness.VENV_BIN / "interlock"),
            "serve",
            "--config",
            str(cfg_path),
            "--port",
            str(gw_port),
            "--workers",
            "1",
        ],
        gw_core,
    )
    harness.wait_http(f"http://{HOST}:{relay_port}/", relay)
    harness.wait_http(f"http://{HOST}:{gw_port}/readyz", gw)
    gw_url = f"http://{HOST}:{gw_port}"
    status, raw = harness.http_json(
        "POST", gw_url + "/admin/keys", {"user": "bench"}, {"authorization": f"Bearer {MASTER_KEY}"}
    )
    if status != 201:
        raise RuntimeError(f"could not create a virtual key: {status} {raw[:300]!r}")
    vkey = json.loads(raw)["key"]

    # target -> mode -> (port, path, body file, auth)
    plan: dict[str, dict[str, tuple[int, str, Path, str | None]]] = {}
    up_port = int(up.base.rsplit(":", 1)[1])
    for mode in ("plain", "sse"):
        stream = mode == "sse"
        direct_body = workdir / f"{up.name}-{mode}-direct.json"
        direct_body.write_bytes(chat_body(up.models[mode], stream))
        gw_body = workdir / f"{up.name}-{mode}-gw.json"
        gw_body.write_bytes(chat_body(up.aliases[mode], stream))
        path = up.paths[mode]
        plan.setdefault("direct", {})[mode] = (up_port, path, direct_body, None)
        plan.setdefault("relay", {})[mode] = (relay_port, path, direct_body, None)
        plan.setdefault("interlock", {})[mode] = (gw_port, "/v1/chat/completions", gw_body, vkey)
    for modes in plan.values():
        for mode, (port, path, body_file, auth) in modes.items():
            check_answer(f"http://{HOST}:{port}{path}", body_file.read_bytes(), auth, mode == "sse")

    out: dict[str, Any] = {
        "upstream": up.name,
        "label": up.label,
        "latency_c1": {},
        "throughput": {},
        "ttfb": {},
    }
    dur = args.duration
    for mode in ("plain", "sse"):
        print(f"  [{up.name}] {mode}: latency at concurrency 1", flush=True)
        rounds: dict[str, list[harness.WrkResult]] = {t: [] for t in plan}
        for t in plan:  # warm every target once
            port, path, body_file, auth = plan[t][mode]
            harness.wrk(f"http://{HOST}:{port}{path}", 1, 1, body_file, auth, load_core)
        for _ in range(args.rounds):  # interleaved rounds: drifts hit a, b and c alike
            for t in plan:
                port, path, body_file, auth = plan[t][mode]
                rounds[t].append(
                    harness.wrk(
                        f"http://{HOST}:{port}{path}",
                        1,
                        args.lat_duration,
                        body_file,
                        auth,
                        load_core,
                    )
                )
        out["latency_c1"][mode] = {
            t: {
                "p50_ms": round(harness.median([r.p50_ms for r in rs]), 4),
                "p99_ms": round(harness.median([r.p99_ms for r in rs]), 4),
                "rps": round(harness.median([r.rps for r in rs]), 1),
                "rounds": [asdict(r) for r in rs],
            }
            for t, rs in rounds.items()
        }
        out["throughput"][mode] = {}
        for t in ("relay", "interlock"):
            print(f"  [{up.name}] {mode}: max rps at p99 < {P99_LIMIT_MS:g} ms, {t}", flush=True)
            port, path, body_file, auth = plan[t][mode]
            pid = relay.pid if t == "relay" else gw.pid
            found = harness.search_max_rps(
                f"http://{HOST}:{port}{path}",
                body_file,
                auth,
                load_core,
                CONNS,
                dur,
                P99_LIMIT_MS,
                pid,
            )
            out["throughput"][mode][t] = found.to_json()
    print(f"  [{up.name}] sse: time to first byte, {args.ttfb_n} sequential requests", flush=True)
    for t in plan:
        port, path, body_file, auth = plan[t]["sse"]
        out["ttfb"][t] = harness.ttfb(port, path, body_file.read_bytes(), auth, args.ttfb_n)
    if args.profile and up.name == args.profile_upstream:
        print(f"  [{up.name}] profiling relay and Interlock under load (py-spy)", flush=True)
        out["profile"] = {
            "relay": profile_target(relay.pid, plan["relay"], f"{up.name}-relay", load_core),
            "interlock": profile_target(
                gw.pid, plan["interlock"], f"{up.name}-interlock", load_core
            ),
        }
    out["peak_rss_kib"] = {
        "interlock": harness.vm_hwm_kib(gw.pid),
        "relay": harness.vm_hwm_kib(relay.pid),
    }
    procs.stop(gw)
    procs.stop(relay)
    return out


PROFILE_CONNS = 16
PROFILE_SECONDS = 7


def profile_target(
    pid: int,
    plan: dict[str, tuple[int, str, Path, str | None]],
    name: str,
    load_core: int,
) -> dict[str, Any]:
    """py-spy one process while wrk loads it (16 connections, per mode); top functions."""
    import subprocess

    import profile_stacks

    pyspy = harness.VENV_BIN / "py-spy"
    if not pyspy.exists():
        print("  (py-spy not installed: .venv/bin/pip install py-spy; profile skipped)")
        return {}
    result: dict[str, Any] = {}
    harness.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for mode, (port, path, body_file, auth) in plan.items():
        raw = harness.RESULTS_DIR / f"profile-{name}-{mode}.txt"
        cmd = [
            "taskset",
            "-c",
            str(load_core),
            str(pyspy),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",
            "--duration",
            str(PROFILE_SECONDS),
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(raw),
        ]
        spy = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            time.sleep(0.5)
            load = harness.wrk(
                f"http://{HOST}:{port}{path}",
                PROFILE_CONNS,
                PROFILE_SECONDS + 1,
                body_file,
                auth,
                load_core,
                pid,
            )
            spy.wait(30)
        finally:
            if spy.poll() is None:
                spy.kill()
                spy.wait(5)
        summary = profile_stacks.summarise(raw, top=60)
        summary["load"] = asdict(load)
        result[mode] = summary
        print(f"  profile {name}/{mode}: {raw.relative_to(harness.ROOT)}", flush=True)
    return result


def start_upstreams(
    procs: Procs, workdir: Path, tools: dict[str, str | None], wanted: list[str]
) -> tuple[str, str | None]:
    _, load_core = harness.cores()
    sim_port = harness.free_port()
    sim = procs.start(
        "sim",
        [
            sys.executable,
            "-m",
            "interlock.sim",
            "--host",
            HOST,
            "--port",
            str(sim_port),
            "--seed",
            "0",
            "--ttft-ms",
            "0",
            "--tokens-per-s",
            "0",
            "--output-tokens",
            str(OUTPUT_TOKENS),
        ],
        load_core,
    )
    sim_url = f"http://{HOST}:{sim_port}"
    harness.wait_http(sim_url + "/", sim)
    nginx_url = None
    if tools.get("nginx") and "nginx" in wanted:
        plain = fetch(sim_url + "/v1/chat/completions", chat_body("sim-small", False))
        sse = fetch(sim_url + "/v1/chat/completions", chat_body("sim-small", True))
        ng_port = harness.free_port()
        conf = harness.nginx_conf(workdir, ng_port, plain, sse)
        ng = procs.start(
            "nginx",
            [str(tools["nginx"]), "-c", str(conf), "-e", str(workdir / "nginx-startup.log")],
            load_core,
        )
        nginx_url = f"http://{HOST}:{ng_port}"
        harness.wait_http(nginx_url + "/ping", ng)
    return sim_url, nginx_url


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--upstreams", default="nginx,sim", help="comma list of nginx, sim")
    p.add_argument("--duration", type=int, default=2, help="seconds per sweep point")
    p.add_argument("--lat-duration", type=int, default=2, help="seconds per c=1 round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved c=1 rounds per target")
    p.add_argument("--ttft-n", dest="ttfb_n", type=int, default=500)
    p.add_argument("--profile", action="store_true", help="py-spy relay and gateway (adds ~70 s)")
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = p.parse_args(argv)

    harness.exit_on_sigterm()
    tools = harness.require_tools()
    gw_core, load_core = harness.cores()
    if gw_core == load_core:
        print("bench: fewer than 2 cores; everything shares core 0 and the figures mislead")
    harness.pin_self(load_core)
    wanted = [u.strip() for u in args.upstreams.split(",") if u.strip()]
    started = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    results: dict[str, Any] = {
        "timestamp": stamp,
        "machine": harness.machine(),
        "settings": {
            "duration_s": args.duration,
            "conns": CONNS,
            "lat_duration_s": args.lat_duration,
            "rounds": args.rounds,
            "ttfb_n": args.ttfb_n,
            "output_tokens": OUTPUT_TOKENS,
            "p99_limit_ms": P99_LIMIT_MS,
            "gateway_core": gw_core,
            "load_core": load_core,
        },
        "targets": TARGETS,
        "upstreams": [],
    }
    with tempfile.TemporaryDirectory(prefix="interlock-bench-") as tmp, Procs(Path(tmp)) as procs:
        workdir = Path(tmp)
        try:
            sim_url, nginx_url = start_upstreams(procs, workdir, tools, wanted)
            cfg_path = workdir / "interlock.yaml"
            cfg_path.write_text(yaml.safe_dump(gateway_config(workdir, sim_url, nginx_url)))
            ups: list[Upstream] = []
            if nginx_url:
                ups.append(
                    Upstream(
                        "nginx",
                        nginx_url,
                        {"plain": "/plain/v1/chat/completions", "sse": "/sse/v1/chat/completions"},
                        {"plain": "sim-small", "sse": "sim-small"},
                        {"plain": "chat-static-plain", "sse": "chat-static-sse"},
                        "static nginx (fixed chat-completion JSON / SSE body)",
                    )
                )
            if "sim" in wanted:
                ups.append(
                    Upstream(
                        "sim",
                        sim_url,
                        {"plain": "/v1/chat/completions", "sse": "/v1/chat/completions"},
                        {"plain": "sim-small", "sse": "sim-small"},
                        {"plain": "chat", "sse": "chat"},
                        "interlock.sim, zero latency (Python, shares core 1 with wrk)",
                    )
                )
            args.profile_upstream = ups[0].name if ups else ""
            for up in ups:
                print(f"upstream {up.name}: {up.label}", flush=True)
                results["upstreams"].append(measure_upstream(up, procs, workdir, cfg_path, args))
        except Exception:
            for name in (
                "sim",
                "nginx",
                "relay-nginx",
                "interlock-nginx",
                "relay-sim",
                "interlock-sim",
            ):
                text = procs.log(name)
                if text:
                    print(f"--- {name} log (tail) ---\n{text}", file=sys.stderr)
            raise
    results["elapsed_s"] = round(time.time() - started, 1)
    results["verdict"] = report.verdict(results)
    harness.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = harness.RESULTS_DIR / f"core-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    print()
    print(report.table(results))
    print(f"\nresults: {out.relative_to(harness.ROOT)} ({results['elapsed_s']} s)")
    if not args.no_doc:
        doc = report.write_doc()
        print(f"doc: {doc.relative_to(harness.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
