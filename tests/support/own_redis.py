"""A redis-server of the test's own on a free port, to freeze (SIGSTOP) or kill freely.

Never touch the shared Redis on 127.0.0.1:6379 that way: other engineers' tests use it.
:func:`start_own_redis` for a ``with`` block; the ``own_redis`` fixture (tests/conftest.py)
for a test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.gateway import free_port


class OwnRedis:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


def _binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (CI=true)")
        pytest.skip("redis-server is not installed")
    return binary


@contextmanager
def start_own_redis(workdir: Path) -> Iterator[OwnRedis]:
    """Start one (retried: a free port can be taken before the server binds it)."""
    binary = _binary()
    workdir.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        port = free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None and time.monotonic() < deadline:
            server = OwnRedis(proc, port)
            try:
                yield server
            finally:
                server.thaw()
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            return
        proc.kill()
        proc.wait(5)
    raise AssertionError("could not start redis-server")
