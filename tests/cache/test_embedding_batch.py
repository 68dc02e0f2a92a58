"""Micro-batching for remote embedding deployments: concurrent requests become one
upstream call, duplicates in flight are embedded once, and each caller pays its share —
the shares add up to exactly what the provider billed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from interlock.routing.embed_batch import split_tokens
from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.mark.parametrize(
    ("total", "weights"),
    [(10, [1, 1, 1]), (7, [5, 1]), (0, [1, 2]), (3, [0, 0, 0]), (101, [3] * 7)],
)
def test_token_shares_add_up_exactly(total: int, weights: list[float]) -> None:
    parts = split_tokens(total, weights)
    assert sum(parts) == total and len(parts) == len(weights) and min(parts) >= 0


@pytest.fixture
def gw(sim_url: str, tmp_path: Path) -> GatewayProcess:
    cfg = sim_config(sim_url, tmp_path / "state", cache={"enabled": False})
    cfg["models"]["batched-embed"] = {
        "deployments": ["sim-embed"],
        "embedding_batch": {"max_batch": 64, "max_wait_ms": 50},
    }
    cfg["models"]["plain-embed"] = {"deployments": ["sim-embed"]}
    g = GatewayProcess(cfg, tmp_path).start()
    yield g  # type: ignore[misc]
    g.stop()


def test_concurrent_requests_share_one_upstream_call(gw: GatewayProcess, sim: SimControl) -> None:
    texts = [f"document number {i} about signalling" for i in range(16)] + ["shared text"] * 4

    def one(text: str) -> httpx.Response:
        return httpx.post(
            f"{gw.url}/v1/embeddings",
            headers=ADMIN,
            timeout=30,
            json={"model": "batched-embed", "input": text},
        )

    with ThreadPoolExecutor(len(texts)) as pool:
        answers = list(pool.map(one, texts))
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    calls = [q for q in sim.requests() if q["path"] == "/v1/embeddings"]
    # Threads start a little apart on a busy machine: a few batches, never one call each.
    assert len(calls) <= len(texts) // 2, f"{len(calls)} upstream calls for {len(texts)} requests"
    # Each caller got its own embedding, the same as asking alone.
    alone = httpx.post(
        f"{gw.url}/v1/embeddings",
        headers=ADMIN,
        timeout=30,
        json={"model": "plain-embed", "input": texts[3]},
    ).json()
    assert answers[3].json()["data"][0]["embedding"] == alone["data"][0]["embedding"]
    dup = [r.json()["data"][0]["embedding"] for r in answers[16:]]
    assert all(d == dup[0] for d in dup)
    # The callers' shares add up to what the provider counted for the batched calls.
    billed = sum(r.json()["usage"]["prompt_tokens"] for r in answers)
    served = sim.ledger()["totals"]["prompt_tokens"] - alone["usage"]["prompt_tokens"]
    assert billed == served
    assert max(int(r.headers["x-interlock-batch-size"]) for r in answers) > 1
