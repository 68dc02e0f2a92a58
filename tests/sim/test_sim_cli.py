"""``python -m interlock.sim``: startup line, flags, clean shutdown; embedding via run_sim."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from interlock.sim import SimConfig, SimControl
from interlock.sim.__main__ import run_sim
from interlock.sim.process import start_sim_process as start_sim
from interlock.sim.process import stop_sim_process as stop_sim


def test_cli_flags_config_json_and_sigterm(free_port: int) -> None:
    proc, url = start_sim(
        "--port",
        str(free_port),
        "--seed",
        "3",
        "--output-tokens",
        "5",
        "--config-json",
        '{"embedding_dims": 8, "ttft_ms": 1}',
    )
    try:
        assert url == f"http://127.0.0.1:{free_port}"
        cfg = SimControl(url).config()
        assert (cfg["seed"], cfg["output_tokens"], cfg["embedding_dims"], cfg["ttft_ms"]) == (
            3,
            5,
            8,
            1,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        stop_sim(proc)


def test_cli_sigint_exits_cleanly() -> None:
    proc, _ = start_sim()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0
    assert stop_sim(proc) == 0


def test_cli_rejects_bad_config() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "interlock.sim", "--config-json", '{"x": 1}'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "unknown config keys" in r.stderr


async def test_run_sim_in_process() -> None:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(run_sim(SimConfig(seed=1), "127.0.0.1", 0, ready.set_result, stop))
    url = await asyncio.wait_for(ready, 10)
    body = {"model": "sim-small", "messages": [{"role": "user", "content": "x"}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "/v1/chat/completions", json=body) as r,
    ):
        assert r.status == 200
        assert (await r.json())["usage"]["completion_tokens"] == 16
    stop.set()
    await asyncio.wait_for(task, 10)


def test_sigterm_with_a_hanging_request_exits_promptly() -> None:
    import socket
    import time

    proc, url = start_sim()
    try:
        SimControl(url).set_faults([{"type": "timeout"}])
        host, port = url.removeprefix("http://").split(":")
        body = b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}'
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            time.sleep(0.3)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - t0 < 3
    finally:
        stop_sim(proc)


def test_same_seed_same_answers_across_processes(sim_url: str, sim: SimControl) -> None:
    import httpx

    body = {"model": "sim-small", "messages": [{"role": "user", "content": "determinism?"}]}
    proc, url = start_sim("--seed", "7")
    try:
        with httpx.Client(timeout=10) as client:
            a = client.post(sim_url + "/v1/chat/completions", json=body).json()
            b = client.post(url + "/v1/chat/completions", json=body).json()
    finally:
        stop_sim(proc)
    assert a["choices"] == b["choices"] and a["usage"] == b["usage"]


def test_busy_port_is_one_line_and_exit_1() -> None:
    """``interlock sim --port P`` with P taken: one line saying so, exit 1, no traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for argv in (
            [sys.executable, "-m", "interlock.sim", "--port", str(port)],
            [str(Path(sys.executable).with_name("interlock")), "sim", "--port", str(port)],
        ):
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            assert r.returncode == 1, (argv, r.returncode, r.stderr)
            lines = r.stderr.strip().splitlines()
            assert len(lines) == 1, r.stderr
            assert lines[0].startswith(f"interlock sim: cannot listen on http://127.0.0.1:{port}")
            assert "in use" in lines[0] and "Traceback" not in r.stderr
            assert r.stdout == ""  # the "listening" line is printed only once bound
