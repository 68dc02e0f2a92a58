"""Fixtures of the fault drills (see harness.py): services, a fresh simulator, and a
summary of every drill's figures at the end of the run. ``own_redis`` (a redis-server to
freeze) is tests/conftest.py's."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.drills.harness import RECORDED, PgSchema
from tests.support.services import require


@pytest.fixture
def redis_url() -> str:
    """The shared Redis (drills use a fresh key prefix on it, never FLUSHALL)."""
    require("Redis", "127.0.0.1", 6379)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def pg() -> Iterator[PgSchema]:
    require("PostgreSQL", "127.0.0.1", 5432)
    schema = PgSchema()
    yield schema
    schema.close()


@pytest.fixture
def pg_proxied() -> Iterator[PgSchema]:
    """A schema the gateways reach through a TCP proxy (``pg.proxy.cut()``)."""
    require("PostgreSQL", "127.0.0.1", 5432)
    schema = PgSchema(proxied=True)
    yield schema
    schema.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RECORDED:
        return
    terminalreporter.section("drill figures (also in test-output/drills.json)")
    for entry in RECORDED:
        terminalreporter.write_line(
            f"{entry['drill']}: {json.dumps(entry['figures'], default=str)}"
        )
