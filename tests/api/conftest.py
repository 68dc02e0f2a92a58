"""A real `interlock serve` process in front of the simulated provider, for the API tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config


@pytest.fixture(scope="session")
def gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    work = tmp_path_factory.mktemp("gateway")
    gw = GatewayProcess(sim_config(sim_url, work / "state"), work).start()
    try:
        yield gw
    finally:
        gw.stop()


def reset_gateway(gateway: GatewayProcess) -> None:
    """Close every breaker and clear cooldowns, so faults of one test do not leak."""
    admin = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(base_url=gateway.url, headers=admin, timeout=10) as c:
        for dep in c.get("/admin/deployments").json()["data"]:
            c.post(f"/admin/deployments/{dep['deployment']}/reset").raise_for_status()
        c.put("/admin/degradation", json={"level": "auto"}).raise_for_status()


@pytest.fixture
def http(gateway: GatewayProcess, sim: SimControl) -> Iterator[httpx.Client]:
    """Raw HTTP to the gateway with the master key; simulator and gateway health reset."""
    reset_gateway(gateway)
    with httpx.Client(
        base_url=gateway.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def oai(gateway: GatewayProcess, sim: SimControl) -> Iterator[openai.OpenAI]:
    """The official openai SDK pointed at the gateway, unchanged but for base_url and key."""
    reset_gateway(gateway)
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key=MASTER_KEY, max_retries=0) as c:
        yield c


@pytest.fixture
def new_key(http: httpx.Client):  # type: ignore[no-untyped-def]
    """Create a virtual key through the admin API: new_key(user=..., models=[...])."""

    def make(**fields: object) -> str:
        r = http.post("/admin/keys", json=fields)
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    return make
