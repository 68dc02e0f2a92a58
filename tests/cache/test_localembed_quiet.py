"""The local embedder's start leaves one log line, not a tqdm "Loading weights" bar."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from interlock.localembed import READY_PREFIX
from interlock.localembed.model import available

pytestmark = pytest.mark.skipif(
    not available(), reason="the local embedder (interlock[local]) is not installed"
)


def test_start_logs_one_line_and_no_progress_bar() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "interlock.localembed", "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()  # printed once the model is loaded and the port bound
        assert ready.startswith(READY_PREFIX), ready
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "Loading weights" not in err and "\r" not in err and "it/s" not in err, err
    loaded = [line for line in err.splitlines() if "all-MiniLM-L6-v2 loaded from" in line]
    assert len(loaded) == 1, err
    assert loaded[0].startswith("interlock.localembed: local embedder:")
