"""The deployment files, checked without a container engine or a cluster.

Verified here: the Dockerfile's shape (multi-stage, non-root, HEALTHCHECK, SIGTERM);
the compose file (services, replicas, env wiring, mounted files exist, the mounted
configuration is a valid Interlock configuration whose hosts are compose services);
the Helm chart rendered with a subset renderer (tests/deploy/helmlite.py, or `helm
template` when a helm binary is on PATH) and every core manifest validated against the
Kubernetes 1.33 JSON schemas (kubernetes-validate, strict); probes, graceful drain,
HPA, KEDA trigger and PDB selectors. Not verified: that images build and containers
start (no engine here), the KEDA CRD's own schema, Grafana/Prometheus reading the files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from interlock.settings import Settings, parse_settings
from tests.deploy.helmlite import render

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "interlock"
K8S_VERSION = "1.33.0"
ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """[(INSTRUCTION, arguments)] per stage, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    stages: list[list[tuple[str, str]]] = []
    for line in logical.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        if instr.upper() == "FROM":
            stages.append([])
        stages[-1].append((instr.upper(), args.strip()))
    return stages


def test_the_image_is_multi_stage_non_root_and_health_checked() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = dict(stages[-1])
    assert "--from=build" in " ".join(a for i, a in stages[-1] if i == "COPY")
    user = final["USER"].split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000
    assert "/healthz" in final["HEALTHCHECK"] and "--interval" in final["HEALTHCHECK"]
    assert final["STOPSIGNAL"] == "SIGTERM"
    assert final["ENTRYPOINT"] == '["interlock"]' and '"serve"' in final["CMD"]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def test_compose_runs_two_gateways_a_worker_and_the_services_they_need() -> None:
    services = compose()["services"]
    assert {"gateway", "worker", "redis", "postgres", "prometheus", "grafana"} <= set(services)
    assert services["gateway"]["deploy"]["replicas"] == 2
    assert services["worker"]["command"][0] == "worker"
    assert "healthcheck" in services["worker"]  # the image's /healthz check does not fit a worker
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
    prom = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus/alerts.yml" in prom
    assert "./grafana/interlock-dashboard.json" in " ".join(services["grafana"]["volumes"])


def test_compose_configuration_is_valid_and_its_variables_and_hosts_are_wired() -> None:
    services = compose()["services"]
    text = (DEPLOY / "interlock.compose.yaml").read_text()
    needed = set(ENV_VAR.findall(text))
    provided = set(services["gateway"]["environment"])
    assert needed <= provided, needed - provided
    settings = parse_settings(
        yaml.safe_load(text), "interlock.compose.yaml", {v: "x" for v in needed}
    )
    assert settings.state.backend == "redis" and settings.storage.url.startswith(
        "postgresql+asyncpg://"
    )
    hosts = set(re.findall(r"//(?:[^@/]*@)?([a-z0-9-]+):\d+", text))
    assert hosts <= set(services), hosts - set(services)


def rendered_chart() -> list[dict[str, Any]]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    if shutil.which("helm"):
        out = subprocess.run(["helm", "template", "test", str(CHART)], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
        texts = [out]
    else:
        texts = [render(p.read_text(), values, "test", {k[0].upper() + k[1:]: v for k, v in chart.items()})
                 for p in sorted((CHART / "templates").glob("*.yaml"))]  # fmt: skip
    docs = [d for t in texts for d in yaml.safe_load_all(t) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_every_core_manifest_is_valid_kubernetes() -> None:
    docs = rendered_chart()
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "ScaledObject"} <= kinds  # fmt: skip
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: no schema in the core set
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_gateway_probes_drain_and_autoscaling() -> None:
    docs = rendered_chart()
    gateway, worker = sorted(by_kind(docs, "Deployment"), key=lambda d: d["metadata"]["name"])
    assert gateway["metadata"]["name"].endswith("gateway") and worker["metadata"]["name"].endswith(
        "worker"
    )
    pod = gateway["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert (
        pod["terminationGracePeriodSeconds"] >= 30
        and pod["securityContext"]["runAsNonRoot"] is True
    )
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        selected = [d for d in (gateway, worker)
                    if pdb["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]  # fmt: skip
        assert len(selected) == 1, pdb["metadata"]["name"]


def test_workers_scale_on_the_real_queue_depth_metric() -> None:
    docs = rendered_chart()
    (scaled,) = by_kind(docs, "ScaledObject")
    worker = next(
        d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("worker")
    )
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    metric = re.search(r"interlock_[a-z_]+", trigger["metadata"]["query"])
    assert metric is not None
    assert f'"{metric.group(0)}"' in (ROOT / "src/interlock/telemetry/metrics.py").read_text()
    assert float(trigger["metadata"]["threshold"]) > 0


def test_the_chart_configuration_is_a_valid_interlock_configuration() -> None:
    docs = rendered_chart()
    (cm,) = by_kind(docs, "ConfigMap")
    text = cm["data"]["interlock.yaml"]
    (secret,) = by_kind(docs, "Secret")
    needed = set(ENV_VAR.findall(text))
    assert needed <= set(secret["stringData"]), needed - set(secret["stringData"])
    settings = parse_settings(yaml.safe_load(text), "chart", {v: "x" for v in needed})
    assert isinstance(settings, Settings) and settings.jobs.run_in_serve is False
    deployment = by_kind(docs, "Deployment")[0]
    env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["secretRef"][
        "name"
    ]
    assert env_from == secret["metadata"]["name"]


def test_the_renderer_refuses_what_it_does_not_understand() -> None:
    with pytest.raises(ValueError):
        render('{{ include "x" . }}', {})
    assert render("a:{{- if .Values.on }} yes{{- end }}", {"on": True}) == "a: yes"
