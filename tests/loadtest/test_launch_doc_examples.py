"""docs/launch.md's load-test examples run as written against the embedded default (what
a new user has after `interlock serve`): the command and the YAML mix are read from the
page, only the run is shortened (a later --rate/--duration/--json wins) and the key
given."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import MASTER_KEY, GatewayProcess

DOC = Path(__file__).resolve().parents[2] / "docs" / "launch.md"


def section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"## `{title}`")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def command(block: str) -> list[str]:
    argv = shlex.split(block.replace("\\\n", " "))
    assert argv[:2] == ["interlock", "loadtest"], argv
    return [MASTER_KEY if a == "$KEY" else a for a in argv[2:]]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # No configuration file: the embedded default with its own simulator.
    gw = GatewayProcess(None, tmp_path_factory.mktemp("default"),
                        env={"INTERLOCK_MASTER_KEY": MASTER_KEY}).start(timeout=60)  # fmt: skip
    try:
        yield gw
    finally:
        gw.stop()


def run(gateway: GatewayProcess, tmp_path: Path, args: list[str]) -> tuple[Any, dict[str, Any]]:
    out = tmp_path / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    env["INTERLOCK_URL"] = gateway.url  # the documented override; the page says 8080
    proc = subprocess.run(
        [sys.executable, "-m", "interlock.cli.main", "loadtest", *args,
         "--rate", "10", "--duration", "1", "--json", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    return proc, (json.loads(out.read_text()) if out.exists() else {})


def test_the_command_line_example_runs_as_written(gateway: GatewayProcess, tmp_path: Path) -> None:
    example = blocks(section("interlock loadtest"), "sh")[0]
    proc, doc = run(gateway, tmp_path, command(example))
    # 0 or 1: whether this machine meets the example's objectives is not the question;
    # 2 would be a usage error (an option or a model that does not exist)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert doc["config"]["models_discovered"] == {"chat": "sim-small", "embeddings": "sim-embed"}
    assert doc["requests"]["sent"] == 10 and doc["errors"] == {}, doc["errors"]
    assert set(doc["by_kind"]) <= {"chat", "stream", "embeddings"}
    assert "using 'sim-small'" in proc.stderr


def test_the_yaml_mix_example_runs_as_written(gateway: GatewayProcess, tmp_path: Path) -> None:
    text = section("interlock loadtest")
    (tmp_path / "mix.yaml").write_text(blocks(text, "yaml")[0])
    line = next(ln for ln in text.splitlines() if "--workload mix.yaml" in ln)
    proc, doc = run(gateway, tmp_path, command(line[line.index("`") + 1 : line.rindex("`")]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert doc["errors"] == {} and doc["requests"]["ok"] == doc["requests"]["sent"] == 10
    assert {e["model"] for e in doc["config"]["workload"]["mix"]} == {"sim-small", "sim-embed"}
