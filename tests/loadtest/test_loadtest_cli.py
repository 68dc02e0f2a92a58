"""``interlock loadtest`` over real HTTP against the simulated provider.

Runs are kept to a second or two: the 2,000 req/s accuracy figure lives in
bench/loadtest_accuracy.py, not in the test suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from interlock.sim import SimControl


def loadtest(
    tmp_path: Path, *args: str, timeout: float = 60
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "result.json"
    out.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLOCK_")}
    proc = subprocess.run([sys.executable, "-m", "interlock.cli.main", "loadtest", "--json", str(out),
                           "--no-progress", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=tmp_path)  # fmt: skip
    return proc, (json.loads(out.read_text()) if out.exists() else {})


def test_a_mixed_run_reports_latency_ttft_throughput_and_writes_json_and_html(
    sim: SimControl, sim_url: str, tmp_path: Path
) -> None:
    sim.set_config(ttft_ms=20)
    proc, doc = loadtest(tmp_path, "--url", sim_url, "--rate", "60", "--duration", "1",
                         "--model", "sim-small", "--embed-model", "sim-embed",
                         "--mix", "chat=2,stream=2,embeddings=1",
                         "--slo", "p95_ms=2000", "--slo", "error_rate=0.01")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert doc["schema"] == "interlock.loadtest/1" and doc["passed"] is True
    assert doc["requests"]["sent"] == 60 and doc["requests"]["ok"] == 60
    # how close the achieved rate is to the target is bench/loadtest_accuracy.py's figure
    assert doc["arrival"]["achieved_rps"] > 0 and doc["arrival"]["target_rps"] == 60
    assert set(doc["by_kind"]) == {"chat", "stream", "embeddings"}
    assert doc["ttft_ms"]["count"] == doc["by_kind"]["stream"]["ok"] > 0
    assert doc["ttft_ms"]["p50"] >= 20  # the simulator's time to first token
    assert doc["latency_ms"]["p50"] <= doc["latency_ms"]["p95"] <= doc["latency_ms"]["p99"]
    assert doc["throughput"]["output_tokens_per_s"] > 0
    assert sum(sim.ledger()["totals"].get(k, 0) for k in ("requests",)) == 60
    html = (tmp_path / "result.html").read_text()
    assert "PASS" in html and "http://" not in html.split("<svg", 1)[1].replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )  # no external resource
    svgs = [part.split("</svg>")[0] + "</svg>" for part in html.split("<svg")[1:]]
    assert len(svgs) == 3
    for svg in svgs:
        ET.fromstring("<svg" + svg)  # well-formed inline SVG


def test_a_failed_objective_exits_non_zero_and_says_which(sim_url: str, tmp_path: Path) -> None:
    proc, doc = loadtest(tmp_path, "--url", sim_url, "--rate", "20", "--duration", "0.5",
                         "--model", "sim-small", "--slo", "p50_ms=0.001")  # fmt: skip
    assert proc.returncode == 1
    assert "slo FAIL    p50_ms <= 0.001" in proc.stdout
    assert doc["passed"] is False and doc["slo"]["checks"][0]["passed"] is False


def test_errors_are_counted_by_status_and_code(
    sim: SimControl, sim_url: str, tmp_path: Path
) -> None:
    sim.set_faults([{"type": "status", "status": 429, "count": 5, "retry_after": 1}])
    proc, doc = loadtest(tmp_path, "--url", sim_url, "--rate", "40", "--duration", "0.5",
                         "--model", "sim-small", "--slo", "error_rate=0.5")  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    assert sum(n for k, n in doc["errors"].items() if k.startswith("http_429")) == 5
    assert doc["error_rate"] == 5 / 20


def test_slow_answers_do_not_slow_the_arrivals(
    sim: SimControl, sim_url: str, tmp_path: Path
) -> None:
    """No coordinated omission: with one connection and 200 ms answers, requests queue on
    this side; they still leave on schedule and the queueing counts in their latency."""
    sim.set_faults([{"type": "latency", "ms": 200}])
    proc, doc = loadtest(tmp_path, "--url", sim_url, "--rate", "20", "--duration", "0.5",
                         "--model", "sim-small", "--connections", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stdout
    # A closed loop on one connection could send 10 requests no faster than one per
    # answer (9 gaps of 200 ms: 5 req/s); the open loop is not held back by the answers.
    assert doc["requests"]["sent"] == 10 and doc["arrival"]["achieved_rps"] > 5
    # the 10th request waited for 9 others at ~200 ms each: ~1.8 s, not 200 ms
    assert doc["latency_ms"]["max"] > 1500
    assert doc["latency_ms"]["p50"] > 500


def test_targets_that_are_not_loopback_are_refused_before_sending(tmp_path: Path) -> None:
    proc, doc = loadtest(
        tmp_path, "--url", "http://192.0.2.1:8080", "--rate", "1", "--duration", "0.1"
    )
    assert proc.returncode == 2 and "--allow-host 192.0.2.1" in proc.stderr
    assert doc == {}


def test_a_run_against_nothing_still_ends_and_reports_connect_errors(
    free_port: int, tmp_path: Path
) -> None:
    proc, doc = loadtest(tmp_path, "--url", f"http://127.0.0.1:{free_port}", "--rate", "20",
                         "--duration", "0.25", "--timeout", "2", "--model", "m")  # fmt: skip
    assert proc.returncode == 1
    assert doc["errors"] == {"connect_error": 5} and doc["passed"] is False


def test_without_a_model_against_nothing_it_says_it_cannot_list_models(
    free_port: int, tmp_path: Path
) -> None:
    proc, doc = loadtest(tmp_path, "--url", f"http://127.0.0.1:{free_port}", "--rate", "20",
                         "--duration", "0.25")  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"cannot list models at http://127.0.0.1:{free_port}/v1/models" in proc.stderr
    assert doc == {}
