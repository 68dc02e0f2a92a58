"""deploy/docker-compose.yml brought up as processes, end to end.

No container engine runs on this machine (the docker CLI is there, no daemon; no podman or
buildah), so this test is the process-level equivalent of `docker compose up`: it parses
docker-compose.yml and starts each Interlock service (sim, gateway-1, gateway-2, worker)
with its exact command and its environment resolved the way compose resolves it from
deploy/.env (here: freshly generated secrets, every key of .env.example), against this
machine's Redis and PostgreSQL. What a container network gives for free is translated, and
only that: the service names in interlock.compose.yaml (postgres, redis, sim) become
127.0.0.1 (the PostgreSQL role/database become the test server's: trust auth), each
process gets its own port (containers all listen on 8080) and one HTTP worker process
(server.workers: 2 would put 5 interpreters on this 2-core machine), each service its own state
directory (its named volume), and the run gets a fresh PostgreSQL schema and Redis key
prefix so it shares nothing with other tests. The webhook receiver runs on 127.0.0.1, so
jobs.webhooks.allow_hosts admits it (a compose receiver would be a public host).

Checked: the gateways and the separate worker agree on the webhook secret (the issue's
finding: each generated its own), a key made on one gateway works on the other, a job
submitted to a gateway is run by the worker (the gateways do not run jobs), its webhook is
verified by a receiver with the secret from .env (standardwebhooks), Prometheus metrics
scraped from both gateways and the worker, `interlock check` run as in a container reports
no FAIL but the load test nobody ran, and the image's health check script finds the
gateway's port.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from standardwebhooks import Webhook

from tests.support.databases import drop_pg_schema
from tests.support.gateway import free_port
from tests.support.services import PG_URL, REDIS_URL, delete_redis_keys, require

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}")


def dotenv() -> dict[str, str]:
    """deploy/.env as an operator fills it from .env.example: every key, a random value."""
    keys = [
        line.split("=", 1)[0]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    values = {key: secrets.token_urlsafe(32) for key in keys}
    values["INTERLOCK_WEBHOOK_SECRET"] = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    values["OPENAI_API_KEY"] = ""
    return values


def compose_env(service: dict[str, Any], dot: dict[str, str]) -> dict[str, str]:
    """A service's environment as compose interpolates it (${X:?..}, ${X:-..})."""
    out: dict[str, str] = {}
    for name, raw in service.get("environment", {}).items():

        def sub(m: re.Match[str]) -> str:
            value = dot.get(m.group(1), "")
            assert value or ":-" in m.group(0), f"compose would refuse: {m.group(0)}"
            return value

        out[name] = COMPOSE_VAR.sub(sub, str(raw))
    return out


