"""A worker that dies is replaced; a replacement that cannot start (something it needs at
startup is gone) never takes the serving workers down with it (cli/http_server.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


def _workers(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    kids = [int(p) for p in out.split()]
    return [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        except (FileNotFoundError, ProcessLookupError):
            return
        if state in "ZX":
            return
        time.sleep(0.05)
    raise AssertionError(f"worker {pid} still alive after SIGKILL")


def _serves(url: str) -> int:
    r = httpx.post(f"{url}/v1/chat/completions", headers=ADMIN, timeout=10,
                   json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    return r.status_code


@pytest.mark.slow
@pytest.mark.long  # over 45 s: run by make drills (.ci/run), keeping make test in 15 min
def test_a_replacement_that_cannot_start_leaves_the_others_serving(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    gw = GatewayProcess(sim_config(sim_url, state), tmp_path, workers=2).start(timeout=60)
    try:
        assert gw.proc is not None
        workers = _workers(gw.proc.pid)
        assert len(workers) == 2, workers
        # What every new worker loads at startup: the parent's resolved settings.
        (resolved,) = state.glob("resolved-*.json")
        good = resolved.read_bytes()
        resolved.write_bytes(b"{not json")
        os.kill(workers[0], signal.SIGKILL)
        _wait_dead(workers[0])  # connections it had taken die with it: not what is tested
        # The replacement fails to start, again and again; the other worker serves all along.
        end = time.monotonic() + 6
        while time.monotonic() < end or "failed to start while others serve" not in gw.output():
            assert time.monotonic() < end + 60, gw.output()[-3000:]  # a slow, loaded machine
            assert gw.proc.poll() is None, gw.output()[-3000:]
            assert _serves(gw.url) == 200
            time.sleep(0.3)
        assert workers[1] in _workers(gw.proc.pid)  # the serving worker was left alone
        # Once it can start again, the slot is filled.
        resolved.write_bytes(good)
        deadline = time.monotonic() + 40
        while len(_workers(gw.proc.pid)) < 2:
            assert time.monotonic() < deadline, gw.output()[-3000:]
            time.sleep(0.5)
        assert _serves(gw.url) == 200
    finally:
        gw.stop()


@pytest.mark.slow
@pytest.mark.long  # a variant: run by make drills (.ci/run)
def test_when_no_worker_can_serve_the_gateway_stops(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    gw = GatewayProcess(sim_config(sim_url, state), tmp_path, workers=2).start(timeout=60)
    try:
        assert gw.proc is not None
        (resolved,) = state.glob("resolved-*.json")
        resolved.write_bytes(b"{not json")
        for pid in _workers(gw.proc.pid):
            os.kill(pid, signal.SIGKILL)
        # Both replacements fail to start: nothing would ever serve; the process manager
        # (systemd, Kubernetes) is told by the exit.
        gw.proc.wait(timeout=60)
    finally:
        gw.stop()
