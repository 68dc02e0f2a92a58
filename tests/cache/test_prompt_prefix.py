"""Prefix matching for providers' prompt caches: follow-up turns go back to the
deployment that served the conversation so far (affinity), and Anthropic deployments
get cache_control markers on the stable prefix."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest

from interlock.providers.anthropic import add_cache_markers, to_anthropic
from interlock.routing.affinity import PromptAffinity
from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
LONG_SYSTEM = "You are the support assistant of a railway signalling vendor. " * 20


def test_markers_cover_tools_system_and_the_previous_turn() -> None:
    body = to_anthropic(
        {
            "messages": [
                {"role": "system", "content": LONG_SYSTEM},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "follow-up"},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        },
        "claude",
    )
    add_cache_markers(body)
    eph = {"type": "ephemeral"}
    assert body["tools"][-1]["cache_control"] == eph
    assert body["system"][-1]["cache_control"] == eph
    assert body["messages"][-2]["content"][-1]["cache_control"] == eph
    assert "cache_control" not in json.dumps(body["messages"][-1])  # the new turn: not cached


def test_a_client_s_own_markers_are_left_alone() -> None:
    body = {
        "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ],
    }
    before = json.dumps(body)
    add_cache_markers(body)
    assert json.dumps(body) == before


def test_affinity_remembers_whole_prompts_and_finds_extensions() -> None:
    aff = PromptAffinity(max_entries=2)
    first = {"messages": [{"role": "user", "content": "x" * 400}]}
    d1 = PromptAffinity.digests("chat", first, min_tokens=50)
    assert aff.preferred(d1) is None
    aff.served(d1, "dep-b")
    follow = {
        "messages": [
            *first["messages"],
            {"role": "assistant", "content": "y"},
            {"role": "user", "content": "z"},
        ]
    }
    assert aff.preferred(PromptAffinity.digests("chat", follow, 50)) == "dep-b"
    assert aff.preferred(PromptAffinity.digests("other-model", follow, 50)) is None
    # Too short a prefix to be cached by a provider: no affinity.
    assert (
        PromptAffinity.digests("chat", {"messages": [{"role": "user", "content": "hi"}]}, 50) == []
    )


@pytest.fixture
def gw(sim_url: str, tmp_path: Path) -> GatewayProcess:
    cfg = sim_config(sim_url, tmp_path / "state")
    cfg["models"]["sticky"] = {
        "deployments": ["sim-small", "sim-medium"],
        "strategy": "weighted",
        "prompt_affinity": True,
        "prompt_affinity_min_tokens": 100,
    }
    cfg["deployments"]["claude"]["prompt_caching"] = True
    g = GatewayProcess(cfg, tmp_path).start()
    yield g  # type: ignore[misc]
    g.stop()


def test_follow_up_turns_return_to_the_same_deployment(gw: GatewayProcess) -> None:
    agree = Counter()
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
        for conv in range(12):
            msgs = [
                {"role": "system", "content": LONG_SYSTEM},
                {"role": "user", "content": f"conversation {conv}: hello"},
            ]
            r = c.post("/v1/chat/completions", json={"model": "sticky", "messages": msgs})
            first = r.headers["x-interlock-deployment"]
            for turn in range(3):
                msgs += [
                    r.json()["choices"][0]["message"],
                    {"role": "user", "content": f"turn {turn}"},
                ]
                r = c.post("/v1/chat/completions", json={"model": "sticky", "messages": msgs})
                agree[r.headers["x-interlock-deployment"] == first] += 1
    # Weighted random would agree about half the time; affinity always.
    assert agree == {True: 36}


def test_anthropic_deployment_gets_markers(gw: GatewayProcess, sim: SimControl) -> None:
    msgs = [
        {"role": "system", "content": LONG_SYSTEM},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "q2"},
    ]
    r = httpx.post(
        f"{gw.url}/v1/chat/completions",
        headers=ADMIN,
        timeout=30,
        json={"model": "claude", "messages": msgs},
    )
    assert r.status_code == 200, r.text
    sent = [q for q in sim.requests() if q["path"] == "/v1/messages"][-1]
    body = json.loads(sent["body"])
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-2]["content"][-1]["cache_control"] == {"type": "ephemeral"}
