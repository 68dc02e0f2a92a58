"""Every CLI command finds the gateway and its state the same way (issue 14, item 3).

A gateway listens on a non-default port taken from its configuration file alone; every
remote command, run from another directory with ``--config`` and nothing else (no
``--url``, no key, no INTERLOCK_* variable), reaches it. Database commands refuse to
create a new, empty state where none exists unless ``--init`` is given.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from interlock.cli.remote import find_gateway, url_for_listen
from tests.support.gateway import free_port

MASTER = "mk-" + secrets.token_hex(16)


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    base.update(env or {})
    return subprocess.run([sys.executable, "-m", "interlock.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=base)  # fmt: skip


def _admin(url: str, method: str, path: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("authorization", f"Bearer {MASTER}")
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A gateway whose port (not 8080) and listen address (0.0.0.0) come from its file."""
    home = tmp_path_factory.mktemp("gw")
    port = free_port()
    state = home / "state"
    cfg = {
        "server": {"host": "0.0.0.0", "port": port},
        "auth": {"master_key": MASTER},
        "state_dir": str(state),
        "storage": {"url": f"sqlite+aiosqlite:///{state}/interlock.db"},
        "providers": {
            "sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1", "api_key": "k"}
        },
        "deployments": {"sim-small": {"provider": "sim", "model": "sim-small"}},
        "models": {"chat": {"deployments": ["sim-small"]}},
    }
    path = home / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    log = open(home / "gateway.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "interlock.cli.main", "serve", "--config",
                             str(path)], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError((home / "gateway.log").read_text(errors="replace"))
        time.sleep(0.1)
    key = _admin(url, "POST", "/admin/keys", {"name": "search-bot", "models": ["chat"]})
    req = urllib.request.Request(url + "/v1/chat/completions", method="POST", data=json.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    ).encode(), headers={"authorization": f"Bearer {key['key']}",
                         "content-type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    _admin(url, "POST", "/admin/budgets",
           {"scope": "key", "subject": key["id"], "window": "daily", "limit_usd": 5})  # fmt: skip
    try:
        yield {"url": url, "config": str(path), "key_id": key["id"], "home": home}
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.parametrize(
    "args",
    [
        ("budgets",),
        ("budgets", "--json"),
        ("deployments",),
        ("degradation", "show"),
        ("alerts",),
        ("alerts", "list"),
        ("alerts", "list", "--json"),
    ],
)
def test_remote_command_with_config_alone(
    gateway: dict[str, Any], tmp_path: Path, args: tuple[str, ...]
) -> None:
    r = run(*args, "--config", gateway["config"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    # Run elsewhere, nothing was created where it ran.
    assert not (tmp_path / ".interlock").exists()


def test_outputs_name_keys(gateway: dict[str, Any], tmp_path: Path) -> None:
    table = run("budgets", "--config", gateway["config"], cwd=tmp_path).stdout
    assert f"key:{gateway['key_id']} (search-bot)" in table
    rows = json.loads(run("budgets", "--json", "-c", gateway["config"], cwd=tmp_path).stdout)
    (row,) = [r for r in rows if r["scope"] == "key"]
    assert row["subject"] == gateway["key_id"] and row["key_name"] == "search-bot"
    # The database commands read the gateway's own state through the same file.
    listed = run("keys", "list", "--config", gateway["config"], cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    header, _rule, *lines = listed.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "USER", "TEAM", "ADMIN", "STATE", "MODELS", "TAGS"]
    (line,) = [ln for ln in lines if gateway["key_id"] in ln]
    assert line.split()[1] == "search-bot" and line.split()[6] == "chat"
    assert "interlock: database sqlite+aiosqlite:///" in listed.stderr
    assert gateway["config"] in listed.stderr and "(--config)" in listed.stderr
    as_json = run("keys", "list", "--config", gateway["config"], "--json", cwd=tmp_path)
    assert json.loads(as_json.stdout)[0]["name"] == "search-bot"  # stdout is only the JSON


def test_report_names_keys(gateway: dict[str, Any], tmp_path: Path) -> None:
    """report spend/top --by key: the key's name next to its id (the ledger row of the
    fixture's request may take a moment to be written)."""
    deadline = time.monotonic() + 20
    while True:
        r = run("report", "spend", "--by", "key", "--since", "1d", "--format", "json",
                "--config", gateway["config"], cwd=tmp_path)  # fmt: skip
        assert r.returncode == 0, r.stderr
        rows = json.loads(r.stdout)
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [(x["group"], x["key_name"]) for x in rows] == [(gateway["key_id"], "search-bot")]
    table = run("report", "top", "--by", "key", "--since", "1d", "-c", gateway["config"],
                cwd=tmp_path).stdout  # fmt: skip
    assert "NAME" in table.splitlines()[0] and "search-bot" in table


def test_config_from_environment(gateway: dict[str, Any], tmp_path: Path) -> None:
    r = run("deployments", cwd=tmp_path, env={"INTERLOCK_CONFIG": gateway["config"]})
    assert r.returncode == 0, r.stderr
    assert "sim-small" in r.stdout


def test_url_overrides_and_errors_name_their_source(
    gateway: dict[str, Any], tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    r = run("budgets", "--config", gateway["config"], cwd=tmp_path, env={"INTERLOCK_URL": dead})
    assert r.returncode == 1
    assert dead in r.stderr and "$INTERLOCK_URL" in r.stderr
    # --url beats $INTERLOCK_URL; the key still comes from the configuration.
    r = run("budgets", "--config", gateway["config"], "--url", gateway["url"] + "/v1",
            cwd=tmp_path, env={"INTERLOCK_URL": dead})  # fmt: skip
    assert r.returncode == 0, r.stderr
    # A wrong key says where the key came from.
    r = run("deployments", "--config", gateway["config"], cwd=tmp_path,
            env={"INTERLOCK_ADMIN_KEY": "sk-wrong"})  # fmt: skip
    assert r.returncode == 1 and "HTTP 401" in r.stderr and "$INTERLOCK_ADMIN_KEY" in r.stderr
    # No configuration here: the embedded default's server section (port 8080) is tried,
    # and the message says so.
    port_8080_free = True
    try:
        urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=1)
        port_8080_free = False
    except OSError:
        pass
    if port_8080_free:
        r = run("deployments", "--key", "x", cwd=tmp_path)
        assert r.returncode == 1
        assert "http://127.0.0.1:8080" in r.stderr and "embedded default" in r.stderr


def test_database_commands_refuse_a_new_state_without_init(tmp_path: Path) -> None:
    for args in (("keys", "list"), ("keys", "create", "--name", "x"), ("report", "spend"),
                 ("report", "capacity"), ("estimate", "ledger")):  # fmt: skip
        r = run(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert str(tmp_path / ".interlock") in r.stderr and "--init" in r.stderr
        assert "embedded default" in r.stderr
        assert r.stdout == ""
        assert not (tmp_path / ".interlock").exists(), args
    # A configuration whose database is missing: the message names the file and the path.
    cfg = tmp_path / "wrong.yaml"
    cfg.write_text(yaml.safe_dump({"storage": {"url": f"sqlite+aiosqlite:///{tmp_path}/x/db"}}))
    r = run("report", "spend", "--config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2 and f"{tmp_path}/x/db" in r.stderr and str(cfg) in r.stderr
    # With --init: created, and said so.
    r = run("keys", "create", "--init", "--name", "first", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["name"] == "first"
    assert (tmp_path / ".interlock" / "interlock.db").exists()
    assert (tmp_path / ".interlock" / "key_hash_secret").exists()
    r = run("keys", "list", cwd=tmp_path)
    assert r.returncode == 0 and "first" in r.stdout


def test_key_hash_secret_missing_is_refused(tmp_path: Path) -> None:
    """A database without the state directory's key-hash secret: a new secret would make
    keys the gateway cannot check."""
    state = tmp_path / "state"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"state_dir": str(state),
                                   "storage": {"url": f"sqlite+aiosqlite:///{tmp_path}/db"}}))  # fmt: skip
    assert run("report", "spend", "--init", "-c", str(cfg), cwd=tmp_path).returncode == 0
    r = run("keys", "create", "-c", str(cfg), cwd=tmp_path)
    assert r.returncode == 2 and str(state / "key_hash_secret") in r.stderr
    assert not (state / "key_hash_secret").exists()


def test_url_for_listen() -> None:
    assert url_for_listen("0.0.0.0", 9001) == "http://127.0.0.1:9001"
    assert url_for_listen("::", 9001) == "http://[::1]:9001"
    assert url_for_listen("10.0.0.5", 80) == "http://10.0.0.5:80"
    assert url_for_listen("fd00::1", 80) == "http://[fd00::1]:80"


def test_find_gateway_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"server": {"host": "0.0.0.0", "port": 9123},
                                   "auth": {"master_key": "from-file-0123456789"}}))  # fmt: skip
    t = find_gateway(str(cfg), env={})
    assert (t.url, t.key) == ("http://127.0.0.1:9123", "from-file-0123456789")
    assert str(cfg) in t.url_from and "auth.master_key" in (t.key_from or "")
    t = find_gateway(str(cfg), env={"INTERLOCK_URL": "http://gw:1/v1/",
                                    "INTERLOCK_MASTER_KEY": "env-master"})  # fmt: skip
    assert (t.url, t.url_from, t.key) == ("http://gw:1", "$INTERLOCK_URL", "env-master")
    t = find_gateway(str(cfg), url="http://x:2", key="k", env={"INTERLOCK_ADMIN_KEY": "a"})
    assert (t.url, t.url_from, t.key, t.key_from) == ("http://x:2", "--url", "k", "--key")
    t = find_gateway(str(cfg), env={"INTERLOCK_ADMIN_KEY": "a", "INTERLOCK_MASTER_KEY": "m"})
    assert (t.key, t.key_from) == ("a", "$INTERLOCK_ADMIN_KEY")
    # An unreadable configuration is an error only when it was needed for the URL.
    missing = str(tmp_path / "missing.yaml")
    assert find_gateway(missing, url="http://x:3", env={}).url == "http://x:3"
    with pytest.raises(click.ClickException, match=r"missing\.yaml"):
        find_gateway(missing, env={})
