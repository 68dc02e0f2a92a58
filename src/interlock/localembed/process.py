"""Start the local embedding server as a child process."""

from __future__ import annotations

import subprocess

from interlock.childproc import start_module_process
from interlock.localembed import READY_PREFIX


def start_local_embed(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_batch: int = 64,
    max_wait_ms: float = 3.0,
    threads: int = 0,
    timeout: float = 120.0,
) -> tuple[subprocess.Popen[str], str]:
    return start_module_process(
        "interlock.localembed",
        READY_PREFIX,
        "--host",
        host,
        "--port",
        str(port),
        "--max-batch",
        str(max_batch),
        "--max-wait-ms",
        str(max_wait_ms),
        "--threads",
        str(threads),
        timeout=timeout,
        what="the local embedding model",
    )
