"""Library choices, measured: the ASGI server, the upstream HTTP client, the JSON layer.

    python bench/choices.py            # ~1 minute; results to bench/results/choices-*.json

- uvicorn (+uvloop+httptools) vs granian serving the same raw ASGI app (bench/relay.py's
  ``hello`` app), wrk with 32 connections; the server on core 0, wrk on core 1.
- aiohttp vs httpx as the relay's upstream client (bench/relay.py), against the static
  nginx upstream (the simulator if nginx is missing), wrk with 32 connections.
- orjson vs msgspec vs stdlib json vs pydantic parsing *and* validating a typical chat
  request body, µs per operation (timeit, best of 5), pinned to core 0.

granian, httpx and msgspec are bench-only extras (bench/README.md); a missing one is
skipped with a message.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any, Literal

import core
import harness
from harness import HOST, Procs

CONNS = 32

# A typical chat request: a system prompt, a short conversation, the usual parameters.
CHAT_BODY = json.dumps(
    {
        "model": "chat",
        "messages": [
            {"role": "system", "content": "You are a concise assistant for a railway operator."},
            {"role": "user", "content": "What does an interlocking do?"},
            {
                "role": "assistant",
                "content": "It prevents conflicting train movements by "
                "locking signals and points so that only safe routes can be set.",
            },
            {"role": "user", "content": "And how is that different from a block system?"},
        ],
        "max_tokens": 256,
        "temperature": 0.2,
        "top_p": 1.0,
        "stream": False,
        "user": "user-1234",
    }
).encode()

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


# The typed models for the schema-driven libraries (module level: annotations are strings).
msgspec: Any = None
ChatRequest: Any = None
PChat: Any = None
if importlib.util.find_spec("msgspec"):
    import msgspec

    class Message(msgspec.Struct):
        role: str
        content: str | None = None

    class ChatRequest(msgspec.Struct):  # type: ignore[no-redef]
        model: str
        messages: list[Message]
        max_tokens: int | None = None
        temperature: float | None = None
        top_p: float | None = None
        stream: bool = False
        user: str | None = None


if importlib.util.find_spec("pydantic"):
    from pydantic import BaseModel, ConfigDict, Field

    class PMessage(BaseModel):
        model_config = ConfigDict(extra="allow")
        role: Literal["system", "developer", "user", "assistant", "tool", "function"]
        content: str | list[Any] | None = None

    class PChat(BaseModel):  # type: ignore[no-redef]
        model_config = ConfigDict(extra="allow")
        model: str = Field(min_length=1)
        messages: list[PMessage] = Field(min_length=1)
        max_tokens: int | None = Field(default=None, ge=1)
        temperature: float | None = Field(default=None, ge=0, le=2)
        top_p: float | None = Field(default=None, ge=0, le=1)
        stream: bool = False
        user: str | None = None


def _check(d: Any) -> dict[str, Any]:
    """The same hand-written checks for the dict-producing parsers (stdlib json, orjson)."""
    if not isinstance(d, dict):
        raise ValueError("not an object")
    if not isinstance(d.get("model"), str) or not d["model"]:
        raise ValueError("model")
    msgs = d.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("messages")
    for m in msgs:
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise ValueError("role")
        c = m.get("content")
        if c is not None and not isinstance(c, str | list):
            raise ValueError("content")
    mt = d.get("max_tokens")
    if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
        raise ValueError("max_tokens")
    t = d.get("temperature")
    if t is not None and (not isinstance(t, int | float) or not 0 <= t <= 2):
        raise ValueError("temperature")
    tp = d.get("top_p")
    if tp is not None and (not isinstance(tp, int | float) or not 0 <= tp <= 1):
        raise ValueError("top_p")
    if not isinstance(d.get("stream", False), bool):
        raise ValueError("stream")
    return d


def json_candidates() -> dict[str, tuple[Any, str]]:
    """name -> (callable(body) that parses and validates, what it does)."""
    cands: dict[str, tuple[Any, str]] = {}
    cands["stdlib json"] = (lambda b: _check(json.loads(b)), "json.loads + the checks, by hand")
    try:
        import orjson

        cands["orjson"] = (lambda b: _check(orjson.loads(b)), "orjson.loads + the checks, by hand")
        try:
            from interlock.api import validate
            from interlock.settings import ServerSettings

            cfg = ServerSettings()

            def interlock_path(b: bytes) -> Any:
                return validate.chat_request(orjson.loads(b), b, cfg)

            cands["orjson + interlock.api.validate"] = (
                interlock_path,
                "what Interlock runs: orjson.loads + validate.chat_request (builds GatewayRequest)",
            )
        except Exception as exc:  # an API change in src must not break the bench
            print(f"choices: interlock's validator not measured ({exc})", file=sys.stderr)
    except ImportError:
        print("choices: orjson missing; skipped", file=sys.stderr)
    if msgspec is not None:
        decoder = msgspec.json.Decoder(ChatRequest)

        def ms(b: bytes) -> Any:
            req = decoder.decode(b)
            if not req.messages or any(m.role not in _ROLES for m in req.messages):
                raise ValueError("messages")
            return req

        cands["msgspec"] = (ms, "msgspec.json.Decoder(Struct): typed decode, + role check")
    else:
        print("choices: msgspec missing (pip install msgspec); skipped", file=sys.stderr)
    if PChat is not None:
        cands["pydantic"] = (PChat.model_validate_json, "BaseModel.model_validate_json")
    else:
        print("choices: pydantic missing; skipped", file=sys.stderr)
    return cands


def bench_json(gw_core: int) -> dict[str, Any]:
    harness.pin_self(gw_core)
    out: dict[str, Any] = {}
    for name, (fn, what) in json_candidates().items():
        fn(CHAT_BODY)  # it must accept the body
        timer = timeit.Timer(lambda fn=fn: fn(CHAT_BODY))
        n, _ = timer.autorange()
        best = min(timer.repeat(repeat=5, number=n)) / n
        out[name] = {"us": round(best * 1e6, 3), "what": what}
        print(f"  json: {name:<34} {best * 1e6:8.2f} µs/op", flush=True)
    return {"body_bytes": len(CHAT_BODY), "results": out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median taken)")
    p.add_argument("--no-doc", action="store_true")
    args = p.parse_args(argv)
    harness.exit_on_sigterm()
    tools = harness.require_tools()
    gw_core, load_core = harness.cores()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results: dict[str, Any] = {
        "timestamp": stamp,
        "machine": harness.machine(),
        "settings": {"conns": CONNS, "duration_s": args.duration, "rounds": args.rounds},
        "servers": {},
        "clients": {},
    }
    print("JSON parse + validate", flush=True)
    results["json"] = bench_json(gw_core)
    harness.pin_self(load_core)
    py = sys.executable
    relay = str(harness.BENCH_DIR / "relay.py")
    with tempfile.TemporaryDirectory(prefix="interlock-choices-") as tmp, Procs(Path(tmp)) as procs:
        workdir = Path(tmp)
        body = workdir / "body.json"
        body.write_bytes(core.chat_body("sim-small", False))
        sim_url, nginx_url = core.start_upstreams(procs, workdir, tools, ["nginx"])
        upstream, path = (
            (nginx_url, "/plain/v1/chat/completions")
            if nginx_url
            else (sim_url, "/v1/chat/completions")
        )
        results["settings"]["client_upstream"] = "nginx" if nginx_url else "sim"

        servers = {"uvicorn": ["--server", "uvicorn"]}
        if (harness.VENV_BIN / "granian").exists():
            servers["granian"] = ["--server", "granian"]
        else:
            print("choices: granian missing (pip install granian); skipped", flush=True)
            results["servers"]["granian"] = None
        clients = {"aiohttp": ["--client", "aiohttp"]}
        if importlib.util.find_spec("httpx"):
            clients["httpx"] = ["--client", "httpx"]
        else:
            print("choices: httpx missing (pip install httpx); skipped", flush=True)
            results["clients"]["httpx"] = None

        targets: dict[tuple[str, str], str] = {}
        for name, extra in servers.items():
            port = harness.free_port()
            proc = procs.start(
                f"server-{name}",
                [py, relay, "--port", str(port), "--app", "hello", *extra],
                gw_core,
            )
            harness.wait_http(f"http://{HOST}:{port}/", proc)
            targets[("servers", name)] = f"http://{HOST}:{port}/"
        for name, extra in clients.items():
            port = harness.free_port()
            proc = procs.start(
                f"client-{name}",
                [py, relay, "--port", str(port), "--upstream", upstream, *extra],
                gw_core,
            )
            harness.wait_http(f"http://{HOST}:{port}/", proc)
            targets[("clients", name)] = f"http://{HOST}:{port}{path}"
        for url in targets.values():
            if "/v1/" in url:
                core.check_answer(url, body.read_bytes(), None, False)
            harness.wrk(url, CONNS, 1, body, None, load_core)  # warm
        runs: dict[tuple[str, str], list[harness.WrkResult]] = {k: [] for k in targets}
        for r in range(args.rounds):
            print(f"servers and clients: round {r + 1}/{args.rounds}", flush=True)
            for key, url in targets.items():
                runs[key].append(harness.wrk(url, CONNS, args.duration, body, None, load_core))
        for (group, name), rs in runs.items():
            best = max(rs, key=lambda x: x.rps)
            results[group][name] = {
                "rps": harness.median([x.rps for x in rs]),
                "p50_ms": best.p50_ms,
                "p99_ms": best.p99_ms,
                "runs": [x.rps for x in rs],
                "errors": sum(x.errors for x in rs),
            }
    harness.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = harness.RESULTS_DIR / f"choices-{stamp}.json"
    out.write_text(json.dumps(results, indent=2))
    for group in ("servers", "clients"):
        for name, v in results[group].items():
            print(
                f"  {group[:-1]:<7} {name:<8} "
                + (
                    f"{v['rps']:>9,.0f} req/s  p50 {v['p50_ms']:.2f} ms  p99 {v['p99_ms']:.2f} ms"
                    if v
                    else "skipped"
                )
            )
    print(f"results: {out.relative_to(harness.ROOT)}")
    if not args.no_doc and list(harness.RESULTS_DIR.glob("core-*.json")):
        import report

        print(f"doc: {report.write_doc().relative_to(harness.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
