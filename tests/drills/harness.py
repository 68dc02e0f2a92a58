"""The fault-drill harness: a cluster of real gateway replicas and the tools to hurt it.

* :class:`Cluster`: N ``interlock serve`` processes (each with its own state directory,
  so each has its own ledger spool) sharing one Redis and one PostgreSQL schema, in front
  of the simulated provider; SIGKILL / SIGTERM a replica or one of its workers, restart a
  replica on its old state directory (its spool is replayed).
* :func:`running`: a cluster for a ``with`` block (simulator priced alike, logs printed
  on failure, stopped at the end).
* :class:`RoundRobin`: the client-side load balancer over the replicas' URLs.
* ``own_redis`` (tests/conftest.py): a redis-server of the drill's own on a free port, to
  freeze (SIGSTOP) and thaw; the shared server at 127.0.0.1:6379 is never touched.
* :class:`PgSchema`: a fresh PostgreSQL schema, optionally behind a
  :class:`~tests.support.tcpproxy.TcpProxy` so a drill can cut the database.
* :func:`send` / :func:`run_all` / :func:`keep_sending`: asyncio load over httpx, every
  request's status, error code, request id and latency kept as a :class:`Result`.
* :func:`trickle`: a raw-socket slow client (headers or body a byte at a time).
* :func:`record`: print a drill's figures and append them to ``test-output/drills.json``
  (the source of the figures in docs/reliability.md; ``python -m tests.drills.report``).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import os
import platform
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, free_port, sim_config
from tests.support.services import PG_URL
from tests.support.tcpproxy import TcpProxy

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
ROOT = Path(__file__).resolve().parents[2]
DRILLS_JSON = ROOT / "test-output" / "drills.json"

# Drill prices (USD per 1M tokens), high enough that cents are a few hundred tokens: the
# gateway's deployment price and the simulator's bill use the same numbers.
PRICE = {"input_per_mtok": 50.0, "output_per_mtok": 200.0}


# ---------------------------------------------------------------------------- figures


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


def _commit() -> str:
    """The commit under test (``DRILL_COMMIT`` overrides: a drill run from an export)."""
    if os.environ.get("DRILL_COMMIT"):
        return os.environ["DRILL_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=5)  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


RECORDED: list[dict[str, Any]] = []  # this session's figures, for the terminal summary


def record(drill: str, figures: dict[str, Any], checks: dict[str, bool]) -> None:
    """Print a drill's figures and the verdict of each of its checks, append them to
    test-output/drills.json (a JSON list), then fail the test if any check failed: the
    figures are kept whether the drill passes or not."""
    entry = {
        "drill": drill,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}",
        "passed": all(checks.values()),
        "checks": checks,
        "figures": figures,
    }
    RECORDED.append(entry)
    print(f"\nDRILL {drill}: {json.dumps(figures, default=str)}\n  checks: {checks}", flush=True)
    DRILLS_JSON.parent.mkdir(parents=True, exist_ok=True)
    try:
        runs = json.loads(DRILLS_JSON.read_text())
        if not isinstance(runs, list):
            runs = []
    except (OSError, ValueError):
        runs = []
    runs.append(entry)
    tmp = DRILLS_JSON.with_suffix(".tmp")
    tmp.write_text(json.dumps(runs[-500:], indent=1, default=str))
    tmp.replace(DRILLS_JSON)
    failed = [name for name, ok in checks.items() if not ok]
    assert not failed, f"drill {drill}: failed {failed}; figures {json.dumps(figures, default=str)}"


def money(value: float | Decimal) -> str:
    return f"${Decimal(str(value)).quantize(Decimal('0.000001'))}"


# ---------------------------------------------------------------------------- services


class PgSchema:
    """A fresh schema in the shared PostgreSQL database, dropped at :meth:`close`; with
    ``proxied`` the gateways reach it through a TCP proxy the drill can cut."""

    def __init__(self, proxied: bool = False) -> None:
        self.name = "drill_" + secrets.token_hex(5)
        self.proxy: TcpProxy | None = None
        self.url = PG_URL  # what the gateways use
        if proxied:
            self.proxy = TcpProxy("127.0.0.1", 5432, free_port())
            self.proxy.start()
            self.url = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{self.proxy.port}")
        # The drill itself always reads the database directly, never through the proxy.
        self.dsn = PG_URL.replace("postgresql+asyncpg://", "postgresql://")

    def storage(self, **extra: Any) -> dict[str, Any]:
        return {"url": self.url, "db_schema": self.name, **extra}

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(self.dsn)
            try:
                return [dict(r) for r in await conn.fetch(sql, *args)]
            finally:
                await conn.close()

        return asyncio.run(go())

    def ledger(self) -> list[dict[str, Any]]:
        """Every ledger row (``[]`` before the gateway created the table)."""
        try:
            return self.query(f'SELECT * FROM "{self.name}".ledger')
        except asyncpg.UndefinedTableError:
            return []

    def wait_ledger(
        self, request_ids: Iterable[str], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """The ledger once it holds a row for each of ``request_ids`` (or fail)."""
        wanted = {r for r in request_ids if r}
        deadline = time.monotonic() + timeout
        while True:
            rows = self.ledger()
            missing = wanted - {r["request_id"] for r in rows}
            if not missing:
                return rows
            if time.monotonic() > deadline:
                pytest.fail(f"{len(missing)} of {len(wanted)} requests have no ledger row "
                            f"after {timeout:.0f}s, e.g. {sorted(missing)[:3]}")  # fmt: skip
            time.sleep(0.5)

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        with contextlib.suppress(Exception):
            self.query(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')


def ledger_cost(rows: Iterable[dict[str, Any]]) -> Decimal:
    return sum((Decimal(str(r["cost_usd"] or 0)) for r in rows), Decimal(0))


def provider_bill(sim: SimControl) -> tuple[Decimal, dict[str, Any]]:
    """The simulated provider's bill (its own ledger, at its own prices) and its totals."""
    totals = sim.ledger()["totals"]
    return Decimal(str(totals["cost_usd"])), totals


