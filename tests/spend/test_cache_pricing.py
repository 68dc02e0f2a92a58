"""Prompt caching and reasoning tokens priced to the cent, by each provider's published rule.

Every usage block below is shaped as the provider documents it and is first validated
against the provider's own published types (the official SDK, botocore's service model),
then read by the adapter's converter and priced as the gateway prices a deployment
(``resolve_price`` on the packaged table). The expected figure is computed in the test
from the provider's published rule, stated next to it with its source, not from
``cost_of``'s formula.

Artefacts: anthropic 2.17.0 (``anthropic.types.Usage``), openai 3.63.0
(``openai.types.CompletionUsage``), google-genai 3.6.1
(``GenerateContentResponseUsageMetadata``), botocore 1.44.18 (bedrock-runtime 2023-09-30
``TokenUsage``). Prices: the providers' list prices in ``interlock/data/prices.yaml``
(version 2025-12-01), restated below as the published numbers.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic.types
import botocore.loaders
import httpx
import openai.types
import pytest
from google.genai import types as genai_types
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from interlock.cache.tiered import CachedAnswer
from interlock.providers.anthropic_convert import usage_from_anthropic
from interlock.providers.bedrock import usage_from_bedrock
from interlock.providers.gemini import usage_from_gemini
from interlock.settings import DeploymentSettings
from interlock.sim import SimControl
from interlock.spend.bound import bound_request, media_rules, prompt_rate, worst_usd
from interlock.spend.cost import cost_of, worst_case
from interlock.spend.ledger import LedgerRecord
from interlock.spend.prices import Price, PriceTable, UnknownPricePolicy, resolve_price
from interlock.spend.reports import Totals, tokens_cost, totals
from interlock.storage.ledger import LEDGER_COLUMNS, LedgerStore
from interlock.types import Endpoint, Usage
from tests.support.databases import db_rows
from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

D = Decimal
MTOK = D(1_000_000)
CENT = D("0.01")
TABLE = PriceTable.load()
BLOCK = UnknownPricePolicy("block")
ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


def price_of(model: str, kind: str, **price: Any) -> Price:
    """The price the gateway charges a deployment of ``model`` on ``kind``."""
    settings = DeploymentSettings.model_validate(
        {"provider": "p", "model": model, **({"price": price} if price else {})}
    )
    decision = resolve_price(settings, kind, TABLE, BLOCK)
    assert decision.price is not None, decision.warning
    return decision.price


def to_cent(amount: Decimal) -> Decimal:
    return amount.quantize(CENT)


def assert_exact(got: Decimal, expected: Decimal) -> None:
    # Equal to the cent (the bar) and, the rates being exact, to 1e-10 USD.
    assert to_cent(got) == to_cent(expected)
    assert got == expected.quantize(D("1e-10")), (got, expected)


# -- Anthropic ---------------------------------------------------------------------------


def anthropic_usage(**fields: Any) -> dict[str, Any]:
    """A usage block checked against the anthropic SDK's ``Usage`` type (extra keys there
    are allowed by the SDK, so the names are checked against its fields as well)."""
    usage = anthropic.types.Usage.model_validate(fields)
    assert set(fields) <= set(anthropic.types.Usage.model_fields)
    cache = fields.get("cache_creation") or {}
    assert set(cache) <= set(anthropic.types.CacheCreation.model_fields)
    assert usage.input_tokens == fields["input_tokens"]
    return fields


# https://docs.claude.com/en/docs/build-with-claude/prompt-caching#pricing : 5-minute cache
# writes cost 1.25x the base input price, 1-hour writes 2x, cache reads 0.1x. Claude Sonnet
# 4.5 (https://docs.claude.com/en/docs/about-claude/pricing): base input $3 / MTok, output
# $15 / MTok. input_tokens counts only the tokens after the last cache breakpoint; the
# total input is input_tokens + cache_creation_input_tokens + cache_read_input_tokens, and
# cache_creation splits the writes by TTL. output_tokens includes thinking and is the
# billed total (output_tokens_details.thinking_tokens is a read-only part of it).
SONNET_IN, SONNET_OUT = D(3), D(15)


def anthropic_rule(fresh: int, read: int, w5: int, w1h: int, out: int) -> Decimal:
    return (
        fresh * SONNET_IN
        + read * SONNET_IN * D("0.1")
        + w5 * SONNET_IN * D("1.25")
        + w1h * SONNET_IN * 2
        + out * SONNET_OUT
    ) / MTOK


@pytest.mark.parametrize(
    ("fresh", "read", "w5", "w1h", "out", "thinking"),
    [
        (50, 0, 120_000, 0, 503, 0),  # first call: a 5-minute write
        (50, 0, 0, 120_000, 503, 0),  # a 1-hour write
        (50, 120_000, 0, 0, 503, 0),  # the repeat: a cache read
        (1_234, 90_000, 40_000, 30_000, 2_048, 1_500),  # both TTLs, a read, thinking
    ],
)
def test_anthropic_cache_writes_and_reads(
    fresh: int, read: int, w5: int, w1h: int, out: int, thinking: int
) -> None:
    block = anthropic_usage(
        input_tokens=fresh,
        cache_creation_input_tokens=w5 + w1h,
        cache_read_input_tokens=read,
        cache_creation={"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1h},
        output_tokens=out,
        **({"output_tokens_details": {"thinking_tokens": thinking}} if thinking else {}),
        service_tier="standard",
    )
    usage = usage_from_anthropic(block)
    assert usage is not None
    assert usage.prompt_tokens == fresh + read + w5 + w1h
    assert (usage.cached_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == (
        read,
        w5,
        w1h,
    )
    assert usage.completion_tokens == out and usage.reasoning_tokens == thinking
    price = price_of("claude-sonnet-4-5-20250929", "anthropic")
    assert_exact(cost_of(usage, price), anthropic_rule(fresh, read, w5, w1h, out))


def test_anthropic_usage_without_the_ttl_split_is_five_minute_writes() -> None:
    """Older answers (and the API before 1-hour caching) carry only
    cache_creation_input_tokens: writes at the default TTL, 5 minutes."""
    block = anthropic_usage(
        input_tokens=10, cache_creation_input_tokens=2_000, cache_read_input_tokens=0,
        output_tokens=20,
    )  # fmt: skip
    usage = usage_from_anthropic(block)
    assert usage is not None and usage.cache_write_tokens == 2_000
    price = price_of("claude-sonnet-4-5", "anthropic")
    assert_exact(cost_of(usage, price), anthropic_rule(10, 0, 2_000, 0, 20))


def test_a_cent_of_difference_is_visible() -> None:
    """The figures are large enough that billing the writes at the input rate would be
    off by more than a cent: the tests above cannot pass with the old formula."""
    w5 = 120_000
    write_premium = w5 * SONNET_IN * D("0.25") / MTOK  # what billing at input would miss
    assert write_premium >= CENT * 9


# -- Bedrock (Claude) --------------------------------------------------------------------

_BEDROCK = botocore.loaders.Loader().load_service_model("bedrock-runtime", "service-2")


def bedrock_usage(**fields: Any) -> dict[str, Any]:
    """A ConverseResponse usage block checked against botocore's TokenUsage shape."""
    shapes = _BEDROCK["shapes"]
    shape = shapes["TokenUsage"]
    assert set(shape["required"]) <= set(fields)
    assert set(fields) <= set(shape["members"])
    for detail in fields.get("cacheDetails", []):
        assert set(detail) == set(shapes["CacheDetail"]["members"])
        assert detail["ttl"] in shapes["CacheTTL"]["enum"]
    return fields


