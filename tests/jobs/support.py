"""Helpers for the Jobs API tests: job configs, polling, `interlock worker` subprocesses,
and a webhook receiver (aiohttp) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

from interlock.jobs.queue import Job, JobQueue, JobStatus
from interlock.webhooks import generate_secret
from tests.support.databases import db_rows
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config, with_cluster_secrets

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
MSG = [{"role": "user", "content": "tell me about trains"}]
CHAT_BODY = {"model": "chat", "messages": MSG}
FINISHED = ("succeeded", "failed", "cancelled")
HOOK_SECRET = generate_secret()


def jobs_config(sim_url: str, state: Path, **jobs: Any) -> dict[str, Any]:
    """The simulated-provider config, with fast job polling and quick retries.

    The gateway's own per-request retries are off (max_attempts 1), so an upstream
    failure reaches the job and the job's retry is what is tested.
    """
    settings: dict[str, Any] = {
        "poll_interval_s": 0.05,
        "retry_base_delay_s": 0.2,
        "retry_max_delay_s": 1.0,
        "metrics_interval_s": 0.2,
        "webhooks": {"secret": HOOK_SECRET, "allow_hosts": ["127.0.0.1"], "base_delay_s": 0.1},
    }
    settings.update(jobs)
    return sim_config(
        sim_url,
        state,
        jobs=settings,
        resilience={"degradation": {"signals": {}}, "retry": {"max_attempts": 1}},
    )


def chat_job(**extra: Any) -> dict[str, Any]:
    return {"endpoint": "/v1/chat/completions", "body": dict(CHAT_BODY), **extra}


def client(gw: GatewayProcess, key: str = MASTER_KEY) -> httpx.Client:
    return httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {key}"}, timeout=30)


def make_key(gw: GatewayProcess, **fields: Any) -> tuple[str, str]:
    """A new virtual key: (key id, secret)."""
    with client(gw) as c:
        r = c.post("/admin/keys", json=fields)
        assert r.status_code == 201, r.text
        return r.json()["id"], r.json()["key"]


def submit(c: httpx.Client, job: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
    r = c.post("/v1/jobs", json=job or chat_job(), headers=headers)
    assert r.status_code == 202, r.text
    return dict(r.json())


def wait_job(
    c: httpx.Client, job_id: str, until: tuple[str, ...] = FINISHED, timeout: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = c.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = dict(r.json())
        if job["status"] in until:
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
        time.sleep(0.05)


async def until_status(q: JobQueue, job_id: str, *statuses: JobStatus, timeout: float = 10) -> Job:
    """The job once it is in one of ``statuses`` (read from the queue itself)."""
    deadline = time.monotonic() + timeout
    while True:
        job = await q.get(job_id)
        assert job is not None
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"job is {job.status}"
        await asyncio.sleep(0.02)


def wait_ledger(state: Path, request_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = db_rows(state, "SELECT * FROM ledger WHERE request_id = ?", request_id)
        if rows:
            return rows[0]
        assert time.monotonic() < deadline, f"no ledger row {request_id}"
        time.sleep(0.1)


class WorkerProcess:
    """`interlock worker --config FILE` as a subprocess, like an operator would run it."""

    def __init__(self, config: dict[str, Any], workdir: Path, concurrency: int = 4) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "worker.yaml"
        self.config_path.write_text(yaml.safe_dump(with_cluster_secrets(config)))
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"worker-{time.monotonic_ns()}.log"

    def start(self, timeout: float = 30) -> WorkerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        cmd = [sys.executable, "-m", "interlock.cli.main", "worker",
               "--config", str(self.config_path), "--concurrency", str(self.concurrency)]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir
        )
        deadline = time.monotonic() + timeout
        while "interlock worker running" not in self.output():
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.output()}")
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.05)
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if getattr(self, "_log", None) is not None:
            self._log.close()


@dataclass
class Receiver:
    """Webhook deliveries received: (headers, raw body)."""

    url: str
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200

    async def wait_for(self, n: int = 1, timeout: float = 20) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n:
            assert time.monotonic() < deadline, f"{len(self.got)} of {n} webhooks arrived"
            await asyncio.sleep(0.05)
        return self.got


async def start_receiver(port: int) -> tuple[Receiver, web.AppRunner]:
    receiver = Receiver(f"http://127.0.0.1:{port}/hooks/jobs")

    async def hook(request: web.Request) -> web.Response:
        receiver.got.append((dict(request.headers), await request.read()))
        return web.Response(status=receiver.status)

    app = web.Application()
    app.router.add_post("/hooks/jobs", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return receiver, runner


def sigterm(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