def price_sim(sim: SimControl, models: Iterable[str], price: dict[str, float] = PRICE) -> None:
    """Make the simulator bill ``models`` at ``price`` (the gateway's deployment price)."""
    prices = dict(sim.config()["prices"])
    for m in models:
        prices[m] = dict(price)
    sim.set_config(prices=prices)


# ---------------------------------------------------------------------------- gateways


def drill_config(sim_url: str, *, redis_url: str | None = None,
                 pg: PgSchema | None = None, ladder: bool = True) -> dict[str, Any]:  # fmt: skip
    """The simulator config of tests/support/gateway.py, shaped for drills: the
    production defaults (the degradation ladder on, default Redis timeouts), shared state
    in Redis (a fresh key prefix) and the ledger in a PostgreSQL schema when given, and
    every simulated model priced at :data:`PRICE` (unknown-price fallback too)."""
    cfg = sim_config(sim_url, Path("/nonexistent"))  # state_dir is set per replica
    # Replicas have their own state directories: they must share the key pepper, or a key
    # made on one is unknown to the others.
    cfg["auth"]["key_hash_secret"] = "drill-pepper-" + secrets.token_hex(8)
    if ladder:
        cfg["resilience"] = {}  # the defaults, ladder included (sim_config turns it off)
    if redis_url is not None:
        cfg["state"] = {"backend": "redis", "redis_url": redis_url,
                        "key_prefix": f"drill{secrets.token_hex(4)}:"}  # fmt: skip
    if pg is not None:
        cfg["storage"] = pg.storage()
    cfg["spend"] = {
        "unknown_price": {"action": "allow", **PRICE},
        "ledger_flush_interval_s": 0.1,
    }
    for dep in cfg["deployments"].values():
        dep["price"] = dict(PRICE)
    return cfg


def sim_models(cfg: dict[str, Any]) -> list[str]:
    """Upstream model names of the configuration's deployments (to price them alike)."""
    return sorted({d["model"] for d in cfg["deployments"].values()})


