"""Secrets stay secret: canaries planted everywhere a secret lives never come out.

A provider API key, the master key, a virtual key, the job-webhook and alert-webhook
signing secrets, and an API key pasted into a prompt are planted in a real gateway
(tracing exported over OTLP, an alert firing, a job webhook delivered). Then every log
line, the /metrics text, every exported trace, every error body and every webhook
payload is searched for them. Prompt text itself is not logged unless asked for.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from interlock.sim import SimControl
from interlock.telemetry.logs import body_excerpt
from interlock.telemetry.redact import Redactor
from tests.support.gateway import GatewayProcess, sim_config
from tests.telemetry.receiver import Receiver

pytestmark = pytest.mark.slow

PROVIDER_KEY = "sk-canaryprovider0123456789abcdef"
MASTER = "canary-master-key-5e1f0a9b7c"
JOB_SECRET = "whsec_" + base64.b64encode(b"canary-job-webhook-secret-32b!!!").decode()
ALERT_SECRET = "whsec_" + base64.b64encode(b"canary-alert-webhook-secret-32b!").decode()
PROMPT_KEY = "sk-proj-canaryprompt9876543210zyxw"
PROMPT_MARKER = "canary-prompt-text-7f3a"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def gw(sim_url: str, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[GatewayProcess]:  # fmt: skip
    work = tmp_path_factory.mktemp("canary")
    cfg = sim_config(sim_url, work / "state")
    cfg["providers"]["sim"]["api_key"] = PROVIDER_KEY
    cfg["auth"]["master_key"] = MASTER
    cfg["models"]["big"] = {"deployments": ["sim-large"], "retry": {"max_attempts": 1}}
    cfg["jobs"] = {"webhooks": {"secret": JOB_SECRET, "allow_hosts": ["127.0.0.1"]}}
    cfg["telemetry"] = {"tracing": {"enabled": True, "otlp_endpoint": receiver.url}}
    cfg["alerts"] = {
        "interval_s": 0.2, "window_s": 5, "min_requests": 1,
        "rules": [{"metric": "error_rate", "warning": 0.01, "critical": 0.99}],
        "sinks": [{"kind": "webhook", "url": receiver.url + "/alerts", "secret": ALERT_SECRET},
                  {"kind": "log"}],
        "allow_hosts": ["127.0.0.1"],
    }  # fmt: skip
    g = GatewayProcess(cfg, work).start()
    try:
        yield g
    finally:
        g.stop()


def test_no_secret_leaves_the_gateway(
    gw: GatewayProcess, sim: SimControl, receiver: Receiver
) -> None:
    admin = {"authorization": f"Bearer {MASTER}"}
    errors: list[bytes] = []
    with httpx.Client(base_url=gw.url, timeout=30) as c:
        vkey = c.post("/admin/keys", json={"name": "canary"}, headers=admin).json()["key"]
        user = {"authorization": f"Bearer {vkey}"}
        prompt = f"{PROMPT_MARKER}: my key is {PROMPT_KEY} and yours is {vkey}"
        msgs = [{"role": "user", "content": prompt}]
        ok = c.post("/v1/chat/completions", json={"model": "chat", "messages": msgs}, headers=user)
        assert ok.status_code == 200
        # Errors of every kind, each body kept.
        near_miss = vkey[:-4] + "AAAA"
        for r in (
            c.post("/v1/chat/completions", json={"model": "chat", "messages": msgs},
                   headers={"authorization": f"Bearer {near_miss}"}),
            c.post("/v1/chat/completions", json={"model": PROMPT_KEY, "messages": msgs}, headers=user),
            c.post("/v1/chat/completions", json={"model": "chat", "messages": msgs, "temperature": vkey}, headers=user),
            c.post("/v1/chat/completions", content=prompt.encode(), headers={**user, "content-type": "application/json"}),
        ):  # fmt: skip
            assert r.status_code >= 400
            errors.append(r.content)
        sim.set_faults(
            [{"type": "status", "status": 500, "count": 1, "match": {"model": "sim-large"}}]
        )
        failed = c.post(
            "/v1/chat/completions", json={"model": "big", "messages": msgs}, headers=user
        )
        assert failed.status_code == 502
        errors.append(failed.content)
        job = c.post("/v1/jobs", headers=user, json={
            "endpoint": "/v1/chat/completions", "callback_url": receiver.url + "/job",
            "body": {"model": "chat", "messages": msgs},
        })  # fmt: skip
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            receiver.at("/job") and receiver.at("/alerts") and receiver.at("/v1/traces")
        ):
            time.sleep(0.2)
        metrics = c.get("/metrics").text
    time.sleep(1.5)  # the batch span exporter's last flush
    assert receiver.at("/job") and receiver.at("/alerts"), "webhooks were not delivered"
    traces = receiver.at("/v1/traces")
    assert traces, "no OTLP export arrived"
    names = set()
    for d in traces:
        req = ExportTraceServiceRequest.FromString(d.body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                names |= {s.name for s in ss.spans}
    assert {"POST /v1/chat/completions", "auth", "upstream.attempt", "accounting"} <= names

    logs = gw.output()
    request_lines = [orjson.loads(line) for line in logs.splitlines()
                     if line.startswith("{") and '"interlock.access"' in line]  # fmt: skip
    assert request_lines and all("request_id" in r and "outcome" in r for r in request_lines)
    assert any(r.get("trace_id") and r.get("key_id") for r in request_lines)

    secret_part = vkey.rsplit("-", 1)[-1]
    canaries = [PROVIDER_KEY, MASTER, JOB_SECRET, ALERT_SECRET, PROMPT_KEY, vkey, secret_part]
    places: dict[str, bytes] = {
        "logs": logs.encode(),
        "metrics": metrics.encode(),
        **{f"trace{i}": d.body for i, d in enumerate(traces)},
        **{f"error{i}": e for i, e in enumerate(errors)},
        **{f"webhook{d.path}{i}": d.body + orjson.dumps(d.headers)
           for i, d in enumerate(receiver.deliveries) if d.path != "/v1/traces"},
    }  # fmt: skip
    for where, blob in places.items():
        for canary in canaries:
            assert canary.encode() not in blob, f"{canary[:12]}... leaked in {where}"
    # Prompt bodies are not logged by default.
    assert PROMPT_MARKER not in logs


def test_opt_in_body_logging_is_redacted() -> None:
    redact = Redactor([PROVIDER_KEY])
    body = orjson.dumps({"messages": [{"content": f"{PROMPT_KEY} {PROVIDER_KEY} hello"}]})
    out = body_excerpt(body, redact, 2000)
    assert "hello" in out and PROMPT_KEY not in out and PROVIDER_KEY not in out
    assert len(body_excerpt(body * 100, redact, 50)) == 50
