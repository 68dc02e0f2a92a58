from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.databases import BACKENDS, migrated


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A migrated database on each backend (a fresh schema per test on PostgreSQL)."""
    async with migrated(request.param, tmp_path) as db:
        yield db.engine