# https://aws.amazon.com/bedrock/pricing/ (Anthropic, on-demand, us-east-1): Claude Sonnet
# 4.5 $3 input, $15 output, $3.75 per MTok cache write (5 minutes), $0.30 cache read, and
# 1-hour writes at 2x input ($6) as on Anthropic's API. inputTokens excludes the cache
# reads and writes (cacheReadInputTokens / cacheWriteInputTokens; cacheDetails splits the
# writes by TTL, 1h first).
def test_bedrock_claude_cache_writes_and_reads() -> None:
    block = bedrock_usage(
        inputTokens=800,
        outputTokens=1_200,
        totalTokens=800 + 60_000 + 25_000 + 1_200,
        cacheReadInputTokens=25_000,
        cacheWriteInputTokens=60_000,
    )
    usage = usage_from_bedrock(block)
    assert usage is not None
    assert (usage.prompt_tokens, usage.cached_tokens) == (800 + 60_000 + 25_000, 25_000)
    assert usage.cache_write_tokens + usage.cache_write_1h_tokens == 60_000
    price = price_of("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock")
    expected = (800 * D(3) + 25_000 * D("0.30") + 60_000 * D("3.75") + 1_200 * D(15)) / MTOK
    assert_exact(cost_of(usage, price), expected)


