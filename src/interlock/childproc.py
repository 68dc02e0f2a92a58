"""Start a helper server (the simulator, the local embedding model) as a child process.

The child prints one ready line, ``<prefix><base url>``, once it is bound; the parent
waits for that line so callers get a URL that already answers.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable

__all__ = ["start_module_process", "stop_process"]


def start_module_process(
    module: str,
    ready_prefix: str,
    *args: str,
    timeout: float = 30.0,
    what: str = "",
    preexec_fn: Callable[[], None] | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """Run ``python -m MODULE ARGS...``; return the process and the URL from its ready line."""
    what = what or module
    proc = subprocess.Popen(  # noqa: S603 - fixed interpreter and module
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=preexec_fn,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (proc.poll() is not None and not sel.select(0)):
                stop_process(proc)
                raise RuntimeError(f"{what} did not start")
            if sel.select(remaining):
                line = proc.stdout.readline()
                if line.startswith(ready_prefix):
                    return proc, line[len(ready_prefix) :].strip()
                if not line:
                    stop_process(proc)
                    raise RuntimeError(f"{what} exited before it was ready")


def stop_process(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
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
