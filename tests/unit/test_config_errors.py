"""No configuration error echoes a value: a canary secret planted in every position a
YAML syntax error, a validation error or an interpolation error can point at never
appears in the message, which still says where (line and column, or the field path).

Checked through ``load_settings`` (what every command uses) and through the real CLI
(`interlock config check`, `interlock serve`) as a subprocess, whose stderr is what an
operator's terminal and log collector see.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from interlock.settings import ConfigError, load_settings

CANARY = "sk-canary-config-5f2e9d1c0b7a"

# (YAML text with the canary on the offending line, where the error must point)
YAML_ERRORS = [
    ('providers:\n  openai:\n    kind: openai\n    api_key: "' + CANARY + "\n", "line 5, column 1"),
    ("auth:\n  master_key: " + CANARY + ": extra\n", "line 2, column"),
    ("auth:\n  master_key: [" + CANARY + ",\n", "line 3, column 1"),
    ("auth:\n\tmaster_key: " + CANARY + "\n", "line 2, column 1"),
    ("auth:\n  master_key: *" + CANARY + "\n", "line 2, column 15"),
    ("auth:\n  master_key: !" + CANARY + " x\n", "line 2, column 15"),
    ('auth:\n  master_key: "\\q' + CANARY + '"\n', "line 2, column"),
    ("auth:\n  master_key: {a: " + CANARY + "\n", "line 3, column 1"),
    ("auth: x\n  master_key: " + CANARY + "\n", "line 2, column"),
]

PROVIDERS = "providers:\n  p: {kind: openai, api_key: real-key}\n"
# Values of the wrong type or shape, each holding the canary, in many kinds of field.
# fmt: off
VALIDATION_ERRORS = [
    ("server:\n  port: " + CANARY + "\n", "server.port"),
    ("server:\n  host: [" + CANARY + "]\n", "server.host"),
    ("auth:\n  master_key: [" + CANARY + "]\n", "auth.master_key"),
    ("auth:\n  key_hash_secret: {x: " + CANARY + "}\n", "auth.key_hash_secret"),
    ("auth:\n  cache_ttl_s: " + CANARY + "\n", "auth.cache_ttl_s"),
    ("providers:\n  p: {kind: " + CANARY + "}\n", "providers.p.kind"),
    ("providers:\n  p: {kind: openai, api_key: {k: " + CANARY + "}}\n", "providers.p.api_key"),
    ("storage:\n  db_schema: " + CANARY + "\n", "storage.db_schema"),
    ("telemetry:\n  metrics_token: [" + CANARY + "]\n", "telemetry.metrics_token"),
    ("state:\n  backend: " + CANARY + "\n", "state.backend"),
    ("alerts:\n  rules: [{metric: error_rate, warning: 1, critical: 2, name: '" + CANARY
     + "!'}]\n", "alerts.rules.0.name"),
    ("spend:\n  budgets: [{scope: key, subject: k, limit_usd: 1, time_zone: " + CANARY
     + "}]\n", "spend.budgets.0"),
    (PROVIDERS + "deployments:\n  d: {provider: " + CANARY + ", model: m}\n",
     "deployments.d.provider"),
    (PROVIDERS + "deployments:\n  d: {provider: p, model: m}\n"
     "models:\n  a: {deployments: [" + CANARY + "]}\n", "models.a.deployments"),
    (PROVIDERS + "deployments:\n  d: {provider: p, model: m}\nmodels:\n  a: {deployments: [d], "
     "limited_deployments: [" + CANARY + "]}\n", "models.a.limited_deployments"),
    (PROVIDERS + "deployments:\n  d: {provider: p, model: m}\nmodels:\n  a: {deployments: [d], "
     "fallbacks: [{models: [" + CANARY + "]}]}\n", "models.a.fallbacks[0].models[0]"),
    (PROVIDERS + "deployments:\n  d: {provider: p, model: m}\nmodels:\n  a: {deployments: [d]}\n"
     "  t: {tiers: {small: " + CANARY + "}}\n", "models.t.tiers.small"),
    (PROVIDERS + "deployments:\n  d: {provider: p, model: m}\nmodels:\n  a: {deployments: [d]}\n"
     "  t: {tiers: {small: a, specialized: {x: {model: a, description: d, patterns: ['"
     + CANARY + "((']}}}}\n", "patterns"),
]
# fmt: on


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    path = tmp_path / "interlock.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, env or {})
    return str(err.value)


@pytest.mark.parametrize(("text", "where"), YAML_ERRORS)
def test_a_yaml_syntax_error_points_at_the_line_without_echoing_it(
    tmp_path: Path, text: str, where: str
) -> None:
    message = _load(tmp_path, text)
    assert CANARY not in message and CANARY[:12] not in message
    assert "not valid YAML" in message and where in message, message


@pytest.mark.parametrize(("text", "where"), VALIDATION_ERRORS)
def test_a_validation_error_names_the_field_without_its_value(
    tmp_path: Path, text: str, where: str
) -> None:
    message = _load(tmp_path, text)
    assert CANARY not in message and CANARY[:12] not in message
    assert where in message, message


def test_interpolated_values_are_not_echoed_either(tmp_path: Path) -> None:
    # From the environment, into a field that rejects it.
    message = _load(tmp_path, "server:\n  port: ${PORT}\n", {"PORT": CANARY})
    assert CANARY not in message and "server.port" in message
    # A default written in the file.
    message = _load(tmp_path, "server:\n  port: ${NOPE:-" + CANARY + "}\n")
    assert CANARY not in message and "server.port" in message
    # A variable that is not set: the field and the variable's name, nothing else.
    message = _load(tmp_path, "auth:\n  master_key: ${MISSING_MASTER}\n")
    assert message.endswith("auth.master_key: environment variable MISSING_MASTER is not set")


def test_a_file_that_is_not_text_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "interlock.yaml"
    path.write_bytes(b"auth:\n  master_key: \xff" + CANARY.encode() + b"\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert CANARY not in str(err.value) and "not UTF-8" in str(err.value)


def _cli(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "interlock.yaml"
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    return subprocess.run(
        [sys.executable, "-m", "interlock.cli.main", *args, "--config", str(path)],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip


def test_the_cli_prints_where_and_never_the_secret(tmp_path: Path) -> None:
    # `serve` reads the file itself (cli/serve.py raw_config); every other command goes
    # through the same resolve(). The message is the ConfigError's, printed by click.
    serve = _cli(tmp_path, YAML_ERRORS[0][0], "serve")
    assert serve.returncode != 0
    assert "line 5, column 1" in serve.stderr and "Traceback" not in serve.stderr
    assert CANARY not in serve.stdout + serve.stderr
