"""Reachability of the real services (PostgreSQL, Redis) the integration tests need.

Locally a missing server skips those tests with a visible reason; with CI=true it is a
failure, because CI must run them. :func:`delete_redis_keys` cleans up after a test.
"""

from __future__ import annotations

import os
import socket

import pytest
import redis

PG_URL = os.environ.get(
    "INTERLOCK_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("INTERLOCK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(service: str, host: str, port: int) -> None:
    if reachable(host, port):
        return
    message = f"{service} is not reachable at {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: this test must run)")
    pytest.skip(message)


def delete_redis_keys(prefix: str, url: str = REDIS_URL) -> None:
    """Delete a test's own keys (its prefix) from the shared Redis: never FLUSHALL."""
    with redis.Redis.from_url(url) as r:
        keys = list(r.scan_iter(match=prefix + "*", count=1000))
        if keys:
            r.delete(*keys)