def test_bedrock_claude_one_hour_writes_from_cache_details() -> None:
    block = bedrock_usage(
        inputTokens=100,
        outputTokens=50,
        totalTokens=100 + 50_000 + 50,
        cacheReadInputTokens=0,
        cacheWriteInputTokens=50_000,
        cacheDetails=[{"ttl": "1h", "inputTokens": 30_000}, {"ttl": "5m", "inputTokens": 20_000}],
    )
    usage = usage_from_bedrock(block)
    assert usage is not None
    assert (usage.cache_write_tokens, usage.cache_write_1h_tokens) == (20_000, 30_000)
    price = price_of("anthropic.claude-sonnet-4-5-20250929-v1:0", "bedrock")
    expected = (100 * D(3) + 20_000 * D("3.75") + 30_000 * D(6) + 50 * D(15)) / MTOK
    assert_exact(cost_of(usage, price), expected)


# -- OpenAI ------------------------------------------------------------------------------


def openai_usage(**fields: Any) -> dict[str, Any]:
    parsed = openai.types.CompletionUsage.model_validate(fields)
    assert parsed.total_tokens == parsed.prompt_tokens + parsed.completion_tokens
    return fields


# https://platform.openai.com/docs/pricing (standard tier): gpt-4.1 $2.00 input, $0.50
# cached input, $8.00 output; o3 $2.00 / $0.50 / $8.00; gpt-5 $1.25 / $0.125 / $10.00.
# prompt_tokens includes prompt_tokens_details.cached_tokens (billed at the cached rate;
# OpenAI has no cache-write premium), and completion_tokens includes
# completion_tokens_details.reasoning_tokens, billed as output tokens
# (https://platform.openai.com/docs/guides/reasoning).
@pytest.mark.parametrize(
    ("model", "rates", "prompt", "cached", "completion", "reasoning"),
    [
        ("gpt-4.1-2025-04-14", ("2.00", "0.50", "8.00"), 60_000, 51_200, 700, 0),
        ("o3-2025-04-16", ("2.00", "0.50", "8.00"), 30_000, 10_240, 9_000, 8_192),
        ("gpt-5", ("1.25", "0.125", "10.00"), 200_000, 180_224, 25_000, 20_000),
    ],
)
def test_openai_cached_reads_and_reasoning(
    model: str, rates: tuple[str, str, str], prompt: int, cached: int, completion: int,
    reasoning: int,
) -> None:  # fmt: skip
    block = openai_usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details={"cached_tokens": cached, "audio_tokens": 0},
        completion_tokens_details={"reasoning_tokens": reasoning, "audio_tokens": 0,
                                   "accepted_prediction_tokens": 0,
                                   "rejected_prediction_tokens": 0},
    )  # fmt: skip
    usage = Usage.from_openai(block)
    assert usage is not None and usage.reasoning_tokens == reasoning
    inp, cached_rate, out = (D(r) for r in rates)
    expected = ((prompt - cached) * inp + cached * cached_rate + completion * out) / MTOK
    assert_exact(cost_of(usage, price_of(model, "openai")), expected)


