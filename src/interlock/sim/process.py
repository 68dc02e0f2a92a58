"""Run the simulator as a child process (tests, benchmarks, ``interlock serve``)."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time

__all__ = ["READY_PREFIX", "start_sim_process", "stop_sim_process"]

READY_PREFIX = "interlock sim listening on "


def start_sim_process(
    *args: str, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m interlock.sim --host HOST --port PORT ARGS...`` and wait for its
    ready line; return the process and its base URL (no trailing slash)."""
    proc = subprocess.Popen(  # noqa: S603 - fixed interpreter and module
        [sys.executable, "-m", "interlock.sim", "--host", host, "--port", str(port), *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (proc.poll() is not None and not sel.select(0)):
                stop_sim_process(proc)
                raise RuntimeError("the simulated provider did not start")
            if sel.select(remaining):
                line = proc.stdout.readline()
                if line.startswith(READY_PREFIX):
                    return proc, line[len(READY_PREFIX) :].strip()
                if not line:
                    stop_sim_process(proc)
                    raise RuntimeError("the simulated provider exited before it was ready")


def stop_sim_process(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    """SIGTERM (then SIGKILL after ``timeout``); close the pipe; return the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode
