"""L2 on every Redis topology: one server, Sentinel (with a failover) and Cluster.

The test starts its own redis-server processes (the machine's Redis binary) on free
ports: a master watched by one Sentinel, and a three-master Cluster. The same tier
conformance runs on each, through the URL forms operators configure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from interlock.cache.redis_tier import RedisTier
from interlock.state.redis_connect import connect
from tests.cache.test_cache_unit import conformance
from tests.support.gateway import free_port

pytestmark = [
    pytest.mark.redis,
    pytest.mark.skipif(
        shutil.which("redis-server") is None and os.environ.get("CI") != "true",
        reason="redis-server is not installed",
    ),
]


def _cli(port: int, *args: str) -> str:
    out = subprocess.run(
        ["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10
    )
    return out.stdout


def _wait(cond: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class Servers:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def redis(self, *extra: str, port: int | None = None) -> int:
        """Start a redis-server on a free port (retried: a port can be taken meanwhile)."""
        for _ in range(5):
            p_port = port or free_port()
            d = self.root / f"{p_port}-{len(self.procs)}"
            d.mkdir()
            conf = [a.replace("{port}", str(p_port)) for a in extra]
            p = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(p_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(d),
                    *conf,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 30
            while p.poll() is None and _cli(p_port, "ping").strip() != "PONG":
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if p.poll() is None and _cli(p_port, "ping").strip() == "PONG":
                self.procs.append(p)
                return p_port
            p.kill()
            p.wait(5)
        raise AssertionError("could not start redis-server")

    def stop(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(5)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    s = Servers(tmp_path)
    yield s
    s.stop()


async def test_sentinel_follows_a_failover(servers: Servers, tmp_path: Path) -> None:
    master = servers.redis()
    replica = servers.redis("--replicaof", "127.0.0.1", str(master))
    sport = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sport}\nbind 127.0.0.1\n"
        f"sentinel monitor cache 127.0.0.1 {master} 1\n"
        "sentinel down-after-milliseconds cache 1000\n"
        "sentinel failover-timeout cache 3000\n"
    )
    servers.procs.append(
        subprocess.Popen(["redis-server", str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
    )
    _wait(lambda: "cache" in _cli(sport, "sentinel", "masters"), "sentinel")
    client = connect(f"redis+sentinel://127.0.0.1:{sport}/cache/0", timeout_s=1.0)
    tier = RedisTier(client, "t:", 1.0)
    await conformance(tier)
    # The master dies; Sentinel promotes the replica and the same client follows it.
    servers.procs[0].kill()
    servers.procs[0].wait(5)
    _wait(
        lambda: str(replica) in _cli(sport, "sentinel", "get-master-addr-by-name", "cache"),
        "failover",
        timeout=30,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            await conformance(tier)
            break
        except Exception:
            assert time.monotonic() < deadline, "the client did not follow the new master"
            await asyncio.sleep(0.3)
    await client.aclose()


async def test_cluster(servers: Servers) -> None:
    ports = [
        servers.redis("--cluster-enabled", "yes", "--cluster-config-file", "nodes-{port}.conf")
        for _ in range(3)
    ]
    out = subprocess.run(
        [
            "redis-cli",
            "--cluster",
            "create",
            *(f"127.0.0.1:{p}" for p in ports),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    _wait(lambda: "cluster_state:ok" in _cli(ports[0], "cluster", "info"), "cluster ok")
    client = connect(f"redis+cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}", timeout_s=1.0)
    tier = RedisTier(client, "t:", 1.0)
    for _ in range(5):  # keys land on different masters
        await conformance(tier)
    await client.aclose()