# -- Gemini ------------------------------------------------------------------------------


def gemini_usage(**fields: Any) -> dict[str, Any]:
    genai_types.GenerateContentResponseUsageMetadata.model_validate(fields)
    return fields


# https://ai.google.dev/gemini-api/docs/pricing (paid tier): gemini-2.5-flash $0.30 input
# (text/image/video), $2.50 output "including thinking tokens", context caching $0.03 per
# MTok read (the storage price per hour of an explicit cache is not per request and is out
# of scope). promptTokenCount includes cachedContentTokenCount; thoughtsTokenCount is NOT
# part of candidatesTokenCount (google-genai GenerateContentResponseUsageMetadata), so the
# billed output is candidates + thoughts.
def test_gemini_cached_reads_and_thinking() -> None:
    block = gemini_usage(
        promptTokenCount=150_000,
        cachedContentTokenCount=131_072,
        candidatesTokenCount=1_800,
        thoughtsTokenCount=6_400,
        totalTokenCount=150_000 + 1_800 + 6_400,
    )
    usage = usage_from_gemini(block)
    assert usage is not None
    assert usage.completion_tokens == 1_800 + 6_400 and usage.reasoning_tokens == 6_400
    expected = (
        (150_000 - 131_072) * D("0.30") + 131_072 * D("0.03") + (1_800 + 6_400) * D("2.50")
    ) / MTOK
    assert_exact(cost_of(usage, price_of("models/gemini-2.5-flash", "gemini")), expected)


# -- defaults and bad numbers ----------------------------------------------------------


def test_a_configured_claude_price_without_write_rates_gets_anthropics_multipliers() -> None:
    for model, kind in (
        ("claude-sonnet-4-5", "anthropic"),
        ("anthropic.claude-haiku-4-5-20251001-v1:0", "bedrock"),
        ("claude-next-unlisted", "anthropic"),
        ("claude-next-unlisted", "vertex"),
    ):
        p = price_of(model, kind, input_per_mtok=4.0, output_per_mtok=20.0)
        assert (p.cache_write, p.cache_write_1h) == (D("5.000"), D(8)), model
        assert p.cached_input == D(4)  # reads: no documented default, so never cheaper
    explicit = price_of("claude-sonnet-4-5", "anthropic", input_per_mtok=4.0,
                        output_per_mtok=20.0, cache_write_per_mtok=4.5)  # fmt: skip
    assert (explicit.cache_write, explicit.cache_write_1h) == (D("4.5"), D(8))


def test_a_missing_write_rate_is_never_cheaper_than_input() -> None:
    p = price_of("my-model", "openai_compatible", input_per_mtok=2.0, output_per_mtok=6.0,
                 cached_input_per_mtok=0.5)  # fmt: skip
    assert (p.cache_write, p.cache_write_1h) == (D(2), D(2))
    assert Price(input=D(1), output=D(2), cache_write=D(3)).cache_write_1h == D(3)
    assert Price(input=D(1), output=D(2)).cache_write_1h == D(1)
    # OpenAI's table entries: no write premium, writes at input.
    gpt = price_of("gpt-4o", "openai")
    assert (gpt.cache_write, gpt.cache_write_1h) == (gpt.input, gpt.input)
    usage = Usage(prompt_tokens=1000, cache_write_tokens=400, cache_write_1h_tokens=600)
    assert cost_of(usage, p) == cost_of(Usage(prompt_tokens=1000), p)


