"""The semantic cache over real HTTP, with the local embedding model in its own process.

A request worded differently is answered from the cache (``hit-semantic``, $0, the
saving in the ledger); a request that differs in a number or a named entity is not;
no hit, exact or semantic, ever crosses tenants; streams replay; and with the embedder
gone every request is still served, as a miss.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from interlock.localembed.model import available
from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not available() and os.environ.get("CI") != "true",
        reason="interlock[local] (the local embedding model) is not installed",
    ),
]


@pytest.fixture(scope="module")
def gw(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("semantic")
    cfg = sim_config(sim_url, tmp / "state", cache={"semantic": {"enabled": True}})
    g = GatewayProcess(cfg, tmp).start(timeout=180)
    yield g
    g.stop()


def ask(c: httpx.Client, key: dict[str, str], text: str, **extra: object) -> httpx.Response:
    body = {"model": "chat", "temperature": 0, "messages": [{"role": "user", "content": text}]}
    r = c.post("/v1/chat/completions", headers=key, json={**body, **extra})
    assert r.status_code == 200, r.text
    return r


def answer(r: httpx.Response) -> str:
    return str(r.json()["choices"][0]["message"]["content"])


def new_key(c: httpx.Client, team: str) -> dict[str, str]:
    key = c.post("/admin/keys", headers=ADMIN, json={"team": team}).json()["key"]
    return {"authorization": f"Bearer {key}"}


def test_rewording_is_a_free_semantic_hit(gw: GatewayProcess, sim: SimControl) -> None:
    with httpx.Client(base_url=gw.url, timeout=60) as c:
        alpha = new_key(c, "alpha")
        first = ask(c, alpha, "What is the capital city of Australia?")
        assert first.headers["x-interlock-cache"] == "miss"
        time.sleep(0.3)  # the answer is stored off the request path
        served = sim.ledger()["totals"]["requests"]
        again = ask(c, alpha, "what is the capital city of australia")
        assert again.headers["x-interlock-cache"] == "hit-semantic"
        assert answer(again) == answer(first)
        assert float(again.headers["x-interlock-cost-usd"]) == 0
        assert sim.ledger()["totals"]["requests"] == served  # the provider was not asked
        # Streamed, the same hit replays as a stream.
        with c.stream(
            "POST",
            "/v1/chat/completions",
            headers=alpha,
            json={
                "model": "chat",
                "temperature": 0,
                "stream": True,
                "messages": [{"role": "user", "content": "What's the capital city of Australia?"}],
            },
        ) as s:
            assert s.headers["x-interlock-cache"] == "hit-semantic"
            assert any('"content"' in line for line in s.iter_lines())
    deadline = time.monotonic() + 10
    while True:
        db = sqlite3.connect(gw.workdir / "state" / "interlock.db")
        rows = db.execute(
            "SELECT cost_usd, saved_usd FROM ledger WHERE cache = 'hit-semantic'"
        ).fetchall()
        db.close()
        if rows:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert float(rows[0][0]) == 0 and float(rows[0][1]) == float(
        first.headers["x-interlock-cost-usd"]
    )


@pytest.mark.parametrize(
    ("cached", "new"),
    [
        ("Give me 3 tips for sleeping better.", "Give me 5 tips for sleeping better."),
        ("What is the population of Sweden?", "What is the population of Norway?"),
        ("Is coffee bad for your heart?", "Is coffee not bad for your heart?"),
    ],
)
def test_a_different_question_is_not_served_the_cached_answer(
    gw: GatewayProcess, cached: str, new: str
) -> None:
    with httpx.Client(base_url=gw.url, timeout=60) as c:
        key = new_key(c, "beta-" + cached[:8])
        ask(c, key, cached)
        time.sleep(0.3)
        assert ask(c, key, new).headers["x-interlock-cache"] == "miss"


def test_no_hit_crosses_tenants(gw: GatewayProcess) -> None:
    with httpx.Client(base_url=gw.url, timeout=60) as c:
        red, blue = new_key(c, "red"), new_key(c, "blue")
        ask(c, red, "How many legs does a spider have?")
        time.sleep(0.3)
        assert (
            ask(c, red, "how many legs does a spider have").headers["x-interlock-cache"]
            == "hit-semantic"
        )
        # Another tenant's reworded and identical requests reach the provider.
        blue, purple = new_key(c, "blue"), new_key(c, "purple")
        assert (
            ask(c, blue, "how many legs does a spider have").headers["x-interlock-cache"] == "miss"
        )
        assert (
            ask(c, purple, "How many legs does a spider have?").headers["x-interlock-cache"]
            == "miss"
        )


def test_without_the_embedder_requests_are_plain_misses(gw: GatewayProcess) -> None:
    """Last in this module: it kills the local embedding process."""
    assert gw.proc is not None
    kids = subprocess.run(
        ["pgrep", "-f", "interlock.localembed"], capture_output=True, text=True
    ).stdout.split()
    mine = [
        int(k) for k in kids if Path(f"/proc/{k}/stat").read_text().split()[3] == str(gw.proc.pid)
    ]
    assert mine, "the local embedding process was not found"
    for pid in mine:
        os.kill(pid, signal.SIGKILL)
    with httpx.Client(base_url=gw.url, timeout=60) as c:
        key = new_key(c, "green")
        for text in ("Name a prime number.", "name a prime number"):
            t0 = time.monotonic()
            r = ask(c, key, text)
            assert r.headers["x-interlock-cache"] == "miss"
            assert time.monotonic() - t0 < 5
