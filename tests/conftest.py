"""Shared fixtures: the simulated provider (``interlock.sim``) as a real subprocess.

* ``sim_url`` (session): base URL of a running ``python -m interlock.sim --port 0 --seed 7``.
* ``sim`` (function): a :class:`~interlock.sim.SimControl` for it, reset to the startup
  configuration (no faults, empty ledger and request log) before the test.
* ``free_port``: a TCP port that was free a moment ago.
* ``engine``: a migrated storage database, once on SQLite and once on PostgreSQL
  (:mod:`tests.support.databases`).
* ``own_redis``: a redis-server of the test's own, to freeze or kill
  (:mod:`tests.support.own_redis`).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.sim import SimControl
from interlock.sim.process import start_sim_process, stop_sim_process
from tests.support.databases import BACKENDS, migrated
from tests.support.own_redis import OwnRedis, start_own_redis

SIM_SEED = 7


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    proc, url = start_sim_process("--seed", str(SIM_SEED))
    try:
        yield url
    finally:
        stop_sim_process(proc)


@pytest.fixture
def sim(sim_url: str) -> SimControl:
    control = SimControl(sim_url)
    control.reset(initial=True)
    return control


@pytest.fixture
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with migrated(request.param, tmp_path) as db:
        yield db.engine


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    with start_own_redis(tmp_path / "redis") as server:
        yield server