def test_bad_upstream_numbers_never_inflate_or_go_negative() -> None:
    p = price_of("claude-sonnet-4-5", "anthropic")
    full = anthropic_rule(0, 0, 0, 1_000, 0)  # the whole prompt as 1-hour writes: the most
    for usage in (
        Usage(prompt_tokens=1_000, cache_write_1h_tokens=5_000),
        Usage(prompt_tokens=1_000, cached_tokens=-50, cache_write_1h_tokens=1_200),
        Usage(prompt_tokens=1_000, cache_write_tokens=10**9, cache_write_1h_tokens=10**9),
        Usage(prompt_tokens=-5, cache_write_tokens=100, completion_tokens=-3),
    ):
        cost = cost_of(usage, p)
        assert D(0) <= cost <= full, usage
    # Reads are taken first: a block that over-reports only reads can never cost more
    # than the whole prompt at the read rate.
    assert cost_of(Usage(prompt_tokens=1000, cached_tokens=3000), p) == anthropic_rule(
        0, 1000, 0, 0, 0
    )


# -- the worst case covers cache writes ---------------------------------------------------


def test_worst_case_covers_the_one_hour_write_rate() -> None:
    p = price_of("claude-opus-4-5", "anthropic")
    assert worst_case(1000, 0, p) == 1000 * p.cache_write_1h / MTOK
    plain = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    one_hour = {**plain, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]}  # fmt: skip
    b_plain, b_hour = bound_request(Endpoint.CHAT, plain), bound_request(Endpoint.CHAT, one_hour)
    assert prompt_rate(p, b_plain) == p.cache_write and prompt_rate(p, b_hour) == p.cache_write_1h
    rules = media_rules("anthropic", "anthropic", "claude-opus-4-5")
    # Billed with the whole bounded prompt as 1-hour writes and every output token:
    billed = cost_of(
        Usage(prompt_tokens=b_hour.prompt_tokens(rules), completion_tokens=10,
              cache_write_1h_tokens=b_hour.prompt_tokens(rules)),
        p,
    )  # fmt: skip
    assert billed <= worst_usd(b_hour, rules, p, 10)
    # A tools entry (Anthropic tool cache_control) asking for 1 hour counts too.
    tools = {**plain, "tools": [{"type": "function", "function": {"name": "f"},
                                 "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}  # fmt: skip
    assert bound_request(Endpoint.CHAT, tools).cache_1h


# -- ledger and reports ---------------------------------------------------------------


async def test_ledger_rows_and_report_totals_carry_cache_and_reasoning_tokens(
    engine: AsyncEngine,
) -> None:
    store = LedgerStore(engine)
    at = datetime.now(UTC)
    a = LedgerRecord(request_id="a", endpoint="chat", status=200, outcome="ok", created_at=at,
                     prompt_tokens=100_000, cached_tokens=10_000, cache_write_tokens=30_000,
                     cache_write_1h_tokens=50_000, completion_tokens=900, reasoning_tokens=400,
                     cost_usd=D("0.25"))  # fmt: skip
    b = LedgerRecord(request_id="b", endpoint="chat", status=200, outcome="ok", created_at=at,
                     prompt_tokens=10, completion_tokens=5, cost_usd=D("0.01"))  # fmt: skip
    # A row spooled by the version before migration 0011 (27 columns): writes read 0.
    old = LedgerRecord(request_id="old", endpoint="chat", status=200, outcome="ok",
                       created_at=at, prompt_tokens=7, cached_tokens=2, cost_usd=D("0.02"))  # fmt: skip
    old_row = old.to_row()[: LEDGER_COLUMNS.index("cache_write_tokens")]
    await store.insert_rows([a.to_row(), b.to_row(), old_row])
    t = await totals(engine, datetime(2000, 1, 1, tzinfo=UTC))
    assert (t.requests, t.prompt_tokens, t.completion_tokens) == (3, 100_017, 905)
    assert (t.cached_tokens, t.cache_write_tokens, t.cache_write_1h_tokens) == (10_002, 30_000,
                                                                                50_000)  # fmt: skip
    assert t.reasoning_tokens == 400 and t.cost_usd == D("0.28")
    # What the same tokens cost at Claude Sonnet 4.5's list price (the cheaper-tier what-if).
    p = price_of("claude-sonnet-4-5", "anthropic")
    summed = tokens_cost(p, t.requests, t.prompt_tokens, t.cached_tokens, t.completion_tokens,
                         t.cache_write_tokens, t.cache_write_1h_tokens)  # fmt: skip
    fresh = 100_017 - 10_002 - 30_000 - 50_000
    assert summed == anthropic_rule(fresh, 10_002, 30_000, 50_000, 905)


# -- through a real gateway: the ledger row of an Anthropic call with cache markers --------

# The Claude Sonnet 4.5 rates, configured on a deployment of the simulated Anthropic
# provider (the simulator's model ids are not Claude ids, so the rates are stated).
SONNET_PRICE = {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cached_input_per_mtok": 0.3,
                "cache_write_per_mtok": 3.75, "cache_write_1h_per_mtok": 6.0}  # fmt: skip
# Two cacheable prefixes, each above Anthropic's 1,024-token minimum for Sonnet; the 1-hour
# entry first (Anthropic: longer TTLs must come before shorter ones).
LONG_SYSTEM = " ".join(f"rule {i}: timetables are published weekly." for i in range(400))
LONG_CONTEXT = " ".join(f"station {i} has platform {i % 9} and a cafe." for i in range(400))


def _cache_request(nonce: str) -> dict[str, Any]:
    """Prefixes no earlier request wrote (the simulator remembers prefixes per model for
    their TTL, like Anthropic): ``nonce`` makes them new."""
    return {
        "model": "claude-cached",
        "max_tokens": 32,
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": f"{nonce} {LONG_SYSTEM}",
             "cache_control": {"type": "ephemeral", "ttl": "1h"}}]},
            {"role": "user", "content": [
                {"type": "text", "text": LONG_CONTEXT, "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Which platform is station 12 on?"}]},
        ],
    }  # fmt: skip


