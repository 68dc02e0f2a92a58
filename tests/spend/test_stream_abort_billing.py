"""Streams that end early are charged for what the provider generated.

A real gateway process in front of the simulated provider, generating at a finite rate.
Clients hang up early, midway and near the end, on every wire format the simulator
speaks (OpenAI, Azure, Anthropic, Gemini, Bedrock), with several choices, with tool
calls, and through the /v1/messages front; the upstream cuts streams; deadlines fire.
The ledger (what the gateway charged) must come within 2% of the simulator's own bill,
and every stream that ended early must be charged for some completion tokens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest

from interlock.providers.tokens import count_request_tokens
from interlock.sim import SimControl
from tests.support.databases import db_rows
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 4.0}
# The upstream model of each alias, priced the same on the simulator's side.
UPSTREAM = {
    "chat": "sim-small",
    "azure": "my-gpt-deployment",
    "claude": "sim-claude",
    "gemini": "sim-gemini",
    "bedrock": "anthropic.claude-3-haiku-20240307-v1:0",
}
OUTPUT_TOKENS = 150  # long enough that a token or two of timing per stream is well under 2%
TOKENS_PER_S = 100.0  # slow enough that the simulator's own lag is a small share
PROMPT = "Which signal protects the junction north of the station, and when is it clear?"
SYSTEM = "You are a careful signalling engineer."
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "set_route",
            "description": "Set a route through the interlocking.",
            "parameters": {
                "type": "object",
                "properties": {
                    "from_signal": {"type": "string"},
                    "to_signal": {"type": "string"},
                    "platforms": {"type": "array", "items": {"type": "integer"}},
                    "notes": {"type": "string"},
                },
                "required": ["from_signal", "to_signal", "platforms", "notes"],
            },
        },
    }
]


@dataclass
class Case:
    alias: str
    after: int  # content events the client reads before it hangs up
    front: str = "chat"  # chat: /v1/chat/completions, messages: /v1/messages
    extra: dict[str, Any] = field(default_factory=dict)
    words: int = 0  # filler words: a prompt length of its own (to read the logs by)
    request_id: str = ""
    seen: int = 0


def _body(case: Case) -> dict[str, Any]:
    user = PROMPT + " please" * case.words
    if case.front == "messages":
        return {
            "model": case.alias,
            "max_tokens": 512,
            "stream": True,
            "system": SYSTEM,
            "messages": [{"role": "user", "content": user}],
            **case.extra,
        }
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return {"model": case.alias, "stream": True, "messages": messages, **case.extra}


def _content_events(line: str, front: str) -> int:
    """Content-bearing events in one SSE line, as the client sees them."""
    if front == "messages":
        return int(line.startswith("data: ") and '"content_block_delta"' in line)
    if not line.startswith("data: {"):
        return 0
    return int('"content":"' in line or '"arguments":"' in line or '"content": "' in line)


async def _hang_up_after(c: httpx.AsyncClient, case: Case) -> None:
    path = "/v1/messages" if case.front == "messages" else "/v1/chat/completions"
    async with c.stream("POST", path, json=_body(case), headers=ADMIN) as r:
        assert r.status_code == 200, await r.aread()
        case.request_id = r.headers["x-request-id"]
        async for line in r.aiter_lines():
            case.seen += _content_events(line, case.front)
            if case.seen >= case.after:
                break  # leaving the block closes the connection mid-stream


def _run(gw: GatewayProcess, cases: list[Case]) -> None:
    for i, case in enumerate(cases):
        case.words = i

    async def run() -> None:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as c:
            await asyncio.gather(*(_hang_up_after(c, case) for case in cases))

    asyncio.run(run())


def _ledger(gw: GatewayProcess, ids: set[str]) -> list[dict[str, Any]]:
    return [
        r for r in db_rows(gw.workdir / "state", "SELECT * FROM ledger") if r["request_id"] in ids
    ]


def _settled(gw: GatewayProcess, sim: SimControl, ids: set[str]) -> tuple[list[dict], dict]:
    """Wait until both sides recorded every request (the simulator notes a stream when its
    next write fails, one token interval after the hang-up)."""
    deadline = time.monotonic() + 10
    while True:
        rows, served = _ledger(gw, ids), sim.ledger()
        if len(rows) >= len(ids) and served["totals"]["requests"] >= len(ids):
            return rows, served["totals"]
        assert time.monotonic() < deadline, (len(rows), served["totals"]["requests"], len(ids))
        time.sleep(0.1)


def _cost(rows: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(str(r["cost_usd"])) for r in rows), Decimal(0))


def _tokens(rows: list[dict[str, Any]], kind: str) -> int:
    return sum(r[f"{kind}_tokens"] for r in rows)


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("abort")
    cfg = sim_config(sim_url, tmp / "state")
    for dep in ("sim-small", "azure-chat", "claude", "gemini", "bedrock"):
        cfg["deployments"][dep]["price"] = PRICE
    cfg["spend"]["ledger_flush_interval_s"] = 0.05
    cfg["resilience"]["client_timeout_min_s"] = 0.1
    g = GatewayProcess(cfg, tmp).start()
    yield g
    g.stop()


@pytest.fixture
def slow_sim(sim: SimControl) -> SimControl:
    sim.set_config(
        tokens_per_s=TOKENS_PER_S,
        output_tokens=OUTPUT_TOKENS,
        prices={model: PRICE for model in UPSTREAM.values()},
    )
    return sim


def test_aborted_streams_are_charged_what_the_provider_billed(
    gw: GatewayProcess, slow_sim: SimControl
) -> None:
    tools = {"tools": TOOLS, "tool_choice": "required"}
    cases = [
        Case(alias, after)
        for alias in UPSTREAM
        for after in (1, OUTPUT_TOKENS // 2, OUTPUT_TOKENS - 5)
    ]
    cases += [
        Case("chat", 10, extra={"n": 2}),
        Case("chat", OUTPUT_TOKENS + 20, extra={"n": 2}),  # into the second choice
        *(Case(alias, after, extra=tools) for alias in ("chat", "claude", "bedrock")
          for after in (4, 15)),
        Case("claude", 20, front="messages"),
        Case("chat", 40, front="messages"),
        Case("gemini", 5, front="messages"),
        Case("claude", 8, front="messages", extra={
            "tools": [{"name": "set_route", "input_schema": TOOLS[0]["function"]["parameters"]}],
            "tool_choice": {"type": "any"}}),
    ]  # fmt: skip
    _run(gw, cases)
    rows, served = _settled(gw, slow_sim, {c.request_id for c in cases})
    by_id = {r["request_id"]: r for r in rows}
    for case in cases:
        row = by_id[case.request_id]
        assert case.seen >= 1, case
        if row["outcome"] == "ok":  # near the end the stream may finish first: exact usage
            assert case.after > OUTPUT_TOKENS // 2 and not row["usage_estimated"], (case, row)
            continue
        assert row["outcome"] == "client_closed" and row["usage_estimated"], (case, row)
        assert row["completion_tokens"] > 0, (case, row)
    # The simulator bills no prompt tokens for tool definitions; real providers do, and so
    # does the gateway's estimate where the provider sends no prompt count of its own
    # (Anthropic's message_start does): the provider's bill, as a real one would read.
    definitions = count_request_tokens({"messages": [], "tools": TOOLS}) - 3
    estimated_tools = sum(1 for c in cases if "tools" in c.extra and c.alias != "claude")
    provider = (
        Decimal(str(served["cost_usd"]))
        + Decimal(definitions * estimated_tools * PRICE["input_per_mtok"]) / 1_000_000
    )
    ledger = _cost(rows)
    completion = _tokens(rows, "completion")
    print(f"{len(rows)} streams: ledger ${ledger:.8f}, provider ${provider:.8f} "
          f"({ledger / provider - 1:+.2%}); completion tokens {completion} vs "
          f"{served['completion_tokens']}, prompt tokens {_tokens(rows, 'prompt')} vs "
          f"{served['prompt_tokens']} + {definitions} x {estimated_tools} tool definitions")  # fmt: skip
    assert abs(ledger / provider - 1) <= Decimal("0.02")
    assert abs(completion / served["completion_tokens"] - 1) <= 0.02


def test_cut_and_timed_out_streams_are_charged_what_was_generated(
    gw: GatewayProcess, slow_sim: SimControl
) -> None:
    slow_sim.set_faults([{"type": "cut_stream", "after_chunks": 25, "count": 4}])

    async def stream(c: httpx.AsyncClient, alias: str, headers: dict[str, str]) -> str:
        body = {"model": alias, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
        async with c.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
            lines = [line async for line in r.aiter_lines()]
        assert any('"error"' in line for line in lines), lines[-3:]  # ended by an error event
        return r.headers["x-request-id"]

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as c:
            cut = await asyncio.gather(*(stream(c, a, ADMIN) for a in UPSTREAM if a != "azure"))
            slow_sim.set_faults([])
            late = {**ADMIN, "x-interlock-timeout": "0.1"}  # ~30 of 60 tokens in time
            timed_out = await asyncio.gather(*(stream(c, a, late) for a in ("chat", "claude")))
        return [*cut, *timed_out]

    ids = asyncio.run(run())
    rows, served = _settled(gw, slow_sim, set(ids))
    for row in rows:
        assert row["outcome"] != "ok" and row["usage_estimated"], row
        assert row["completion_tokens"] > 0, row
    ledger, provider = _cost(rows), Decimal(str(served["cost_usd"]))
    print(f"cut/timed out: ledger ${ledger:.8f}, provider ${provider:.8f}; completion tokens "
          f"{_tokens(rows, 'completion')} vs {served['completion_tokens']}")  # fmt: skip
    assert abs(ledger / provider - 1) <= Decimal("0.02")
