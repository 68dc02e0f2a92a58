"""The router as the gateway runs it by default, scored on the labelled dev file."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "routing-dev.jsonl"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "routing_eval", ROOT / "bench" / "routing_eval.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.skipif(not DATA.exists(), reason="the labelled dev file is not here")
def test_default_router_meets_the_targets() -> None:
    result = bench().evaluate(DATA)
    for half in ("all", "odd", "even"):
        s = result[half]
        assert s["under_routing_rate"] <= 0.05, (half, s["misses"])
        assert s["cost_vs_large"] <= 0.45, half
    # The decision's own cost (CPU time): wall-clock tails on a shared CI machine measure
    # the scheduler, not the router. Best of three, for the same reason.
    b = bench()
    router, examples = b.router_from(), b.load(DATA)
    assert min(b.timing(router, examples)["cpu_p99_ms"] for _ in range(3)) <= 2.0