def test_anthropic_cache_writes_reach_the_ledger_priced_to_the_cent(
    sim_url: str, sim: SimControl, tmp_path: Path
) -> None:
    cfg = sim_config(sim_url, tmp_path / "state")
    cfg["deployments"]["claude-cached"] = {"provider": "sim-anthropic", "model": "sim-claude",
                                           "price": SONNET_PRICE}  # fmt: skip
    cfg["models"]["claude-cached"] = {"deployments": ["claude-cached"]}
    gw = GatewayProcess(cfg, tmp_path).start()
    try:
        answers = []
        body = _cache_request(uuid.uuid4().hex)
        with httpx.Client(base_url=gw.url, headers=ADMIN, timeout=30) as c:
            for _ in range(2):  # the first call writes the prefixes, the repeat reads them
                r = c.post("/v1/chat/completions", json=body)
                assert r.status_code == 200, r.text
                answers.append(r)
            # Thinking (reasoning_effort -> Anthropic thinking): its tokens are part of
            # output_tokens, reported as reasoning_tokens and billed once, at output.
            think = {"model": "claude-cached", "max_tokens": 2000, "reasoning_effort": "low",
                     "messages": [{"role": "user", "content": "explain timetables at length"}]}  # fmt: skip
            r = c.post("/v1/chat/completions", json=think)
            assert r.status_code == 200, r.text
            answers.append(r)
        sent = [json.loads(q["body"]) for q in sim.requests()]
        assert len(sent) == 3 and "1h" in json.dumps(sent[0]["system"])  # the TTL went up
        ids = [a.headers["x-request-id"] for a in answers]
        deadline = time.monotonic() + 10
        while len(rows := db_rows(tmp_path / "state", "SELECT * FROM ledger")) < 3:
            assert time.monotonic() < deadline, rows
            time.sleep(0.1)
        report = asyncio.run(_report_totals(tmp_path / "state" / "interlock.db"))
    finally:
        gw.stop()
    by_id = {row["request_id"]: row for row in rows}
    served = sim.ledger()["totals"]
    assert sum(row["prompt_tokens"] for row in rows) == served["prompt_tokens"]
    for answer, rid in zip(answers, ids, strict=True):
        row, usage = by_id[rid], answer.json()["usage"]
        assert row["prompt_tokens"] == usage["prompt_tokens"]
        assert row["completion_tokens"] == usage["completion_tokens"]
        assert row["reasoning_tokens"] == (usage.get("completion_tokens_details") or {}).get(
            "reasoning_tokens", 0
        )
        assert row["cached_tokens"] == (usage.get("prompt_tokens_details") or {}).get(
            "cached_tokens", 0
        )
        fresh = (row["prompt_tokens"] - row["cached_tokens"] - row["cache_write_tokens"]
                 - row["cache_write_1h_tokens"])  # fmt: skip
        assert fresh >= 0
        expected = anthropic_rule(fresh, row["cached_tokens"], row["cache_write_tokens"],
                                  row["cache_write_1h_tokens"], row["completion_tokens"])  # fmt: skip
        assert_exact(D(str(row["cost_usd"])), expected)
        assert D(answer.headers["x-interlock-cost-usd"]) == expected
    first, repeat = by_id[ids[0]], by_id[ids[1]]
    # Both TTLs were written by the first call, as the markers asked, and read by the
    # repeat (the costs above are compared to 1e-10 USD, so pricing a write at the input
    # rate, or a read at it, fails them).
    assert first["cache_write_tokens"] > 0 and first["cache_write_1h_tokens"] > 0, first
    assert first["cached_tokens"] == 0 and repeat["cached_tokens"] > 0, repeat
    assert repeat["cache_write_tokens"] == repeat["cache_write_1h_tokens"] == 0, repeat
    assert D(str(first["cost_usd"])) > D(str(repeat["cost_usd"]))
    thought = by_id[ids[2]]
    assert 0 < thought["reasoning_tokens"] < thought["completion_tokens"], thought
    # The report over the gateway's own database shows the same details.
    assert report.requests == 3 and report.reasoning_tokens == thought["reasoning_tokens"]
    assert (report.cached_tokens, report.cache_write_tokens, report.cache_write_1h_tokens) == (
        repeat["cached_tokens"], first["cache_write_tokens"], first["cache_write_1h_tokens"])  # fmt: skip
    assert report.cost_usd == sum((D(str(row["cost_usd"])) for row in rows), D(0))


