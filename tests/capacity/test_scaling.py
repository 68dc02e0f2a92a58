"""Horizontal scaling on this machine (bench/scaling.py, asserted): 3 gateways and 2
workers on Redis and PostgreSQL behind nginx; one gateway SIGKILLed under load."""

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
    # more throughput from three processes than from one (two cores: not three times)
    assert r["throughput_rps"]["ratio"] > 1.1
    # only what the killed gateway had in flight fails; nginx moves the rest
    assert r["kill"]["failed_requests"] <= r["kill"]["in_flight_on_killed"]
    # limits hold across replicas and across the kill
    assert r["rpm"]["admitted_ledger"] <= r["rpm"]["gcra_bound"] and r["rpm"]["refused_429"] > 0
    assert r["rpm"]["admitted_client"] >= r["rpm"]["limit"] - r["kill"]["failed_requests"]
    assert Decimal(r["budget"]["admitted_spend_usd"]) <= Decimal(r["budget"]["limit_usd"])
    assert r["budget"]["admitted"] > 0 and r["budget"]["refused"] > 0
    # no acknowledged job is lost
    assert r["jobs"]["final"] == {"succeeded": r["jobs"]["acknowledged"]}
