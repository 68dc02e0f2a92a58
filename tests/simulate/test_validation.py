"""The simulator's 1× prediction matches a real load test on this machine.

A real gateway in front of the simulated provider takes an open-loop load test; then
``interlock simulate --scale 1`` predicts the same traffic from the ledger alone. The
stated error bounds (docs/launch.md): cost within 0.5 % (it prices the recorded tokens,
so it should be exact), p95 latency within 15 % of what the load tester measured.
The full-length figures come from bench/simulate_validation.py, which this reuses.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "simulate_validation.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("simulate_validation", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.long  # ~15 s of replicas/processes: run by make drills (.ci/run)
@pytest.mark.timeout(180)
def test_one_x_prediction_matches_a_real_load_test(tmp_path: Path) -> None:
    result = bench().validate(tmp_path, rate=15.0, duration=8.0)
    assert result["loadtest"]["ok"] == result["loadtest"]["sent"] == 120
    assert result["simulated"]["requests"] == result["ledger"]["requests_ok"] == 120
    assert abs(result["error"]["cost_pct"]) < 0.5, result
    assert abs(result["error"]["p95_vs_loadtest_pct"]) < 15, result
    models = result["simulated"]["latency_models"]
    # the simulated provider's 60 ms + 2.5 ms/token, recovered from the ledger
    assert 2.0 < models["small"]["per_token_ms"] < 3.5 and 50 < models["small"]["base_ms"] < 110
