"""A budget refusal tells the client what helps (issue 14).

When a smaller ``max_tokens`` would be admitted right now, the 429 says how small and
carries no Retry-After: a client that obeys Retry-After must not stall until the window
resets (a day, for a daily budget) for a request it could send at once. When not even one
output token fits, waiting is all that helps: Retry-After is the window's reset. Both in
the OpenAI and the Anthropic error shapes, over real HTTP against the simulated provider.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
MSG = [{"role": "user", "content": "tell me about trains"}]
LIMIT = "0.001"  # sim-small lists $0.15 / $0.60 per 1M tokens: ~1,600 output tokens fit
FITS = re.compile(r"(max_tokens|max_completion_tokens) up to (\d+) would be admitted")


@pytest.fixture
def gw(sim_url: str, sim: SimControl, tmp_path: Path) -> GatewayProcess:
    g = GatewayProcess(sim_config(sim_url, tmp_path / "state"), tmp_path).start()
    yield g  # type: ignore[misc]
    g.stop()


def test_refusal_names_the_cap_that_fits_and_sets_retry_after_only_when_waiting_helps(
    gw: GatewayProcess, sim: SimControl
) -> None:
    with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
        created = c.post(
            "/admin/keys", json={"user": "u", "budgets": [{"limit_usd": LIMIT, "window": "daily"}]}
        ).json()
        budget_id = created["budgets"][0]["id"]
        key = {"authorization": f"Bearer {created['key']}"}

        def chat(**body: object) -> httpx.Response:
            return c.post(
                "/v1/chat/completions", json={"model": "chat", "messages": MSG, **body}, headers=key
            )

        # Too large an output cap, while a smaller one fits what is left: no Retry-After.
        big = chat(max_tokens=100_000)
        assert big.status_code == 429, big.text
        err = big.json()["error"]
        assert err["code"] == "budget_exceeded" and err["param"] == "max_tokens"
        assert "retry-after" not in big.headers and "retry-after-ms" not in big.headers
        m = FITS.search(err["message"])
        assert m is not None and m.group(1) == "max_tokens", err["message"]
        fits = int(m.group(2))
        assert 1_000 < fits < 100_000

        newer = chat(max_completion_tokens=100_000)
        assert newer.status_code == 429 and "retry-after" not in newer.headers
        m2 = FITS.search(newer.json()["error"]["message"])
        assert m2 is not None and (m2.group(1), int(m2.group(2))) == ("max_completion_tokens", fits)

        # The Anthropic shape says the same.
        anth = c.post(
            "/v1/messages",
            json={"model": "chat", "max_tokens": 100_000, "messages": MSG},
            headers={**key, "anthropic-version": "2023-06-01"},
        )
        assert anth.status_code == 429, anth.text
        body = anth.json()
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        assert f"max_tokens up to {fits} would be admitted" in body["error"]["message"]
        assert "retry-after" not in anth.headers

        # The number is exact: one token more is refused, that many is admitted.
        assert chat(max_tokens=fits + 1).status_code == 429
        assert sim.ledger()["totals"]["requests"] == 0  # nothing refused left the gateway
        ok = chat(max_tokens=fits)
        assert ok.status_code == 200, ok.text

        # A prompt that alone costs more than what is left: nothing smaller fits now, so
        # Retry-After is the window's reset (and the message does not promise a cap).
        huge = [{"role": "user", "content": "train " * 8_000}]
        refused = chat(messages=huge, max_tokens=1)
        assert refused.status_code == 429, refused.text
        assert FITS.search(refused.json()["error"]["message"]) is None
        end = datetime.fromisoformat(c.get(f"/admin/budgets/{budget_id}").json()["window_end"])
        until_reset = (end - datetime.now(UTC)).total_seconds()
        assert abs(int(refused.headers["retry-after"]) - until_reset) < 5
