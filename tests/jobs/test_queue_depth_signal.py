"""The degradation ladder's ``queue_depth`` signal reads the real job queue: queued jobs
beyond its threshold move the gateway to ``limited``."""

from __future__ import annotations

import time
from pathlib import Path

from tests.jobs.support import ADMIN, chat_job, client, jobs_config, submit
from tests.support.gateway import GatewayProcess


def test_queued_jobs_raise_the_queue_depth_signal(sim_url: str, tmp_path: Path) -> None:
    cfg = jobs_config(sim_url, tmp_path / "state", run_in_serve=False, metrics_interval_s=0.1)
    cfg["resilience"] = {
        "retry": {"max_attempts": 1},
        "degradation": {
            "evaluate_every_s": 0.1,
            "down_after_s": 0,
            "signals": {"queue_depth": {"limited": 3}},
        },
    }
    gw = GatewayProcess(cfg, tmp_path).start()
    try:
        with client(gw) as c:
            assert c.get("/admin/degradation", headers=ADMIN).json()["level"] == "full"
            for _ in range(3):
                submit(c, chat_job())
            deadline = time.monotonic() + 10
            while True:
                state = c.get("/admin/degradation", headers=ADMIN).json()
                if state["level"] == "limited":
                    break
                assert time.monotonic() < deadline, state
                time.sleep(0.1)
            assert state["signals"]["queue_depth"] == 3.0
            assert "queue_depth" in (state["reason"] or "")
    finally:
        gw.stop()
