"""The control API (/_sim/...), the SimControl client, the ledger and the request log."""

from __future__ import annotations

import httpx
import pytest

from interlock.sim import SimControl
from interlock.sim.control import SimControlError

CHAT = {"model": "sim-small", "messages": [{"role": "user", "content": "hello"}]}


def test_health_and_config(sim: SimControl) -> None:
    assert sim.health() == {"status": "ok"}
    cfg = sim.config()
    assert cfg["seed"] == 7 and cfg["output_tokens"] == 16 and cfg["embedding_dims"] == 256
    assert cfg["prices"]["sim-medium"] == {"input_per_mtok": 1.0, "output_per_mtok": 4.0}
    assert cfg["faults"] == []
    assert sim.set_config(**cfg) == cfg  # GET output is valid PUT input


def test_partial_update_and_unknown_keys(sim: SimControl, http: httpx.Client) -> None:
    updated = sim.set_config(ttft_ms=5, output_tokens=4)
    assert updated["ttft_ms"] == 5 and updated["output_tokens"] == 4 and updated["seed"] == 7
    body = http.post("/v1/chat/completions", json=CHAT).json()
    assert body["usage"]["completion_tokens"] == 4
    with pytest.raises(SimControlError) as exc:
        sim.set_config(bogus=1)
    assert exc.value.status == 400
    assert http.put("/_sim/config", content=b"[1]").status_code == 400
    assert http.put("/_sim/config", json={"faults": [{"type": "status"}]}).status_code == 400
    assert (
        http.put(
            "/_sim/config", json={"faults": [{"type": "status", "status": 500, "colour": "red"}]}
        ).status_code
        == 400
    )
    assert sim.config()["output_tokens"] == 4


def test_reset_keeps_latency_unless_asked(sim: SimControl, http: httpx.Client) -> None:
    sim.set_config(ttft_ms=1, faults=[{"type": "status", "status": 500}])
    http.post("/v1/chat/completions", json=CHAT)
    after = sim.reset()
    assert after["ttft_ms"] == 1 and after["faults"] == []
    assert sim.ledger()["entries"] == [] and sim.requests() == []
    assert sim.reset(ttft_ms=0)["ttft_ms"] == 0
    sim.set_config(seed=99)
    assert sim.reset(initial=True)["seed"] == 7


def test_ledger_totals_by_model_and_cost(
    sim: SimControl, http: httpx.Client, anthropic_headers: dict[str, str]
) -> None:
    a = http.post("/v1/chat/completions", json=CHAT).json()["usage"]
    b = http.post(
        "/v1/messages",
        headers=anthropic_headers,
        json={
            "model": "sim-large",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hello"}],
        },
    ).json()["usage"]
    e = http.post("/v1/embeddings", json={"model": "sim-embed", "input": "one two three"}).json()
    http.post("/v1/chat/completions", json={**CHAT, "model": "sim-medium", "stream": True})
    ledger = sim.ledger()
    totals = ledger["totals"]
    assert totals["requests"] == 4 and totals["ok"] == 4
    small, large = ledger["by_model"]["sim-small"], ledger["by_model"]["sim-large"]
    assert small["prompt_tokens"] == a["prompt_tokens"]
    assert small["completion_tokens"] == a["completion_tokens"]
    assert small["cost_usd"] == pytest.approx(
        (a["prompt_tokens"] * 0.15 + a["completion_tokens"] * 0.60) / 1e6
    )
    assert large["cost_usd"] == pytest.approx(
        (b["input_tokens"] * 5 + b["output_tokens"] * 15) / 1e6
    )
    assert ledger["by_model"]["sim-embed"]["prompt_tokens"] == e["usage"]["prompt_tokens"]
    assert totals["cost_usd"] == pytest.approx(
        sum(m["cost_usd"] for m in ledger["by_model"].values())
    )
    entry = ledger["entries"][-1]
    assert entry["format"] == "openai" and entry["stream"] and entry["completed"]
    assert entry["completion_tokens"] == 16
    assert set(entry) >= {
        "id",
        "format",
        "model",
        "stream",
        "prompt_tokens",
        "completion_tokens",
        "status",
        "cost_usd",
        "completed",
    }


def test_custom_prices(sim: SimControl, http: httpx.Client) -> None:
    sim.set_config(prices={"my-model": {"input_per_mtok": 1e6, "output_per_mtok": 0}})
    usage = http.post("/v1/chat/completions", json={**CHAT, "model": "my-model"}).json()["usage"]
    assert sim.ledger()["totals"]["cost_usd"] == pytest.approx(usage["prompt_tokens"])


def test_request_log(sim: SimControl, http: httpx.Client) -> None:
    http.post("/v1/chat/completions?x=1", json=CHAT, headers={"X-Custom": "Yes"})
    http.post(
        "/v1/embeddings",
        content=b"\xff" + b"a" * 70_000,
        headers={"content-type": "application/json"},
    )
    first, second = sim.requests()
    assert first["method"] == "POST" and first["path"] == "/v1/chat/completions"
    assert first["query"] == {"x": "1"} and first["headers"]["x-custom"] == "Yes"
    assert '"sim-small"' in first["body"]
    assert len(second["body"].encode()) <= 64 * 1024 + 3
    for _ in range(205):
        http.get("/v1/models")
        http.post("/v1/chat/completions", json=CHAT)
    assert len(sim.requests()) == 200