class Stack:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.compose: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
        self.dot = dotenv()
        self.schema = "compose_" + secrets.token_hex(5)
        self.prefix = f"compose-{secrets.token_hex(5)}:"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.logs: dict[str, Path] = {}

    def service(self, name: str) -> dict[str, Any]:
        svc: dict[str, Any] = self.compose["services"][name]
        return svc

    def config(self, sim_port: int) -> Path:
        """interlock.compose.yaml with the compose network's names mapped to this machine."""
        text = (DEPLOY / "interlock.compose.yaml").read_text()
        pg = PG_URL.split("://", 1)[1]  # postgres@127.0.0.1:5432/test
        user, _, hostdb = pg.partition("@")
        text = text.replace(
            "interlock:${POSTGRES_PASSWORD}@postgres:5432/interlock",
            f"{user}:${{POSTGRES_PASSWORD}}@{hostdb}",
        )
        redis_host = REDIS_URL.split("://", 1)[1].split("/", 1)[0]
        text = text.replace("//redis:6379/", f"//{redis_host}/")
        text = text.replace("http://sim:9000", f"http://127.0.0.1:{sim_port}")
        hosts = set(re.findall(r"//(?:[^@/]*@)?([A-Za-z0-9.-]+):\d+", text))
        assert hosts == {"127.0.0.1"}, hosts  # every compose service name was mapped
        data: dict[str, Any] = yaml.safe_load(text)
        data["server"]["workers"] = 1  # 2 cores here, 3 gateway/worker processes already
        data["storage"]["db_schema"] = self.schema
        data["state"]["key_prefix"] = self.prefix
        hooks = data["jobs"]["webhooks"] = data["jobs"].get("webhooks") or {}
        hooks["allow_hosts"] = ["127.0.0.1"]
        hooks["base_delay_s"] = 0.1
        data["jobs"]["poll_interval_s"] = 0.05
        data["launch"]["runbooks_dir"] = str(ROOT / "docs" / "runbooks")  # the bind mount
        path = self.tmp / "interlock.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def start(self, name: str, config: Path) -> None:
        svc = self.service(name)
        command = [str(a) for a in svc["command"]]
        port = free_port()
        if command[0] == "serve":
            command = [a for a in command]
            command[command.index("--host") + 1] = "127.0.0.1"
            assert "--port" not in command  # the port is server.port; here: one per process
            command += ["--port", str(port)]
        elif command[0] == "worker":
            command[command.index("--metrics-port") + 1] = str(port)
        elif command[0] == "sim":
            command[command.index("--host") + 1] = "127.0.0.1"
            command[command.index("--port") + 1] = str(port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
        env |= compose_env(svc, self.dot)
        if "INTERLOCK_CONFIG" in env:
            env["INTERLOCK_CONFIG"] = str(config)  # the file compose mounts there
        state = self.tmp / f"{name}-state"  # the service's named volume
        state.mkdir()
        self.logs[name] = self.tmp / f"{name}.log"
        self.ports[name] = port
        with open(self.logs[name], "wb") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "interlock.cli.main", *command],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=state,
            )  # fmt: skip

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def wait(self, name: str, path: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            proc = self.procs[name]
            assert proc.poll() is None, f"{name} exited:\n{self.log(name)}"
            try:
                r = httpx.get(self.url(name) + path, timeout=2)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:500]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            assert time.monotonic() < deadline, f"{name} not ready ({last}):\n{self.log(name)}"
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class Receiver:
    """A webhook receiver on 127.0.0.1: records (headers, body) of every POST."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    require("PostgreSQL", "127.0.0.1", 5432)
    require("Redis", "127.0.0.1", 6379)
    s = Stack(tmp_path)
    try:
        s.start("sim", tmp_path / "unused")
        s.wait("sim", "/_sim/health")
        config = s.config(s.ports["sim"])
        for name in ("gateway-1", "gateway-2", "worker"):
            s.start(name, config)
        s.wait("gateway-1", "/readyz")
        s.wait("gateway-2", "/readyz")
        s.wait("worker", "/metrics")
        yield s
    finally:
        s.stop()
        drop_pg_schema(s.schema)
        for db in (0, 1):
            delete_redis_keys(s.prefix, REDIS_URL.rsplit("/", 1)[0] + f"/{db}")


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        series = line.startswith(name + "{") or line.startswith(name + " ")
        if series and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_the_compose_stack_runs_end_to_end(stack: Stack, tmp_path: Path) -> None:
    master = stack.dot["INTERLOCK_MASTER_KEY"]
    admin = {"authorization": f"Bearer {master}"}
    gw1, gw2 = stack.url("gateway-1"), stack.url("gateway-2")
    with httpx.Client(timeout=30) as http:
        # one webhook secret: the one in .env, on both gateways
        for gw in (gw1, gw2):
            r = http.get(gw + "/admin/jobs/webhook-secret", headers=admin)
            assert r.status_code == 200, r.text
            assert r.json() == {"secret": stack.dot["INTERLOCK_WEBHOOK_SECRET"], "source": "config"}
        # a key made on one gateway serves on the other (one database, one pepper)
        r = http.post(gw1 + "/admin/keys", headers=admin, json={"name": "compose-test"})
        assert r.status_code == 201, r.text
        user = {"authorization": f"Bearer {r.json()['key']}"}
        body = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
        r = http.post(gw2 + "/v1/chat/completions", headers=user, json=body)
        assert r.status_code == 200, r.text
        # a job submitted to gateway-2 is run by the separate worker, its webhook verified
        receiver = Receiver()
        try:
            job = {"endpoint": "/v1/chat/completions", "body": body, "callback_url": receiver.url}
            r = http.post(gw2 + "/v1/jobs", headers=user, json=job)
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            deadline = time.monotonic() + 30
            while not receiver.received:
                assert time.monotonic() < deadline, stack.log("worker")
                time.sleep(0.05)
            headers, payload = receiver.received[0]
            event = Webhook(stack.dot["INTERLOCK_WEBHOOK_SECRET"]).verify(payload, headers)
            assert event["type"] == "job.succeeded" and event["data"]["id"] == job_id
        finally:
            receiver.close()
        r = http.get(gw1 + f"/v1/jobs/{job_id}", headers=user)
        assert r.json()["status"] == "succeeded", r.text
        # metrics: the worker finished it, the gateways did not (run_in_serve: false)
        worker_metrics = http.get(stack.url("worker") + "/metrics").text
        assert metric(worker_metrics, "interlock_jobs_finished_total", status="succeeded") >= 1
        assert metric(worker_metrics, "interlock_webhook_deliveries_total") >= 1
        for gw in (gw1, gw2):
            text = http.get(gw + "/metrics").text
            assert "interlock_jobs_queue_depth" in text
            assert metric(text, "interlock_jobs_finished_total") == 0
        assert metric(http.get(gw2 + "/metrics").text, "interlock_requests_total") >= 1
    # `docker compose exec gateway-1 interlock check`: the container's environment and
    # configuration, the gateway's port mapped; its only FAIL is the load test not yet run
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    env |= compose_env(stack.service("gateway-1"), stack.dot)
    env |= {"INTERLOCK_CONFIG": str(tmp_path / "interlock.yaml"), "INTERLOCK_URL": gw1}
    out = subprocess.run([sys.executable, "-m", "interlock.cli.main", "check"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    fails = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and fails[0].split()[1:3] == ["load", "test"], out.stdout + out.stderr
    assert "PASS  configuration matches gateway" in out.stdout, out.stdout
    # the image's HEALTHCHECK script finds the gateway from INTERLOCK_PORT or server.port
    check = [sys.executable, str(DEPLOY / "healthcheck.py")]
    env = {"PATH": os.environ["PATH"], "INTERLOCK_PORT": str(stack.ports["gateway-1"])}
    assert subprocess.run(check, env=env, timeout=10).returncode == 0
    moved = tmp_path / "moved.yaml"
    moved.write_text(yaml.safe_dump({"server": {"port": stack.ports["gateway-2"]}}))
    env = {"PATH": os.environ["PATH"], "INTERLOCK_CONFIG": str(moved)}
    assert subprocess.run(check, env=env, timeout=10).returncode == 0
    env["INTERLOCK_PORT"] = str(free_port())  # nobody there
    assert subprocess.run(check, env=env, timeout=10).returncode == 1
