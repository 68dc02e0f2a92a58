"""Shared plumbing for the benchmarks: pinned processes, wrk runs, nginx, a TTFB client.

Everything listens on and targets 127.0.0.1 only. Every process is started in its own
process group and :class:`Procs` kills every group it started, whatever happens.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
LUA_SCRIPT = BENCH_DIR / "wrk_post.lua"
VENV_BIN = Path(sys.executable).parent

# The gateway (the process under test) gets core 0 alone; the load generator, the
# upstream and this orchestrating script share core 1.
GW_CORE = 0
LOAD_CORE = 1


def cores() -> tuple[int, int]:
    """(gateway core, load core); both 0 on a one-core machine (then the figures mislead)."""
    if (os.cpu_count() or 1) < 2:
        return 0, 0
    return GW_CORE, LOAD_CORE


def pin_self(core: int) -> None:
    try:
        os.sched_setaffinity(0, {core})
    except OSError:
        pass


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``finally`` blocks stop every child process."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def require_tools() -> dict[str, str | None]:
    """Where wrk, taskset and nginx are; exits with a clear message if a required one is missing."""
    found = {name: shutil.which(name) for name in ("wrk", "taskset")}
    found["nginx"] = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    missing = [name for name in ("wrk", "taskset") if not found[name]]
    if missing:
        sys.exit(
            f"bench: required tool(s) missing: {', '.join(missing)}.\n"
            "  Install them first, e.g.: sudo apt-get install -y wrk util-linux\n"
            "  (nginx is optional: sudo apt-get install -y nginx-light)"
        )
    if not found["nginx"]:
        print(
            "bench: nginx not found; the static-upstream rows are skipped "
            "(install with: sudo apt-get install -y nginx-light)",
            file=sys.stderr,
        )
    return found


class Procs:
    """Start pinned processes in their own process groups; stop them all on exit."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(
        self, name: str, cmd: list[str], core: int, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
        full_env.update(env or {})
        proc = subprocess.Popen(
            ["taskset", "-c", str(core), *cmd],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            cwd=self.logdir,
            start_new_session=True,  # its own process group: we can kill all it spawns
        )
        log.close()
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(proc, signal.SIGKILL)  # stragglers in the group (workers, children)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.procs)):
            self.stop(proc)

    def log(self, name: str) -> str:
        try:
            return (self.logdir / f"{name}.log").read_text(errors="replace")[-3000:]
        except OSError:
            return ""


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the leader's pid
    except (ProcessLookupError, PermissionError):
        pass


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until ``url`` answers anything over HTTP (any status)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited early (rc={proc.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")


def http_json(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size (VmHWM) of one process, in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def python_child_pid(proc: subprocess.Popen[bytes]) -> int:
    """The pid under ``taskset`` (taskset execs, so it is the same pid)."""
    return proc.pid


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    conns: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # non-2xx/3xx answers plus socket errors
    # CPU time the measured process spent per request (utime+stime, all its threads):
    # unlike req/s it barely moves when neighbours steal the core.
    cpu_us_per_req: float | None = None

    @property
    def ok(self) -> bool:
        return self.errors == 0 and self.requests > 0


def wrk(
    url: str,
    conns: int,
    duration_s: int,
    body_file: Path,
    auth: str | None,
    core: int,
    pid: int | None = None,
    script: Path = LUA_SCRIPT,
) -> WrkResult:
    """One pinned wrk run (one thread) POSTing ``body_file``; latency percentiles from wrk;
    with ``pid``, also that process's CPU time per request."""
    cpu0 = cpu_seconds(pid) if pid else None
    env = dict(os.environ, BENCH_BODY_FILE=str(body_file), BENCH_AUTH=auth or "")
    cmd = [
        "taskset",
        "-c",
        str(core),
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{duration_s}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=duration_s + 30, check=False
    )
    cpu1 = cpu_seconds(pid) if pid else None
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            d = json.loads(line[len("BENCH_JSON ") :])
            secs = d["duration_us"] / 1e6
            errors = d["status"] + d["connect"] + d["read"] + d["write"] + d["timeout"]
            cpu = None
            if cpu0 is not None and cpu1 is not None and d["requests"]:
                cpu = round((cpu1 - cpu0) * 1e6 / d["requests"], 1)
            return WrkResult(
                conns=conns,
                duration_s=round(secs, 3),
                requests=d["requests"],
                rps=round(d["requests"] / secs, 1) if secs else 0.0,
                p50_ms=d["p50_us"] / 1000,
                p90_ms=d["p90_us"] / 1000,
                p99_ms=d["p99_us"] / 1000,
                max_ms=d["max_us"] / 1000,
                errors=errors,
                cpu_us_per_req=cpu,
            )
    raise RuntimeError(f"wrk gave no result (rc={out.returncode}):\n{out.stdout}\n{out.stderr}")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


@dataclass
class Search:
    """Maximum requests/s whose p99 stays under the limit, over a connection-count sweep."""

    limit_ms: float
    points: list[WrkResult] = field(default_factory=list)

    @property
    def best(self) -> WrkResult | None:
        good = [p for p in self.points if p.ok and p.p99_ms < self.limit_ms]
        return max(good, key=lambda p: p.rps) if good else None

    def to_json(self) -> dict[str, Any]:
        best = self.best
        busy = [p.cpu_us_per_req for p in self.points if p.conns >= 8 and p.cpu_us_per_req]
        return {
            "limit_p99_ms": self.limit_ms,
            "best": asdict(best) if best else None,
            # CPU per request once the core is busy (8+ connections): the robust cost figure.
            "cpu_us_per_req": round(median(busy), 1) if busy else None,
            "points": [asdict(p) for p in self.points],
        }


def search_max_rps(
    url: str,
    body_file: Path,
    auth: str | None,
    core: int,
    conns: list[int],
    duration_s: int,
    limit_ms: float = 50.0,
    pid: int | None = None,
) -> Search:
    """Sweep ``conns`` upwards; stop once p99 passes the limit (more connections only queue).

    A point over the limit is measured once more before the sweep stops: on a shared
    machine one neighbour's burst can push a single short run's p99 past it.
    """
    wrk(url, 8, 1, body_file, auth, core)  # warm: connection pools, caches, first-call paths
    found = Search(limit_ms)
    for n in conns:
        res = wrk(url, n, duration_s, body_file, auth, core, pid)
        found.points.append(res)
        if res.p99_ms >= limit_ms or not res.ok:
            res = wrk(url, n, duration_s, body_file, auth, core, pid)
            found.points.append(res)
            if res.p99_ms >= limit_ms or not res.ok:
                break
    return found


# --------------------------------------------------------------------------- TTFB


def _recv_headers(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], int]:
    """Read until the end of the response head; returns (status, headers, body offset)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end]).decode("latin-1").split("\r\n")
            status = int(head[0].split(" ", 2)[1])
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            return status, headers, end + 4
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed in the response head")
        buf += data


def _chunked_done(body: bytes) -> bool:
    """Whether a chunked body is complete (walks the chunk sizes)."""
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            return False
        size = int(body[pos:eol].split(b";")[0], 16)
        if size == 0:
            return body.find(b"\r\n\r\n", eol) >= 0 or body.endswith(b"\r\n", eol)
        pos = eol + 2 + size + 2
        if pos > len(body):
            return False


def ttfb(
    port: int, path: str, body: bytes, auth: str | None, n: int, warmup: int = 20
) -> dict[str, Any]:
    """Time from request sent to first response-body byte, over ``n`` sequential requests on
    one keep-alive connection; each response is read to its end before the next request."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        + (f"Authorization: Bearer {auth}\r\n" if auth else "")
        + "\r\n"
    ).encode()
    request = head + body
    samples: list[float] = []
    total: list[float] = []
    with socket.create_connection((HOST, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n + warmup):
            buf = bytearray()
            t0 = time.perf_counter()
            sock.sendall(request)
            status, headers, off = _recv_headers(sock, buf)
            if status != 200:
                raise RuntimeError(f"TTFB request answered {status}: {bytes(buf)[:300]!r}")
            while len(buf) <= off:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("connection closed before the body")
                buf += data
            t1 = time.perf_counter()
            length = headers.get("content-length")
            while True:
                got = bytes(buf[off:])
                if length is not None and len(got) >= int(length):
                    break
                if length is None and _chunked_done(got):
                    break
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("connection closed mid-body")
                buf += data
            t2 = time.perf_counter()
            if i >= warmup:
                samples.append((t1 - t0) * 1000)
                total.append((t2 - t0) * 1000)
    return {
        "n": n,
        "ttfb_p50_ms": _pct(samples, 50),
        "ttfb_p99_ms": _pct(samples, 99),
        "total_p50_ms": _pct(total, 50),
        "total_p99_ms": _pct(total, 99),
    }


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return round(s[k], 4)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs = {}
    from importlib import metadata

    for name in (
        "interlock",
        "uvicorn",
        "uvloop",
        "httptools",
        "aiohttp",
        "orjson",
        "pydantic",
        "granian",
        "httpx",
        "msgspec",
    ):
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "libraries": libs,
        "wrk": _first_line(["wrk", "--version"]),
        "nginx": _first_line(["nginx", "-v"]),
    }


def _first_line(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except OSError:
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else None


# --------------------------------------------------------------------------- nginx


def nginx_conf(workdir: Path, port: int, plain: bytes, sse: bytes) -> Path:
    """A one-process nginx answering fixed bodies to POST: /plain/... JSON, /sse/... SSE."""
    (workdir / "nginx-plain.json").write_bytes(plain)
    (workdir / "nginx-sse.sse").write_bytes(sse)
    tmp = workdir / "nginx-tmp"
    tmp.mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
master_process off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_body_buffer_size 64k;
    # try_files rewrites the URI to the file, and the 405 error_page below re-serves that
    # URI by GET outside these locations: the type comes from the file's extension.
    types {{ application/json json; text/event-stream sse; }}
    server {{
        listen {HOST}:{port};
        root {workdir};
        # Static files answer POST with 405; turn that into the file itself.
        error_page 405 =200 $uri;
        location = /plain/v1/chat/completions {{
            try_files /nginx-plain.json =404;
        }}
        location = /sse/v1/chat/completions {{
            try_files /nginx-sse.sse =404;
        }}
        location = /ping {{ return 200 "ok"; }}
    }}
}}
"""
    )
    return conf
