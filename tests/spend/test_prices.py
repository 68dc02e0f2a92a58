"""The price table, id normalisation and price resolution (pure, no I/O but the data file)."""

from __future__ import annotations

import re
from decimal import Decimal
from importlib import resources
from pathlib import Path

import pytest
import yaml

from interlock.settings import DeploymentSettings, PriceSettings
from interlock.sim.config import DEFAULT_PRICES
from interlock.spend import (
    Price,
    PriceTable,
    PriceTableError,
    UnknownPricePolicy,
    gpu_hour_price,
    resolve_price,
    to_decimal,
)

D = Decimal


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


def _raw() -> dict[str, object]:
    text = resources.files("interlock").joinpath("data/prices.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


# ── the packaged table ────────────────────────────────────────────────────────────────


def test_table_loads_with_a_date_version(table: PriceTable) -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", table.version)
    assert len(table) >= 40


REQUIRED = [
    *("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3"),
    *("o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano"),
    *("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"),
    *("claude-opus-4-1", "claude-opus-4", "claude-sonnet-4-5", "claude-sonnet-4"),
    *("claude-3-7-sonnet", "claude-3-5-sonnet", "claude-haiku-4-5", "claude-3-5-haiku"),
    "claude-3-haiku",
    *("gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash"),
    *("gemini-2.0-flash-lite", "text-embedding-004"),
    *("nova-pro", "nova-lite", "nova-micro", "titan-embed-text-v2"),
    *("llama3-1-70b", "llama3-1-8b", "mistral-large"),
    *("sim-small", "sim-medium", "sim-large", "sim-embed", "sim-claude", "sim-gemini"),
]


@pytest.mark.parametrize("model", REQUIRED)
def test_required_models_are_listed(table: PriceTable, model: str) -> None:
    assert model in table


def test_every_entry_has_a_positive_input_price(table: PriceTable) -> None:
    for entry in table:
        p = entry.price
        assert p.input > 0, entry.id
        assert p.source == "table"
        assert D(0) <= p.cached_input <= p.input, entry.id
        is_embedding = "embed" in entry.id
        if is_embedding:
            assert p.output == 0, entry.id
        else:
            assert p.output > 0, entry.id


def test_prices_in_the_file_are_quoted_strings() -> None:
    models = _raw()["models"]
    assert isinstance(models, dict)
    for model_id, raw in models.items():
        for key, value in raw.items():
            if key.endswith("_per_mtok") or key.startswith("per_"):
                assert isinstance(value, str), f"{model_id}.{key} is not quoted"


def test_sim_prices_match_the_simulator(table: PriceTable) -> None:
    for model, prices in DEFAULT_PRICES.items():
        price = table.lookup(model)
        assert price is not None
        assert price.input == to_decimal(prices["input_per_mtok"])
        assert price.output == to_decimal(prices["output_per_mtok"])


def test_known_list_prices(table: PriceTable) -> None:
    gpt4o = table.lookup("gpt-4o")
    assert gpt4o == Price(input=D("2.50"), output=D("10.00"), cached_input=D("1.25"))
    sonnet = table.lookup("claude-sonnet-4-5")
    assert sonnet is not None
    assert (sonnet.input, sonnet.output) == (D(3), D(15))
    assert (sonnet.cached_input, sonnet.cache_write) == (D("0.30"), D("3.75"))
    pro = table.lookup("gemini-2.5-pro")
    assert pro is not None and pro.input == D("1.25")  # the <= 200k tier
    flash_lite = table.lookup("gemini-2.0-flash-lite")
    assert flash_lite is not None and flash_lite.cached_input == flash_lite.input  # default
    entry = table.match("gpt-4o")
    assert entry is not None and entry.context_window == 128000 and entry.provider == "openai"


# ── normalisation of upstream ids ────────────────────────────────────────────────────

NORMALISED = [
    # OpenAI / Azure
    ("gpt-4o", "gpt-4o"),
    ("GPT-4o", "gpt-4o"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("gpt-4o-2024-11-20", "gpt-4o"),
    ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # the snapshot with its own price
    ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("gpt-4.1-2025-04-14", "gpt-4.1"),
    ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
    ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
    ("o1-2024-12-17", "o1"),
    ("o1-preview", "o1"),
    ("o3-2025-04-16", "o3"),
    ("o3-mini-2025-01-31", "o3-mini"),
    ("o4-mini-2025-04-16", "o4-mini"),
    ("gpt-5-2025-08-07", "gpt-5"),
    ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
    ("gpt-5-nano-2025-08-07", "gpt-5-nano"),
    ("gpt-5-chat-latest", "gpt-5"),
    ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
    ("gpt-4-turbo-preview", "gpt-4-turbo"),
    ("gpt-4-0613", "gpt-4"),
    ("gpt-4-1106-preview", "gpt-4-1106-preview"),
    ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
    ("openai/gpt-4o-mini", "gpt-4o-mini"),
    ("text-embedding-3-small", "text-embedding-3-small"),
    # Anthropic
    ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("claude-3-5-sonnet-20240620", "claude-3-5-sonnet"),
    ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
    ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("claude-opus-4-20250514", "claude-opus-4"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("claude-3-haiku-20240307", "claude-3-haiku"),
    ("anthropic/claude-3.5-sonnet", "claude-3-5-sonnet"),
    ("claude-sonnet-4.5", "claude-sonnet-4-5"),
    # Bedrock
    ("anthropic.claude-3-5-haiku-20241022-v1:0", "claude-3-5-haiku"),
    ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
    ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "claude-3-7-sonnet"),
    ("eu.anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4"),
    ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
    ("anthropic.claude-3-haiku-20240307-v1:0:200k", "claude-3-haiku"),
    ("amazon.nova-lite-v1:0", "nova-lite"),
    ("us.amazon.nova-pro-v1:0", "nova-pro"),
    ("amazon.nova-micro-v1:0", "nova-micro"),
    ("amazon.titan-embed-text-v2:0", "titan-embed-text-v2"),
    ("meta.llama3-1-70b-instruct-v1:0", "llama3-1-70b"),
    ("us.meta.llama3-1-8b-instruct-v1:0", "llama3-1-8b"),
    ("mistral.mistral-large-2407-v1:0", "mistral-large"),
    (
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "claude-3-5-haiku",
    ),
    # Gemini / Vertex
    ("gemini-2.5-flash-001", "gemini-2.5-flash"),
    ("models/gemini-2.5-pro", "gemini-2.5-pro"),
    ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
    ("gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
    ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
    ("gemini-2.5-pro-preview-03-25", "gemini-2.5-pro"),
    ("gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("gemini-2.0-flash-lite-001", "gemini-2.0-flash-lite"),
    ("gemini-2.0-flash-exp", "gemini-2.0-flash"),
    (
        "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-flash",
        "gemini-2.5-flash",
    ),
    ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),  # Vertex Anthropic
    ("claude-opus-4-1@20250805", "claude-opus-4-1"),
    ("text-embedding-004", "text-embedding-004"),
    # Mistral
    ("mistral-large-latest", "mistral-large"),
    ("mistral-large-2411", "mistral-large"),
]


@pytest.mark.parametrize(("upstream", "canonical"), NORMALISED)
def test_upstream_ids_map_to_canonical(table: PriceTable, upstream: str, canonical: str) -> None:
    entry = table.match(upstream)
    assert entry is not None, upstream
    assert entry.id == canonical
    assert table.lookup(upstream) == entry.price


UNKNOWN = [
    "gpt-4o-audio-preview",  # audio tokens are priced differently
    "gpt-4o-realtime-preview-2024-12-17",
    "gpt-4o-mini-tts",
    "gpt-4o-transcribe",
    "gpt-4o-search-preview",
    "o4-mini-deep-research",
    "gpt-4-32k",
    "gpt-4-vision-preview",
    "gemini-2.5-flash-image-preview",
    "gemini-2.5-flash-preview-tts",
    "claude-opus-4-7",  # a minor version the table does not know is not claude-opus-4
    "claude-sonnet-4-9-20300101",
    "ft:gpt-4o-mini-2024-07-18:acme::abc123",  # fine-tuned: not the base price
    "llama3-70b-instruct",  # Llama 3.0 is not Llama 3.1
    "my-azure-deployment",
    "",
]


@pytest.mark.parametrize("upstream", UNKNOWN)
def test_other_models_are_not_guessed(table: PriceTable, upstream: str) -> None:
    assert table.lookup(upstream) is None


# ── family separation ─────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("gpt-4o", "gpt-4o-mini"),
        ("gemini-2.5-flash", "gemini-2.5-flash-lite"),
        ("claude-3-5-haiku", "claude-3-5-sonnet"),
        ("o3", "o3-mini"),
        ("gpt-5", "gpt-5-nano"),
        ("claude-opus-4", "claude-opus-4-1"),
    ],
)
def test_families_keep_their_own_prices(table: PriceTable, a: str, b: str) -> None:
    for model in (a, f"{a}-2025-01-01", f"{a}-latest"):
        entry = table.match(model)
        assert entry is not None and entry.id == a, model
    for model in (b, f"{b}-2025-01-01", f"{b}-latest"):
        entry = table.match(model)
        assert entry is not None and entry.id == b, model
    if a != "claude-opus-4":  # Opus 4 and 4.1 happen to cost the same
        assert table.lookup(a) != table.lookup(b)


def _without(table: PriceTable, *ids: str) -> PriceTable:
    entries = {e.id: e for e in table if e.id not in ids}
    return PriceTable(table.version, entries)


def test_prefix_fallback_never_crosses_a_family(table: PriceTable) -> None:
    # With gpt-4o-mini missing, its ids must not fall back to gpt-4o (or vice versa).
    no_mini = _without(table, "gpt-4o-mini")
    assert no_mini.lookup("gpt-4o-mini") is None
    assert no_mini.lookup("gpt-4o-mini-2024-07-18") is None
    assert no_mini.lookup("gpt-4o-2024-08-06") == table.lookup("gpt-4o")
    no_4o = _without(table, "gpt-4o")
    assert no_4o.lookup("gpt-4o") is None
    assert no_4o.lookup("gpt-4o-2024-08-06") is None
    no_lite = _without(table, "gemini-2.5-flash-lite")
    assert no_lite.lookup("gemini-2.5-flash-lite") is None
    assert no_lite.lookup("gemini-2.5-flash-lite-preview-06-17") is None
    no_haiku = _without(table, "claude-3-5-haiku")
    assert no_haiku.lookup("claude-3-5-haiku-20241022") is None


def test_prefix_fallback_keeps_variant_tags(table: PriceTable) -> None:
    # The last resort: a tag that does not change the model keeps the base price.
    assert table.lookup("gpt-5-codex") == table.lookup("gpt-5")
    assert table.lookup("llama3-1-70b-instruct") == table.lookup("llama3-1-70b")


# ── provider kind ─────────────────────────────────────────────────────────────────────


def test_provider_kind_limits_the_vendors(table: PriceTable) -> None:
    assert table.lookup("gpt-4o", "azure") == table.lookup("gpt-4o")
    assert table.lookup("gpt-4o", "bedrock") is None
    assert table.lookup("anthropic.claude-3-5-haiku-20241022-v1:0", "bedrock") is not None
    assert table.lookup("claude-sonnet-4-5@20250929", "vertex") is not None
    assert table.lookup("claude-3-5-sonnet", "gemini") is None
    assert table.lookup("models/gemini-2.5-flash", "gemini") is not None
    # Bedrock's Llama price is not a self-hosted Llama's price.
    assert table.lookup("meta.llama3-1-70b-instruct-v1:0", "bedrock") is not None
    assert table.lookup("llama3-1-70b", "openai_compatible") is None
    # The simulator answers in every format.
    for kind in ("openai", "anthropic", "gemini", "bedrock", "openai_compatible"):
        assert table.lookup("sim-small", kind) is not None


# ── loading other files ───────────────────────────────────────────────────────────────


def test_load_a_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(
        'version: "2030-01-01"\nmodels:\n  m:\n    provider: openai\n'
        '    input_per_mtok: "1"\n    output_per_mtok: "2"\n    per_request: "0.01"\n'
    )
    t = PriceTable.load(path)
    assert t.version == "2030-01-01"
    assert t.lookup("m") == Price(input=D(1), output=D(2), per_request=D("0.01"))


@pytest.mark.parametrize(
    "models",
    [
        {"m": {"provider": "openai", "input_per_mtok": "1"}},  # no output price
        {"m": {"provider": "acme", "input_per_mtok": "1", "output_per_mtok": "1"}},
        {"m": {"provider": "openai", "input_per_mtok": "x", "output_per_mtok": "1"}},
        {"m": {"provider": "openai", "input_per_mtok": "-1", "output_per_mtok": "1"}},
        {"m": {"provider": "openai", "input_per_mtok": "1", "output_per_mtok": "1", "typo": 1}},
        {"m": {"provider": "openai", "input_per_mtok": "1", "output_per_mtok": "1",
               "context_window": "big"}},
    ],
)  # fmt: skip
def test_bad_tables_are_rejected(models: dict[str, object]) -> None:
    with pytest.raises(PriceTableError):
        PriceTable.from_dict({"version": "2030-01-01", "models": models})


def test_missing_file_is_a_table_error(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match="cannot read"):
        PriceTable.load(tmp_path / "nope.yaml")


# ── Price ─────────────────────────────────────────────────────────────────────────────


def test_price_defaults_and_validation() -> None:
    p = Price(input=D("2.5"), output=D(10))
    assert p.cached_input == D("2.5") and p.cache_write == D("2.5")
    assert p.per_request == 0 and p.source == "table"
    assert not p.is_free
    assert Price(input=D(0), output=D(0), source="config").is_free
    with pytest.raises(TypeError):
        Price(input=2.5, output=D(10))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Price(input=D(-1), output=D(1))
    with pytest.raises(ValueError):
        Price(input=D("Infinity"), output=D(1))
    with pytest.raises(ValueError):
        Price(input=D(1), output=D(1), source="guess")  # type: ignore[arg-type]


def test_to_decimal_is_exact_for_floats() -> None:
    assert to_decimal(2.5) == D("2.5")
    assert to_decimal(0.1) == D("0.1")  # not 0.1000000000000000055511151231257827
    assert to_decimal("0.075") == D("0.075")
    assert to_decimal(3) == D(3)
    with pytest.raises(ValueError):
        to_decimal("nan")
    with pytest.raises(TypeError):
        to_decimal(True)


# ── resolve_price ─────────────────────────────────────────────────────────────────────

BLOCK = UnknownPricePolicy("block")


def _dep(model: str, provider: str = "p", price: PriceSettings | None = None) -> DeploymentSettings:
    return DeploymentSettings(provider=provider, model=model, price=price)


def test_table_price_when_no_config(table: PriceTable) -> None:
    decision = resolve_price(_dep("gpt-4o-2024-08-06"), "openai", table, BLOCK)
    assert decision.price == table.lookup("gpt-4o")
    assert decision.table_id == "gpt-4o"
    assert decision.warning is None and not decision.blocked


def test_config_price_wins(table: PriceTable) -> None:
    cfg = PriceSettings(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5)
    decision = resolve_price(_dep("gpt-4o", price=cfg), "openai", table, BLOCK)
    assert decision.price == Price(input=D(2), output=D(8), cached_input=D("0.5"), source="config")
    assert decision.warning is None and decision.table_id is None


def test_config_price_from_floats_is_exact(table: PriceTable) -> None:
    cfg = PriceSettings(input_per_mtok=0.1, output_per_mtok=0.3)
    decision = resolve_price(_dep("anything", price=cfg), None, table, BLOCK)
    assert decision.price is not None
    assert decision.price.input == D("0.1") and decision.price.output == D("0.3")
    assert decision.price.cached_input == D("0.1")


def test_zero_priced_self_hosted_deployment_is_allowed(table: PriceTable) -> None:
    decision = resolve_price(
        _dep("llama-3.1-70b", price=PriceSettings()), "openai_compatible", table, BLOCK
    )
    assert decision.price is not None and decision.price.is_free
    assert decision.price.source == "config"
    assert decision.warning is None and not decision.blocked


def test_unknown_price_blocks_with_a_warning(table: PriceTable) -> None:
    decision = resolve_price(
        _dep("my-model"), "openai_compatible", table, BLOCK, deployment="local-llm"
    )
    assert decision.blocked and decision.price is None
    assert decision.warning is not None
    assert "no price for model 'my-model' on deployment 'local-llm'" in decision.warning
    assert "blocked" in decision.warning


def test_unknown_price_allowed_at_the_stated_price(table: PriceTable) -> None:
    policy = UnknownPricePolicy("allow", input_per_mtok=D(10), output_per_mtok=D(30))
    decision = resolve_price(_dep("my-model"), "openai", table, policy, deployment="x")
    assert decision.price == Price(input=D(10), output=D(30), source="policy")
    assert decision.warning is not None
    assert "charging the policy price" in decision.warning
    assert "$10" in decision.warning and "$30" in decision.warning


def test_unknown_price_is_never_silent(table: PriceTable) -> None:
    # Even a policy that allows at $0 says so.
    decision = resolve_price(_dep("my-model"), None, table, UnknownPricePolicy("allow"))
    assert decision.price is not None and decision.price.is_free
    assert decision.warning is not None and "$0" in decision.warning


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        UnknownPricePolicy("maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        UnknownPricePolicy("allow", input_per_mtok=D(-1))
    assert UnknownPricePolicy().action == "block"


# ── GPU-hour pricing ──────────────────────────────────────────────────────────────────


def test_gpu_hour_price() -> None:
    # $3.60/h at 1,000 tokens/s fully used: 3.6M tokens an hour -> $1 per 1M tokens.
    p = gpu_hour_price(D("3.60"), 1000, 1)
    assert p.input == p.output == D(1)
    assert p.source == "config"
    # Half the hours idle doubles the price of each served token.
    assert gpu_hour_price("3.60", 1000, "0.5").input == D(2)
    assert gpu_hour_price(0, 1000).is_free


@pytest.mark.parametrize(
    ("hourly", "tps", "util"), [(-1, 100, 1), (1, 0, 1), (1, 100, 0), (1, 100, "1.5")]
)
def test_gpu_hour_price_rejects_nonsense(hourly: int, tps: int, util: int | str) -> None:
    with pytest.raises(ValueError):
        gpu_hour_price(hourly, tps, util)
