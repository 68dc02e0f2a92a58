"""One Redis client from one URL: a single server, Sentinel or Cluster.

- ``redis://[:password@]host:port/db`` (or ``rediss://``): one server.
- ``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]``: the current
  master of ``service`` as the Sentinels report it; a failover is followed by the client.
- ``redis+cluster://[:password@]host:port[,host:port...]``: a Redis Cluster (single-key
  commands only, which is all the cache tier uses).

The client's own socket timeouts are only a backstop (``timeout_s``, the wall-clock
bound of a call): every call is bounded by :class:`interlock.state.redis_call.RedisCalls`,
which does not charge Redis for time this process's event loop was busy. A single
server gets a bounded pool that callers queue for, rather than redis-py's default pool
that raises "Too many connections" past 100 concurrent commands: a burst of requests
waits a few milliseconds for a connection instead of failing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster, Sentinel
from redis.asyncio.cluster import ClusterNode

# Connections per process to one Redis server; commands beyond it wait for a free one.
POOL_SIZE = 64


def _nodes(netloc: str) -> tuple[list[tuple[str, int]], str | None]:
    password = None
    if "@" in netloc:
        cred, netloc = netloc.rsplit("@", 1)
        password = unquote(cred.split(":", 1)[1] if ":" in cred else cred) or None
    nodes = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        if not host:
            host, port = part, "6379"
        nodes.append((host.strip("[]"), int(port)))
    return nodes, password


def connect(
    url: str, *, timeout_s: float, decode_responses: bool = True, pool_size: int = POOL_SIZE
) -> Redis | RedisCluster:
    """A lazily connecting client; no socket operation outlives ``timeout_s``."""
    opts: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "decode_responses": decode_responses,
    }
    scheme = url.split("://", 1)[0].lower()
    if scheme == "redis+sentinel":
        parts = urlsplit(url)
        nodes, password = _nodes(parts.netloc)
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError("a redis+sentinel:// URL names the service: .../<service>[/<db>]")
        db = int(path[1]) if len(path) > 1 else 0
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            nodes,
            sentinel_kwargs={"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s},
        )
        master: Redis = sentinel.master_for(path[0], db=db, password=password, **opts)
        return master
    if scheme == "redis+cluster":
        nodes, password = _nodes(urlsplit(url).netloc)
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in nodes], password=password, **opts
        )
    # timeout=None: the wait for a free connection is bounded by the caller's deadline.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=None,
        health_check_interval=0,
        retry_on_timeout=False,
        **opts,
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() closes it
