"""Start real gateway processes (`interlock serve`) for tests, over real HTTP."""

from __future__ import annotations

import base64
import copy
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

MASTER_KEY = "test-master-key-4f9d2c7a1b"
# The shared secrets of a cluster, as one Secret gives them to every replica and worker of
# a deployment: `serve` and `worker` refuse a cluster configuration (Redis state, PostgreSQL
# storage) without them (src/interlock/check/startup.py). Random per test session, the same
# for every process a session starts; a configuration's own values are never replaced.
CLUSTER_KEY_HASH_SECRET = "test-pepper-" + secrets.token_urlsafe(24)
CLUSTER_WEBHOOK_SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
SIM_KEY = "sim-provider-secret-9a8b7c6d5e"
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sim_config(sim_url: str, state_dir: Path, **overrides: Any) -> dict[str, Any]:
    """A configuration that puts every wire format in front of the simulated provider."""
    cfg: dict[str, Any] = {
        "state_dir": str(state_dir),
        "storage": {"url": f"sqlite+aiosqlite:///{state_dir}/interlock.db"},
        "auth": {"master_key": MASTER_KEY, "cache_ttl_s": 0.5},
        "providers": {
            "sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1", "api_key": SIM_KEY},
            "sim-azure": {
                "kind": "azure",
                "base_url": sim_url,
                "api_key": SIM_KEY,
                "api_version": "2024-10-21",
            },
            "sim-anthropic": {"kind": "anthropic", "base_url": sim_url, "api_key": SIM_KEY},
            "sim-gemini": {"kind": "gemini", "base_url": sim_url, "api_key": SIM_KEY},
            "sim-bedrock": {
                "kind": "bedrock",
                "base_url": sim_url,
                "region": "us-east-1",
                "aws_access_key_id": AWS_KEY_ID,
                "aws_secret_access_key": AWS_SECRET,
            },
            "dead": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"},
        },
        "deployments": {
            "sim-small": {"provider": "sim", "model": "sim-small"},
            "sim-medium": {"provider": "sim", "model": "sim-medium"},
            "sim-large": {"provider": "sim", "model": "sim-large"},
            "sim-embed": {"provider": "sim", "model": "sim-embed", "kind": "embeddings"},
            "azure-chat": {"provider": "sim-azure", "model": "my-gpt-deployment"},
            "claude": {"provider": "sim-anthropic", "model": "sim-claude"},
            "gemini": {"provider": "sim-gemini", "model": "sim-gemini"},
            "bedrock": {
                "provider": "sim-bedrock",
                "model": "anthropic.claude-3-haiku-20240307-v1:0",
            },
            "dead-chat": {
                "provider": "dead",
                "model": "sim-small",
                "timeouts": {"connect_s": 1, "first_byte_s": 2},
            },
            "slow-chat": {
                "provider": "sim",
                "model": "sim-slow",
                "timeouts": {"first_byte_s": 1, "idle_s": 1, "total_s": 3},
            },
        },
        # The shared test gateway sees injected faults all the time: keep the automatic
        # degradation ladder out of it (tests of the ladder start their own gateway).
        "resilience": {"degradation": {"signals": {}}},
        # Test deployments such as sim-slow have no list price: charge a stated one.
        "spend": {
            "unknown_price": {"action": "allow", "input_per_mtok": 1.0, "output_per_mtok": 2.0}
        },
        "models": {
            "chat": {"deployments": ["sim-small"]},
            "failover": {"deployments": ["dead-chat", "sim-medium"]},
            "azure": {"deployments": ["azure-chat"]},
            "claude": {"deployments": ["claude"]},
            "gemini": {"deployments": ["gemini"]},
            "bedrock": {"deployments": ["bedrock"]},
            "slow": {"deployments": ["slow-chat"]},
        },
    }
    cfg.update(overrides)
    return cfg


def with_cluster_secrets(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with :data:`CLUSTER_KEY_HASH_SECRET` / :data:`CLUSTER_WEBHOOK_SECRET`
    filled in where it is a cluster configuration that sets none (a copy; a configuration
    that does not parse, or is not a cluster, is returned as it is)."""
    from interlock.check.startup import cluster_reasons
    from interlock.settings import ConfigError, parse_settings

    try:
        if not cluster_reasons(parse_settings(config, "<test>", dict(os.environ))):
            return config
    except ConfigError:
        return config
    out = copy.deepcopy(config)
    auth = out["auth"] = dict(out.get("auth") or {})
    auth.setdefault("key_hash_secret", CLUSTER_KEY_HASH_SECRET)
    jobs = out["jobs"] = dict(out.get("jobs") or {})
    hooks = jobs["webhooks"] = dict(jobs.get("webhooks") or {})
    hooks.setdefault("secret", CLUSTER_WEBHOOK_SECRET)
    return out


class GatewayProcess:
    def __init__(self, config: dict[str, Any] | None, workdir: Path, *, workers: int = 1,
                 env: dict[str, str] | None = None) -> None:  # fmt: skip
        self.config = config
        self.workdir = workdir
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"gateway-{self.port}.log"

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        self.start_unready()
        try:
            return self.wait_ready(timeout)
        except TimeoutError:
            self.stop()
            raise

    def wait_ready(self, timeout: float = 30.0) -> GatewayProcess:
        """Wait until /readyz answers 200; RuntimeError (with the log) if the process exits
        first, TimeoutError (with the log) if it is not ready within ``timeout``."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"gateway did not become ready:\n{self.output()}")

    def start_unready(self) -> GatewayProcess:
        """Start the process without waiting for it to be ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
        env.update(self.env)
        cmd = [sys.executable, "-m", "interlock.cli.main", "serve",
               "--port", str(self.port), "--workers", str(self.workers)]  # fmt: skip
        if self.config is not None:
            path = self.workdir / f"interlock-{self.port}.yaml"
            path.write_text(yaml.safe_dump(with_cluster_secrets(self.config)))
            cmd += ["--config", str(path)]
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=self.workdir)  # fmt: skip
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None) is not None:
            self._log.close()
