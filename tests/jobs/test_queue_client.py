"""The Redis job queue's client is made like every other Redis client: its timeout comes
from the configuration, and a Redis Cluster (whose slots refuse the queue's multi-key
scripts) is refused with the reason instead of failing on the first lease."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.api.job_runner import build_queue
from interlock.settings import parse_settings


def _settings(url: str) -> Any:
    return parse_settings(
        {"state": {"redis_url": url}, "jobs": {"backend": "redis", "redis_timeout_s": 2.5}}
    )


async def test_the_configured_timeout_reaches_the_queue_client() -> None:
    queue = build_queue(_settings("redis://127.0.0.1:6379/0"), gw=None)  # type: ignore[arg-type]
    try:
        kwargs = queue._r.connection_pool.connection_kwargs  # type: ignore[attr-defined]
        assert kwargs["socket_timeout"] == 2.5 and kwargs["socket_connect_timeout"] == 2.5
    finally:
        await queue.close()


def test_a_cluster_url_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="Redis Cluster"):
        build_queue(_settings("redis+cluster://127.0.0.1:7000"), gw=None)  # type: ignore[arg-type]
