"""The `interlock` command line: config check, keys, and refusing a bad config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.gateway import free_port


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    return subprocess.run([sys.executable, "-m", "interlock.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)  # fmt: skip


def _config(tmp_path: Path, **extra: object) -> Path:
    cfg = {
        "state_dir": str(tmp_path / "state"),
        "storage": {"url": f"sqlite+aiosqlite:///{tmp_path}/state/db.sqlite"},
        "providers": {"p": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}},
        "deployments": {"d": {"provider": "p", "model": "m"}},
        **extra,
    }
    path = tmp_path / "interlock.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_config_check(tmp_path: Path) -> None:
    path = _config(tmp_path)
    r = run("config", "check", "--config", str(path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "m -> d" in r.stdout


def test_bad_config_refuses_to_start(tmp_path: Path) -> None:
    path = _config(tmp_path, deployments={"d": {"provider": "ghost", "model": "m"}})
    r = run("serve", "--config", str(path), "--port", str(free_port()), cwd=tmp_path, timeout=30)
    assert r.returncode != 0
    assert str(path) in r.stderr and "deployments.d.provider" in r.stderr
    r = run("config", "check", "--config", str(tmp_path / "missing.yaml"), cwd=tmp_path)
    assert r.returncode != 0 and "cannot read" in r.stderr


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    path = str(_config(tmp_path))
    r = run("keys", "create", "--config", path, "--init", "--user", "u1", "--team", "t1", "--tag", "search",
            "--tag", "chat", "--model", "m", "--json", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["key"].startswith("sk-il-") and created["tags"] == ["search", "chat"]
    listed = run("keys", "list", "--config", path, "--json", cwd=tmp_path)
    assert created["id"] in listed.stdout and created["key"] not in listed.stdout
    table = run("keys", "list", "--config", path, cwd=tmp_path)
    assert created["id"] in table.stdout and "u1" in table.stdout
    assert run("keys", "revoke", "--config", path, created["id"], cwd=tmp_path).returncode == 0
    assert created["id"] not in run("keys", "list", "--config", path, "--json", cwd=tmp_path).stdout
    assert created["id"] in run("keys", "list", "--config", path, "--all", cwd=tmp_path).stdout
    r = run("keys", "revoke", "--config", path, "nope", cwd=tmp_path)
    assert r.returncode != 0 and "no key" in r.stderr
