"""Horizontal scaling on this machine (bench/scaling.py, asserted): 3 gateways and 2
workers on Redis and PostgreSQL behind nginx; one gateway SIGKILLed under load.

Only correctness is asserted: the stack serves, the survivors keep serving, nothing
acknowledged is lost, limits hold. The throughput ratio (three processes against one)
is bench/scaling.py's figure: on two shared cores it depends on what else runs (it
measured 1.02 under a parallel test run and 1.83 alone), so it cannot be a verdict."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.services import require

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scaling.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scaling", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.long  # ~70 s of wrk + nginx + 3 gateways: run by make drills (.ci/run)
@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_three_gateways_survive_losing_one(tmp_path: Path) -> None:
    require("Redis", "127.0.0.1", 6379)
    require("PostgreSQL", "127.0.0.1", 5432)
    if not (shutil.which("nginx") and shutil.which("wrk")):
        pytest.skip("nginx and wrk are needed")
    r = bench().run(tmp_path, rate=40.0, duration=8.0, wrk_s=3.0)
    print(r)
    # one process and three behind nginx both serve (how much more: bench/scaling.py)
    assert r["throughput_rps"]["1_process"] > 0 and r["throughput_rps"]["3_processes_nginx"] > 0
    # only what the killed gateway had in flight fails; nginx moves the rest
    assert r["kill"]["failed_requests"] <= r["kill"]["in_flight_on_killed"]
    # the survivors keep serving: each answers requests started after the kill
    survivors = r["kill"]["served_after_kill"]
    assert len(survivors) == 2 and all(n > 0 for n in survivors.values()), survivors
    # every load-test request got an answer (none left hanging)
    assert r["kill"]["loadtest"]["unfinished"] == 0
    # limits hold across replicas and across the kill
    assert r["rpm"]["admitted_ledger"] <= r["rpm"]["gcra_bound"] and r["rpm"]["refused_429"] > 0
    assert r["rpm"]["admitted_client"] >= r["rpm"]["limit"] - r["kill"]["failed_requests"]
    assert Decimal(r["budget"]["admitted_spend_usd"]) <= Decimal(r["budget"]["limit_usd"])
    assert r["budget"]["admitted"] > 0 and r["budget"]["refused"] > 0
    # no acknowledged job is lost
    assert r["jobs"]["final"] == {"succeeded": r["jobs"]["acknowledged"]}
