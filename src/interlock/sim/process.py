"""Run the simulator as a child process (tests, benchmarks, ``interlock serve``)."""

from __future__ import annotations

import subprocess

from interlock.childproc import start_module_process, stop_process

__all__ = ["READY_PREFIX", "start_sim_process", "stop_sim_process"]

READY_PREFIX = "interlock sim listening on "


def start_sim_process(
    *args: str, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m interlock.sim --host HOST --port PORT ARGS...`` and wait for its
    ready line; return the process and its base URL (no trailing slash)."""
    return start_module_process(
        "interlock.sim",
        READY_PREFIX,
        "--host",
        host,
        "--port",
        str(port),
        *args,
        timeout=timeout,
        what="the simulated provider",
    )


def stop_sim_process(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    return stop_process(proc, timeout)
