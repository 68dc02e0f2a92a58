"""Gateways with two deployments (A and B) on the simulated provider, for fault tests.

A and B are the same simulator under two upstream model names, so a fault can be aimed
at one of them with ``match: {"model": "sim-a"}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import MASTER_KEY, SIM_KEY, GatewayProcess

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
MSG = [{"role": "user", "content": "hello"}]


def ab_config(sim_url: str, state_dir: Path, *, alias: dict[str, Any] | None = None,
              resilience: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:  # fmt: skip
    fast = {"connect_s": 1, "first_byte_s": 2, "idle_s": 2, "total_s": 5}
    cfg: dict[str, Any] = {
        "state_dir": str(state_dir),
        "storage": {"url": f"sqlite+aiosqlite:///{state_dir}/interlock.db"},
        "auth": {"master_key": MASTER_KEY},
        "providers": {
            "sim": {"kind": "openai_compatible", "base_url": f"{sim_url}/v1", "api_key": SIM_KEY}
        },
        "deployments": {
            "A": {"provider": "sim", "model": "sim-a", "timeouts": fast},
            "B": {"provider": "sim", "model": "sim-b", "timeouts": fast},
        },
        "models": {"ab": {"deployments": ["A", "B"], **(alias or {})}},
        "resilience": resilience or {},
        "spend": {
            "unknown_price": {"action": "allow", "input_per_mtok": 1.0, "output_per_mtok": 2.0}
        },
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(config: dict[str, Any], *, workers: int = 1, name: str = "gw") -> GatewayProcess:
        gw = GatewayProcess(config, tmp_path / name, workers=workers).start(timeout=60)
        started.append(gw)
        return gw

    yield start
    for gw in started:
        gw.stop()
