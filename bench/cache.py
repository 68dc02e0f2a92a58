"""The cache benchmark (`make bench-cache`): what a hit costs, what a lookup costs.

1. Exact hits vs misses through `interlock serve` (pinned to core 0; the simulated
   provider with zero latency and wrk on core 1): p50 at concurrency 1 and req/s at
   16 connections, for a repeated request (every one a hit-l1) and for unique
   requests (every one a miss that is also stored).
2. The semantic index alone (no embedding): p50/p99 of a lookup in a partition of
   N entries (default 1,000,000 random unit vectors, the worst case for HNSW).
3. The local embedding server: req/s at 32 concurrent clients sending one text each,
   with micro-batching (max batch 64, 3 ms) and without (max batch 1), torch on one
   thread pinned to core 0, the clients on core 1.

Results go to bench/results/cache-<timestamp>.json; `bench/report.py` renders them.

    python bench/cache.py                       # everything (~8 minutes)
    python bench/cache.py --entries 200000      # a smaller index
    python bench/cache.py --skip index,embed    # only the HTTP part
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import harness
from harness import HOST, Procs

MASTER_KEY = "bench-master-key-7c1e9a2f4b"
SIM_KEY = "sim-provider-secret-bench"
UNIQUE_LUA = harness.BENCH_DIR / "wrk_unique.lua"


def gateway_config(workdir: Path, sim_url: str) -> dict[str, Any]:
    return {
        "state_dir": str(workdir / "state"),
        "storage": {"url": f"sqlite+aiosqlite:///{workdir}/state/interlock.db"},
        "auth": {"master_key": MASTER_KEY, "cache_ttl_s": 60.0},
        "providers": {
            "sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1", "api_key": SIM_KEY}
        },
        "deployments": {"sim-small": {"provider": "sim", "model": "sim-small"}},
        "models": {"chat": {"deployments": ["sim-small"]}},
        "spend": {"unknown_price": {"action": "allow", "input_per_mtok": 1.0, "output_per_mtok": 2.0}},
    }


def body(prompt: str) -> str:
    return json.dumps(
        {
            "model": "chat",
            "temperature": 0,
            "max_tokens": 32,
            "messages": [{"role": "user", "content": prompt}],
        }
    )


def http_part(work: Path, duration: int) -> dict[str, Any]:
    gw_core, load_core = harness.cores()
    with Procs(work) as procs:
        sim_port = harness.free_port()
        sim = procs.start("sim", [sys.executable, "-m", "interlock.sim", "--port", str(sim_port)],
                          load_core)
        sim_url = f"http://{HOST}:{sim_port}"
        harness.wait_http(sim_url + "/v1/models", sim)
        cfg = work / "interlock.yaml"
        cfg.write_text(yaml.safe_dump(gateway_config(work, sim_url)))
        port = harness.free_port()
        gw = procs.start(
            "gateway",
            [str(harness.VENV_BIN / "interlock"), "serve", "--config", str(cfg),
             "--port", str(port)],
            gw_core,
        )
        url = f"http://{HOST}:{port}"
        try:
            harness.wait_http(url + "/readyz", gw)
        except RuntimeError:
            print(procs.log("gateway")[-3000:])
            raise
        pid = harness.python_child_pid(gw)
        chat = url + "/v1/chat/completions"
        hit_file = work / "hit.json"
        hit_file.write_text(body("what does a railway interlocking do?"))
        miss_file = work / "miss.json"
        miss_file.write_text(body("question number %d: what does a railway interlocking do?"))
        direct_file = work / "direct.json"
        direct_file.write_text(body("what does a railway interlocking do?").replace(
            '"chat"', '"sim-small"'))
        harness.wrk(chat, 1, 1, hit_file, MASTER_KEY, load_core)  # warm: the entry is stored
        out: dict[str, Any] = {}
        out["direct_c1"] = harness.wrk(sim_url + "/v1/chat/completions", 1, duration,
                                       direct_file, SIM_KEY, load_core).__dict__
        out["hit_c1"] = harness.wrk(chat, 1, duration, hit_file, MASTER_KEY, load_core, pid).__dict__
        out["miss_c1"] = harness.wrk(chat, 1, duration, miss_file, MASTER_KEY, load_core, pid,
                                     script=UNIQUE_LUA).__dict__
        out["hit_c16"] = harness.wrk(chat, 16, duration, hit_file, MASTER_KEY, load_core, pid).__dict__
        out["miss_c16"] = harness.wrk(chat, 16, duration, miss_file, MASTER_KEY, load_core, pid,
                                      script=UNIQUE_LUA).__dict__
        out["hit_vs_miss_rps"] = out["hit_c16"]["rps"] / max(1.0, out["miss_c16"]["rps"])
        return out


def index_part(entries: int, queries: int = 2000) -> dict[str, Any]:
    import numpy as np

    from interlock.cache.semantic.index import SemanticIndex

    rng = np.random.default_rng(7)
    idx = SemanticIndex(384, max_entries=entries + 1)
    t0 = time.perf_counter()
    chunk = 50_000
    stored: list[Any] = []
    for start in range(0, entries, chunk):
        n = min(chunk, entries - start)
        v = rng.standard_normal((n, 384)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        if start == 0:
            stored = list(v[:queries])
        part = idx._parts.get("p")
        if part is not None and part.ann is not None:
            # Bulk insert into the HNSW index (the same structure add() maintains).
            ids = np.arange(idx._next, idx._next + n, dtype=np.uint64)
            from interlock.cache.semantic.index import _Entry

            for i in range(n):
                idx._entries[int(ids[i])] = _Entry("p", "", f"k{start + i}", 1e12)
            part.ann.add(ids, v, threads=os.cpu_count() or 1)
            part.live += n
            idx._next += n
        else:
            for i in range(n):
                idx.add("p", v[i], "", f"k{start + i}", 1e12)
    build_s = time.perf_counter() - t0
    noise = rng.standard_normal((queries, 384)).astype(np.float32) * 0.01
    q = np.asarray(stored) + noise
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    times, found = [], 0
    for i in range(queries):
        t = time.perf_counter()
        res = idx.search("p", q[i], k=4)
        times.append((time.perf_counter() - t) * 1000)
        found += bool(res) and res[0].key == f"k{i}"
    times.sort()
    return {
        "entries": len(idx),
        "build_s": round(build_s, 1),
        "queries": queries,
        "p50_ms": round(times[len(times) // 2], 3),
        "p99_ms": round(times[int(len(times) * 0.99)], 3),
        "recall_at_1": found / queries,
    }


async def _clients(url: str, concurrency: int, seconds: float) -> dict[str, Any]:
    import aiohttp

    lat: list[float] = []
    stop = time.monotonic() + seconds
    n = [0]

    async def one(session: aiohttp.ClientSession, w: int) -> None:
        while time.monotonic() < stop:
            n[0] += 1
            payload = {"model": "all-MiniLM-L6-v2", "input": f"client {w} sentence {n[0]}"}
            t = time.perf_counter()
            async with session.post(url, json=payload) as r:
                await r.read()
                assert r.status == 200
            lat.append((time.perf_counter() - t) * 1000)

    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        await asyncio.gather(*(one(s, w) for w in range(concurrency)))
        elapsed = time.monotonic() - t0
    lat.sort()
    return {"requests": len(lat), "rps": round(len(lat) / elapsed, 1),
            "p50_ms": round(statistics.median(lat), 2),
            "p99_ms": round(lat[int(len(lat) * 0.99)], 2)}


def embed_part(work: Path, seconds: float, concurrency: int = 32) -> dict[str, Any]:
    gw_core, load_core = harness.cores()
    out: dict[str, Any] = {"concurrency": concurrency}
    for label, max_batch in (("batched", 64), ("unbatched", 1)):
        with Procs(work) as procs:
            port = harness.free_port()
            p = procs.start(f"embed-{label}",
                            [sys.executable, "-m", "interlock.localembed", "--port", str(port),
                             "--max-batch", str(max_batch), "--threads", "1"], gw_core)
            harness.wait_http(f"http://{HOST}:{port}/healthz", p, timeout=180)
            harness.pin_self(load_core)
            out[label] = asyncio.run(_clients(f"http://{HOST}:{port}/v1/embeddings", concurrency,
                                              seconds))
            stats = json.loads(harness.http_json("GET", f"http://{HOST}:{port}/stats")[1])
            out[label]["mean_batch"] = round(stats["mean_batch"], 1)
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    out["speedup"] = round(out["batched"]["rps"] / max(0.1, out["unbatched"]["rps"]), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--skip", default="", help="comma list of http,index,embed")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    harness.require_tools()
    results: dict[str, Any] = {"timestamp": time.strftime("%Y%m%d-%H%M%S"),
                               "machine": harness.machine()}
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        work = Path(tmp)
        if "http" not in skip:
            results["http"] = http_part(work, args.duration)
            print(json.dumps(results["http"], indent=1), flush=True)
        if "embed" not in skip:
            results["embed"] = embed_part(work, seconds=8.0)
            print(json.dumps(results["embed"], indent=1), flush=True)
    if "index" not in skip:
        results["index"] = index_part(args.entries)
        print(json.dumps(results["index"], indent=1), flush=True)
    harness.RESULTS_DIR.mkdir(exist_ok=True)
    path = harness.RESULTS_DIR / f"cache-{results['timestamp']}.json"
    path.write_text(json.dumps(results, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
