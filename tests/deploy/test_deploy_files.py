"""The deployment files, checked without a container engine or a cluster.

Verified here: the Dockerfile's shape (multi-stage, EXTRAS build arg naming real extras,
non-root, state volume, HEALTHCHECK without a hard-coded port, SIGTERM); the compose file
(services, one secret source, per-container state volumes, env wiring, mounted files
exist, the mounted configuration is a valid Interlock configuration whose hosts are compose
services); the Helm chart rendered with a subset renderer (tests/deploy/helmlite.py, or
`helm template` when a helm binary is on PATH) with its defaults and with the options on,
every core manifest validated against the Kubernetes 1.25, 1.29, 1.33 and 1.37 JSON schemas
(kubernetes-validate, strict), the ScaledObject against KEDA's own CRD schema (vendored,
tests/deploy/schemas), the generated Secret's values accepted by the configuration, the
`fail`s for placeholders and a missing KEDA. The compose stack itself runs, as processes,
in test_compose_stack.py. Not verified: that images build and containers start (no engine
here), Grafana/Prometheus reading the files.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from interlock.check.startup import problems, weak_secret
from interlock.settings import Settings, parse_settings
from interlock.webhooks.signing import load_secret
from tests.deploy.helmlite import TemplateFail, render

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "interlock"
K8S_VERSIONS = ("1.25.0", "1.29.0", "1.33.0", "1.37.0")
ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
KEDA_CRD = Path(__file__).parent / "schemas" / "keda.sh_scaledobjects.yaml"
SHARED_SECRETS = ("INTERLOCK_MASTER_KEY", "INTERLOCK_KEY_HASH_SECRET", "INTERLOCK_WEBHOOK_SECRET")


# --- image -------------------------------------------------------------------------------
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
    assert "--interval" in final["HEALTHCHECK"] and "healthcheck.py" in final["HEALTHCHECK"]
    assert "8080" not in final["HEALTHCHECK"]  # the port comes from the env / the config
    assert "/var/lib/interlock/state" in final["VOLUME"]
    assert final["STOPSIGNAL"] == "SIGTERM"
    assert final["ENTRYPOINT"] == '["interlock"]' and '"serve"' in final["CMD"]
    assert "--port" not in final["CMD"]  # server.port from the configuration


def test_the_image_installs_the_extras_its_build_arg_names() -> None:
    build = dockerfile_stages()[0]
    (arg,) = [a for i, a in build if i == "ARG" and a.startswith("EXTRAS")]
    assert arg == "EXTRAS=all"
    assert any(i == "RUN" and 'pip install ".[${EXTRAS}]"' in a for i, a in build)
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    text = (DEPLOY / "Dockerfile").read_text()
    documented = re.findall(r"^#   ([a-z,]+) {2,}", text, re.MULTILINE)
    assert {"postgres", "all", "all,local"} <= set(documented), documented
    for value in documented:
        assert set(value.split(",")) <= set(extras), value
    # `all` really carries what the issue found missing: Bedrock, Vertex, tracing
    assert {"postgres", "aws", "google", "otel"} <= set(
        re.findall(r"[a-z]+", extras["all"][0].split("[", 1)[1])
    )


# --- compose -----------------------------------------------------------------------------
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def interlock_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose()["services"].items()
        if str(svc.get("image", "")).startswith("interlock:") and name != "sim"
    }


def test_compose_runs_two_gateways_a_worker_and_the_services_they_need() -> None:
    services = compose()["services"]
    assert {"gateway-1", "gateway-2", "worker", "redis", "postgres", "prometheus",
            "grafana", "lb"} <= set(services)  # fmt: skip
    assert services["worker"]["command"][0] == "worker"
    assert services["gateway-1"]["command"][0] == "serve"
    assert "healthcheck" in services["worker"]  # the image's /healthz check does not fit a worker
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
    prom = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus/alerts.yml" in prom
    assert "./grafana/interlock-dashboard.json" in " ".join(services["grafana"]["volumes"])
    nginx = (DEPLOY / "nginx" / "nginx.conf").read_text()
    scrape = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    for gateway in ("gateway-1", "gateway-2"):
        assert f"server {gateway}:8080" in nginx and gateway in scrape


def test_compose_secrets_have_one_source_and_nothing_starts_without_them() -> None:
    services = interlock_services()
    assert {"gateway-1", "gateway-2", "worker"} == set(services)
    envs = [svc["environment"] for svc in services.values()]
    assert all(env == envs[0] for env in envs)  # one anchor: the same values everywhere
    example = (DEPLOY / ".env.example").read_text()
    filled = dict(
        line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#")
    )
    for name in (*SHARED_SECRETS, "POSTGRES_PASSWORD"):
        # required with :? (an empty value refuses to start), and shipped empty
        assert re.fullmatch(r"\$\{" + name + r":\?.+\}", envs[0][name]), envs[0][name]
        assert filled[name] == "", f"{name} ships a value in .env.example"
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


def test_compose_gives_each_interlock_container_its_own_state_volume() -> None:
    services = interlock_services()
    text = (DEPLOY / "interlock.compose.yaml").read_text()
    state_dir = yaml.safe_load(text)["state_dir"]
    volumes = []
    for name, svc in services.items():
        (mount,) = [v for v in svc["volumes"] if v.split(":")[1] == state_dir]
        volumes.append(mount.split(":")[0])
    assert len(set(volumes)) == len(volumes) and set(volumes) <= set(compose()["volumes"])


def test_compose_configuration_is_valid_and_its_variables_and_hosts_are_wired() -> None:
    services = compose()["services"]
    text = (DEPLOY / "interlock.compose.yaml").read_text()
    needed = set(ENV_VAR.findall(text))
    for name in ("gateway-1", "gateway-2", "worker"):
        provided = set(services[name]["environment"])
        assert needed <= provided, needed - provided
    settings = parse_settings(
        yaml.safe_load(text), "interlock.compose.yaml",
        {v: "x" for v in needed} | {"INTERLOCK_WEBHOOK_SECRET": webhook_secret()},
    )  # fmt: skip
    assert settings.state.backend == "redis" and settings.storage.url.startswith(
        "postgresql+asyncpg://"
    )
    assert settings.jobs.webhooks.secret is not None and settings.jobs.run_in_serve is False
    hosts = set(re.findall(r"//(?:[^@/]*@)?([a-z0-9-]+):\d+", text))
    assert hosts <= set(services), hosts - set(services)


def webhook_secret() -> str:
    return "whsec_" + base64.b64encode(b"k" * 32).decode()


# --- Helm --------------------------------------------------------------------------------
def chart_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return values


def rendered_chart(
    values: dict[str, Any] | None = None,
    api_versions: tuple[str, ...] = (),
    lookups: dict[tuple[str, str, str, str], Any] | None = None,
) -> list[dict[str, Any]]:
    values = values if values is not None else chart_values()
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    if shutil.which("helm") and not lookups:
        cmd = ["helm", "template", "test", str(CHART), "-f", "-"]
        for version in api_versions:
            cmd += ["--api-versions", version]
        out = subprocess.run(cmd, input=yaml.safe_dump(values), capture_output=True, text=True)
        if out.returncode != 0:
            raise TemplateFail(out.stderr)
        texts = [out.stdout]
    else:
        meta = {k[0].upper() + k[1:]: v for k, v in chart.items()}
        texts = [render(p.read_text(), values, "test", meta, api_versions=api_versions, lookups=lookups)
                 for p in sorted((CHART / "templates").glob("*.yaml"))]  # fmt: skip
    return [d for t in texts for d in yaml.safe_load_all(t) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    (doc,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    return doc


def secret_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    (secret,) = by_kind(docs, "Secret")
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def validate_core(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_default_chart_installs_without_keda_and_is_valid_kubernetes() -> None:
    docs = rendered_chart()
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "StatefulSet"} <= kinds  # fmt: skip
    assert "ScaledObject" not in kinds  # KEDA is opt-in: no CRD needed by default
    validate_core(docs)


def test_the_default_chart_generates_shared_secrets_the_configuration_accepts() -> None:
    docs = rendered_chart()
    env = secret_env(docs)
    assert len(env["INTERLOCK_MASTER_KEY"]) >= 32 and len(env["INTERLOCK_KEY_HASH_SECRET"]) >= 32
    load_secret(env["INTERLOCK_WEBHOOK_SECRET"])  # a valid Standard Webhooks secret
    cm = by_kind(docs, "ConfigMap")[0]
    text = cm["data"]["interlock.yaml"]
    needed = set(ENV_VAR.findall(text))
    assert needed <= set(env), needed - set(env)
    settings = parse_settings(yaml.safe_load(text), "chart", env)
    assert isinstance(settings, Settings) and settings.jobs.run_in_serve is False
    assert settings.jobs.webhooks.secret is not None
    assert settings.jobs.webhooks.secret.get_secret_value() == env["INTERLOCK_WEBHOOK_SECRET"]
    # the gateway's own startup checks (cluster mode) accept what the chart generated
    assert [p.line() for p in problems(settings) if p.severity == "fail"] == []
    for name in (*SHARED_SECRETS[:2], "POSTGRES_PASSWORD"):
        assert weak_secret(env[name]) is None, name
    # the URLs point at the chart's own services
    services = {d["metadata"]["name"] for d in by_kind(docs, "Service")}
    for url in (settings.storage.url, settings.state.redis_url):
        host = re.search(r"@?([a-z0-9-]+):\d+/", url)
        assert host is not None and host.group(1) in services, url
    # every pod that reads the secrets reads the same Secret
    (secret,) = by_kind(docs, "Secret")
    for deployment in (named(docs, "Deployment", "gateway"), named(docs, "Deployment", "worker")):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"][0]["secretRef"]["name"] == secret["metadata"]["name"]


def test_generated_secrets_are_fresh_per_install_and_kept_on_upgrade() -> None:
    first, second = secret_env(rendered_chart()), secret_env(rendered_chart())
    for name in (*SHARED_SECRETS, "POSTGRES_PASSWORD"):
        assert first[name] != second[name], name
    (installed,) = by_kind(rendered_chart(), "Secret")
    lookups = {("v1", "Secret", "default", "test-interlock-secret"): installed}
    upgraded = secret_env(rendered_chart(lookups=lookups))
    original = {k: base64.b64decode(v).decode() for k, v in installed["data"].items()}
    for name in (*SHARED_SECRETS, "POSTGRES_PASSWORD", "INTERLOCK_DATABASE_URL"):
        assert upgraded[name] == original[name], name


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("INTERLOCK_MASTER_KEY", "change-me"),
        ("INTERLOCK_KEY_HASH_SECRET", "change-me-too"),
        ("INTERLOCK_MASTER_KEY", "CHANGEME-please-0123456789"),
        ("INTERLOCK_KEY_HASH_SECRET", "short"),
        ("INTERLOCK_KEY_HASH_SECRET", "abababababababababab"),
        ("INTERLOCK_WEBHOOK_SECRET", "change-me"),
        ("POSTGRES_PASSWORD", "change-me"),
    ],
)
def test_the_chart_refuses_placeholder_secrets(key: str, value: str) -> None:
    assert weak_secret(value) is not None  # the gateway refuses it too
    values = chart_values()
    values["secret"]["data"][key] = value
    with pytest.raises(TemplateFail, match=key):
        rendered_chart(values)


def test_the_chart_keeps_real_secrets_it_is_given() -> None:
    values = chart_values()
    values["secret"]["data"].update(
        INTERLOCK_MASTER_KEY="a" * 8 + "Zq81LmRt40vW", INTERLOCK_WEBHOOK_SECRET=webhook_secret()
    )
    env = secret_env(rendered_chart(values))
    assert env["INTERLOCK_MASTER_KEY"] == "a" * 8 + "Zq81LmRt40vW"
    assert env["INTERLOCK_WEBHOOK_SECRET"] == webhook_secret()


def test_an_existing_secret_replaces_the_generated_one() -> None:
    docs = rendered_chart(chart_values(secret__existingSecret="prod-interlock"))
    assert by_kind(docs, "Secret") == []
    for deployment in (named(docs, "Deployment", "gateway"), named(docs, "Deployment", "worker")):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["envFrom"][0]["secretRef"]["name"] == "prod-interlock"
    pg = named(docs, "StatefulSet", "postgresql")["spec"]["template"]["spec"]["containers"][0]
    (pw,) = [e for e in pg["env"] if e["name"] == "POSTGRES_PASSWORD"]
    assert pw["valueFrom"]["secretKeyRef"]["name"] == "prod-interlock"


def test_external_databases_replace_the_bundled_ones() -> None:
    with pytest.raises(TemplateFail, match=r"postgresql\.externalUrl"):
        rendered_chart(chart_values(postgresql__enabled=False))
    with pytest.raises(TemplateFail, match=r"redis\.externalUrl"):
        rendered_chart(chart_values(redis__enabled=False))
    pg_url = "postgresql+asyncpg://interlock:pw@db.example.internal:5432/interlock"
    docs = rendered_chart(chart_values(
        postgresql__enabled=False, postgresql__externalUrl=pg_url,
        redis__enabled=False, redis__externalUrl="rediss://cache.example.internal:6380/0",
    ))  # fmt: skip
    assert by_kind(docs, "StatefulSet") == []
    assert {d["metadata"]["name"] for d in by_kind(docs, "Deployment")} == {
        "test-interlock-gateway", "test-interlock-worker"}  # fmt: skip
    env = secret_env(docs)
    assert env["INTERLOCK_DATABASE_URL"] == pg_url
    assert env["INTERLOCK_REDIS_URL"] == "rediss://cache.example.internal:6380/0"
    validate_core(docs)


def test_gateway_probes_drain_and_autoscaling() -> None:
    docs = rendered_chart()
    gateway, worker = named(docs, "Deployment", "gateway"), named(docs, "Deployment", "worker")
    pod = gateway["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for path in ("/readyz", "/healthz"):
        assert f'"{path}"' in (ROOT / "src/interlock/api/router.py").read_text()
    # exec preStop (every supported version), not the 1.30+ `sleep` action
    pre_stop = container["lifecycle"]["preStop"]
    assert set(pre_stop) == {"exec"} and pre_stop["exec"]["command"][0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] >= 30 + int(pre_stop["exec"]["command"][1])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"emptyDir": {}, "name": "state"} in pod["volumes"]
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == gateway["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in gateway["spec"]  # the HPA owns it
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        selected = [d for d in (gateway, worker)
                    if pdb["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()]  # fmt: skip
        assert len(selected) == 1, pdb["metadata"]["name"]
    no_hpa = rendered_chart(chart_values(gateway__autoscaling={"enabled": False}))
    assert by_kind(no_hpa, "HorizontalPodAutoscaler") == []
    assert named(no_hpa, "Deployment", "gateway")["spec"]["replicas"] == 2


def test_keda_on_a_cluster_without_its_crd_fails_with_a_clear_message() -> None:
    with pytest.raises(TemplateFail, match=r"keda\.sh/v1alpha1"):
        rendered_chart(chart_values(keda__enabled=True))


def keda_schema() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(KEDA_CRD.read_text()) if d]
    (crd,) = docs
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_workers_scale_on_the_real_queue_depth_metric_with_a_valid_scaled_object() -> None:
    docs = rendered_chart(chart_values(keda__enabled=True), api_versions=("keda.sh/v1alpha1",))
    (scaled,) = by_kind(docs, "ScaledObject")
    jsonschema.validate(scaled, keda_schema())
    worker = named(docs, "Deployment", "worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert "replicas" not in worker["spec"]  # KEDA owns it
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    metric = re.search(r"interlock_[a-z_]+", trigger["metadata"]["query"])
    assert metric is not None
    assert f'"{metric.group(0)}"' in (ROOT / "src/interlock/telemetry/metrics.py").read_text()
    assert float(trigger["metadata"]["threshold"]) > 0
    validate_core(docs)


def test_the_keda_schema_refuses_a_broken_scaled_object() -> None:
    """The vendored schema does check: a trigger without its type is refused."""
    docs = rendered_chart(chart_values(keda__enabled=True), api_versions=("keda.sh/v1alpha1",))
    (scaled,) = by_kind(docs, "ScaledObject")
    del scaled["spec"]["triggers"][0]["type"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, keda_schema())


def test_the_notes_tell_where_the_image_and_the_admin_key_are() -> None:
    values = chart_values()
    notes = render((CHART / "templates" / "NOTES.txt").read_text(), values, "test",
                   {"AppVersion": "0.1.0"})  # fmt: skip
    assert "interlock:0.1.0" in notes and "image.repository" in notes
    assert "test-interlock-secret" in notes and "INTERLOCK_MASTER_KEY" in notes


def test_the_renderer_refuses_what_it_does_not_understand() -> None:
    with pytest.raises(ValueError):
        render('{{ include "x" . }}', {})
    with pytest.raises(ValueError):
        render("{{ range .Values.x }}{{ end }}", {})
    assert render("a:{{- if .Values.on }} yes{{- end }}", {"on": True}) == "a: yes"
    assert render("{{ if .Values.on }}1{{ else }}2{{ end }}", {"on": False}) == "2"
    with pytest.raises(TemplateFail, match="boom"):
        render('{{ if .Values.on }}{{ fail "boom" }}{{ end }}', {"on": True})
    assert render('{{ if .Values.on }}{{ fail "boom" }}{{ end }}', {"on": False}) == ""