def worker_pids(pid: int) -> list[int]:
    """uvicorn's worker processes under the supervisor ``pid`` (multiprocessing spawns)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    pids = []
    for child in map(int, out.split()):
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                pids.append(child)
    return sorted(pids)


class RoundRobin:
    """A client-side load balancer: each call gives the next replica's URL."""

    def __init__(self, urls: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self.set(urls)

    def set(self, urls: Sequence[str]) -> None:
        with self._lock:
            self.urls = list(urls)
            self._cycle = itertools.cycle(self.urls)

    def __call__(self) -> str:
        with self._lock:
            return next(self._cycle)


class Cluster:
    """N gateway replicas with one configuration, each in its own directory."""

    def __init__(self, cfg: dict[str, Any], workdir: Path, replicas: int = 4,
                 workers: int = 1, pg: PgSchema | None = None) -> None:  # fmt: skip
        self.cfg = cfg
        self.pg = pg  # the schema the replicas share, for the drill's own queries
        self.workdir = workdir
        self.workers = workers
        self.replicas: list[GatewayProcess] = [self._make(i) for i in range(replicas)]
        self.lb = RoundRobin([g.url for g in self.replicas])

    def _make(self, i: int) -> GatewayProcess:
        cfg = copy.deepcopy(self.cfg)
        home = self.workdir / f"replica{i}"
        cfg["state_dir"] = str(home / "state")  # the spool lives here: kept across restarts
        if str(cfg.get("storage", {}).get("url", "")).startswith("sqlite"):
            cfg["storage"]["url"] = f"sqlite+aiosqlite:///{self.workdir}/shared.db"
        return GatewayProcess(cfg, home, workers=self.workers)

    def start(self, timeout: float = 90.0) -> Cluster:
        """Start every replica at once and wait until all are ready."""
        for gw in self.replicas:
            gw.start_unready()
        for gw in self.replicas:
            gw.wait_ready(timeout)
        return self

    @property
    def urls(self) -> list[str]:
        return [g.url for g in self.replicas]

    def send_signal(self, i: int, sig: signal.Signals) -> None:
        proc = self.replicas[i].proc
        assert proc is not None
        proc.send_signal(sig)

    def kill(self, i: int) -> None:
        """SIGKILL replica ``i``'s whole process group of workers (a crashed machine)."""
        proc = self.replicas[i].proc
        assert proc is not None
        for w in worker_pids(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(w, signal.SIGKILL)
        proc.kill()
        proc.wait(10)

    def kill_worker(self, i: int, which: int = 0, sig: signal.Signals = signal.SIGKILL) -> int:
        proc = self.replicas[i].proc
        assert proc is not None
        pids = worker_pids(proc.pid)
        assert pids, f"replica {i} has no worker processes"
        os.kill(pids[which], sig)
        return pids[which]

    def restart(self, i: int, timeout: float = 90.0) -> GatewayProcess:
        """Start replica ``i`` again on its old state directory (on a new port)."""
        self.replicas[i].stop()
        gw = self._make(i)
        self.replicas[i] = gw
        gw.start_unready()
        gw.wait_ready(timeout)
        self.lb.set(self.urls)
        return gw

    def stop(self) -> None:
        for gw in self.replicas:
            with contextlib.suppress(Exception):
                gw.stop()

    def output(self) -> str:
        """The tail of each replica's log, without the access log lines."""
        parts = []
        for i, g in enumerate(self.replicas):
            lines = [ln for ln in g.output().splitlines() if '"interlock.access"' not in ln]
            parts.append(f"--- replica {i} ---\n" + "\n".join(lines[-40:]))
        return "\n".join(parts)


@contextlib.contextmanager
def running(cfg: dict[str, Any], workdir: Path, *, replicas: int = 2, workers: int = 1,
            pg: PgSchema | None = None, sim: SimControl | None = None) -> Iterator[Cluster]:  # fmt: skip
    """A started :class:`Cluster` for the ``with`` block: the replicas' logs are printed if
    the block fails, and the replicas are stopped at its end. ``sim``: the simulator bills
    the configuration's models at :data:`PRICE`, as the gateway prices them."""
    if sim is not None:
        price_sim(sim, sim_models(cfg))
    cluster = Cluster(cfg, workdir, replicas=replicas, workers=workers, pg=pg).start()
    try:
        yield cluster
    except BaseException:
        print(cluster.output())
        raise
    finally:
        cluster.stop()


def make_key(url: str, **fields: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """A new virtual key: its auth header and the admin API's answer."""
    r = httpx.post(f"{url}/admin/keys", headers=ADMIN, json=fields, timeout=30)
    assert r.status_code == 201, r.text
    created = r.json()
    return {"authorization": f"Bearer {created['key']}"}, created


def degradation(url: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/admin/degradation", headers=ADMIN, timeout=5)
    r.raise_for_status()
    return dict(r.json())


async def in_flight(c: httpx.AsyncClient, url: str) -> int:
    """Upstream calls replica ``url`` has at its providers right now (0 if it is gone)."""
    try:
        r = await c.get(f"{url}/admin/deployments", headers=ADMIN, timeout=5)
        return sum(int(d.get("in_flight") or 0) for d in r.json()["data"])
    except (httpx.HTTPError, ValueError, KeyError):
        return 0


async def busiest(c: httpx.AsyncClient, urls: Sequence[str], at_least: int,
                  timeout: float = 10.0) -> int:  # fmt: skip
    """Wait until some replica has ``at_least`` calls at its providers; its index (the
    busiest one when the wait times out)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = await asyncio.gather(*(in_flight(c, u) for u in urls))
        best = max(range(len(urls)), key=lambda i: counts[i])
        if counts[best] >= at_least or time.monotonic() > deadline:
            return best
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------- load


@dataclass(slots=True)
class Result:
    """One request as the client saw it. ``status`` 0: no status line came back."""

    status: int
    elapsed: float
    code: str = ""  # the OpenAI-style error code, if any
    error: str = ""  # the exception, when no response came
    request_id: str = ""
    retry_after: str | None = None
    cost: Decimal | None = None  # x-interlock-cost-usd
    tag: str = ""
    started: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _error_code(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict):
        return str(err.get("code") or err.get("type") or "")
    return ""


async def send(client: httpx.AsyncClient, method: str, url: str, *, tag: str = "",
               stream_read: int | None = None, **kwargs: Any) -> Result:  # fmt: skip
    """One request. ``stream_read``: read that many SSE data lines of the (streamed)
    answer and then drop the connection (a client abort); None reads everything."""
    t0 = time.monotonic()
    try:
        async with client.stream(method, url, **kwargs) as resp:
            chunks: list[bytes] = []
            read = 0
            aborted = done = False
            if stream_read is not None and resp.status_code == 200:
                async for line in resp.aiter_lines():
                    done = done or line == "data: [DONE]" or line == "event: message_stop"
                    if line.startswith("data: ") and line != "data: [DONE]":
                        read += 1
                        if read >= stream_read:
                            aborted = True
                            break
                    chunks.append(line.encode() + b"\n")
            else:
                chunks = [b"".join([c async for c in resp.aiter_bytes()])]
            body = b"".join(chunks)
            cost = resp.headers.get("x-interlock-cost-usd")
            return Result(
                status=resp.status_code,
                elapsed=time.monotonic() - t0,
                code=_error_code(body) if resp.status_code >= 400 else "",
                request_id=resp.headers.get("x-request-id", ""),
                retry_after=resp.headers.get("retry-after"),
                cost=Decimal(cost) if cost else None,
                tag=tag,
                started=t0,
                extra={"aborted": aborted, "lines": read, "done": done,
                       "degradation": resp.headers.get("x-interlock-degradation", "")},
            )  # fmt: skip
    except httpx.HTTPError as exc:
        return Result(0, time.monotonic() - t0, error=type(exc).__name__, tag=tag, started=t0)


async def run_all(
    jobs: Iterable[Callable[[], Awaitable[Result]]], concurrency: int
) -> list[Result]:
    """Run the request factories with at most ``concurrency`` in flight; results in order."""
    sem = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[Result]]) -> Result:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def keep_sending(job: Callable[[int], Awaitable[Result]], stop: asyncio.Event,
                       concurrency: int, pause_s: float = 0.0) -> list[Result]:  # fmt: skip
    """``concurrency`` loops calling ``job(i)`` until ``stop`` is set."""
    results: list[Result] = []
    counter = itertools.count()

    async def loop() -> None:
        while not stop.is_set():
            results.append(await job(next(counter)))
            if pause_s:
                await asyncio.sleep(pause_s)

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return results


def client(
    connections: int = 200, timeout: float = 60.0, keepalive: bool = True
) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections,
                          max_keepalive_connections=connections if keepalive else 0)  # fmt: skip
    return httpx.AsyncClient(timeout=timeout, limits=limits)


def latency_figures(results: Sequence[Result]) -> dict[str, float]:
    lat = [r.elapsed for r in results]
    return {"p50_s": round(percentile(lat, 50), 3), "p99_s": round(percentile(lat, 99), 3),
            "max_s": round(max(lat, default=0.0), 3)}  # fmt: skip


def statuses(results: Iterable[Result]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        key = str(r.status) + (f" {r.code}" if r.code else "") if r.status else f"0 {r.error}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------------- slow clients


def trickle(port: int, head: bytes, body: bytes = b"", *, every_s: float = 0.5,
            trickle_head: bool = True, limit_s: float = 60.0) -> tuple[float, bytes]:  # fmt: skip
    """A slow client on a raw socket: send ``head`` (a byte at a time every ``every_s`` if
    ``trickle_head``, else at once) and then ``body`` a byte at a time, until the server
    closes the connection. Returns (seconds until it closed, what the server answered);
    the seconds are ``limit_s`` if it never did."""
    t0 = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    received = b""
    try:
        sock.settimeout(every_s)
        if not trickle_head:
            sock.sendall(head)
        pending = (head if trickle_head else b"") + body
        while time.monotonic() - t0 < limit_s:
            try:
                data = sock.recv(65536)
                if not data:  # the server closed it
                    return time.monotonic() - t0, received
                received += data
                continue
            except TimeoutError:
                pass
            except OSError:  # reset
                return time.monotonic() - t0, received
            if pending:
                try:
                    sock.sendall(pending[:1])
                except OSError:
                    return time.monotonic() - t0, received
                pending = pending[1:]
        return limit_s, received
    finally:
        sock.close()