async def _report_totals(db: Path) -> Totals:
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
    try:
        return await totals(engine, datetime(2000, 1, 1, tzinfo=UTC))
    finally:
        await engine.dispose()


def test_the_app_cache_keeps_cache_writes_and_reads_entries_stored_before_them() -> None:
    usage = Usage(prompt_tokens=900, completion_tokens=40, cached_tokens=100,
                  reasoning_tokens=12, cache_write_tokens=300, cache_write_1h_tokens=200)  # fmt: skip
    entry = CachedAnswer(b"{}", usage, "d", "anthropic", D("0.0123"), 1.0, 2.0)
    back = CachedAnswer.decode(entry.encode())
    assert back is not None and back.usage == usage
    # An entry written by the version before (a 4-number usage) still reads, writes 0.
    old = json.loads(entry.encode())
    old["usage"] = old["usage"][:4]
    back = CachedAnswer.decode(json.dumps(old).encode())
    assert back is not None and back.usage == Usage(900, 40, 100, 12)


def test_every_claude_entry_lists_anthropics_cache_rates() -> None:
    """The table against the published multipliers (reads 0.1x, 5-minute writes 1.25x,
    1-hour writes 2x input); Claude 3 Haiku's list rounds its read and 5-minute write to
    $0.03 and $0.30 (input $0.25)."""
    claude = [e for e in TABLE if e.provider == "anthropic"]
    assert len(claude) >= 10
    for e in claude:
        p = e.price
        assert p.cache_write_1h == 2 * p.input, e.id
        if e.id == "claude-3-haiku":
            assert (p.cached_input, p.cache_write) == (D("0.03"), D("0.30"))
            continue
        assert (p.cached_input, p.cache_write) == (p.input / 10, p.input * D("1.25")), e.id
