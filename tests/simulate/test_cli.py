"""``interlock simulate`` on a synthetic profile: 10× against a quota, and a comparison."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

PROFILE = {
    "duration_s": 600,
    "rps": 2,
    "seed": 1,
    "mix": [
        {
            "model": "chat",
            "prompt_tokens": [200, 400],
            "completion_tokens": 100,
            "cache_hit_rate": 0.25,
        }
    ],
    "latency": {"a": {"ttft_ms": 200, "tokens_per_s": 100}},
}


def config(tmp: Path, name: str, **route: Any) -> Path:
    cfg = {
        "storage": {"url": f"sqlite+aiosqlite:///{tmp}/unused.db"},
        "providers": {"p": {"kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}},
        "deployments": {
            "a": {
                "provider": "p",
                "model": "m",
                "rpm": 300,
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 4.0},
            }
        },
        "models": {"chat": {"deployments": ["a"], **route}},
    }
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def simulate(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp / "profile.yaml").write_text(yaml.safe_dump(PROFILE))
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "interlock.cli.main",
            "simulate",
            "--profile",
            str(tmp / "profile.yaml"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_ten_times_a_profile_against_a_quota_and_what_turning_the_cache_off_costs(
    tmp_path: Path,
) -> None:
    cached = config(tmp_path, "cached.yaml")
    uncached = config(tmp_path, "uncached.yaml", cache={"enabled": False})
    proc = simulate(
        tmp_path,
        "-c",
        str(uncached),
        "--baseline-config",
        str(cached),
        "--scale",
        "1",
        "--scale",
        "10",
        "--json",
        "-",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    one, ten = doc["results"]
    assert one["http_429"] == 0 and ten["http_429"] > 0  # 120 rpm fits 300 rpm; 1,200 does not
    assert ten["deployments"]["a"]["quota_needed"]["rpm"] > 1000
    assert 1200 <= one["latency_ms"]["p50"] <= 1210  # 200 ms + 100 tokens at 100/s
    base_one = doc["baseline"][0]
    assert base_one["cache_hits"] > 0 and one["cache_hits"] == 0
    assert float(doc["difference"][0]["cost_per_day_usd"]) > 0  # the cache was saving money
    table = simulate(tmp_path, "-c", str(cached), "--scale", "10")
    assert table.returncode == 0 and "COST/DAY" in table.stdout and "RPM NEEDED" in table.stdout
