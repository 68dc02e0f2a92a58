"""Model prices: the built-in table, per-deployment overrides and the unknown-price policy.

A :class:`Price` is a set of Decimal rates in USD per 1 million tokens (plus flat fees).
Where one comes from, in order (:func:`resolve_price`):

1. the deployment's own ``price`` in the config (source ``"config"``); a price of 0 is a
   legitimate choice for a self-hosted deployment (see :func:`gpu_hour_price` for one
   that charges its share of the GPU bill);
2. the packaged table ``interlock/data/prices.yaml`` (source ``"table"``), looked up by the
   deployment's upstream model id;
3. the :class:`UnknownPricePolicy` (source ``"policy"``): block the request, or charge a
   stated price. Either way the decision carries a warning: an unknown price is never a
   silent $0.

Lookup maps the ids that upstreams actually use onto the table's canonical ids by
stripping what does not change the price: paths (``models/``, Vertex resource names,
Bedrock ARNs), Bedrock region and vendor prefixes (``us.anthropic.``), API versions
(``-v1:0``), Vertex ``@date``, dates (``-20241022``, ``-2024-08-06``, ``-05-20``),
revisions (``-001``) and ``-latest`` / ``-preview`` / ``-exp``. As a last resort it takes
the longest canonical id that is a dash-separated prefix, unless the rest of the id names
a different family or size (``-mini``, ``-lite``, ``-pro``, ``-audio``, a minor version
like ``-5``): ``gpt-4o-mini-x`` never gets ``gpt-4o``'s price.

The table's ``provider`` (the model's vendor) must also be one the deployment's provider
kind can serve, so that a Bedrock-only Llama price is not applied to an OpenAI-compatible
host of the same open-weight model (see ``_KIND_VENDORS``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from interlock.settings import DeploymentSettings

__all__ = [
    "Price",
    "PriceDecision",
    "PriceSource",
    "PriceTable",
    "PriceTableError",
    "TableEntry",
    "UnknownPricePolicy",
    "gpu_hour_price",
    "resolve_price",
    "to_decimal",
]

PriceSource = Literal["table", "config", "policy"]
VENDORS: frozenset[str] = frozenset(
    {"openai", "anthropic", "google", "amazon", "meta", "mistral", "cohere", "sim"}
)

_ZERO = Decimal(0)
# "Same as the input price": a sentinel that no real price can be.
_SAME_AS_INPUT = Decimal("NaN")


def to_decimal(value: Decimal | int | str | float) -> Decimal:
    """An exact Decimal for a price; a float goes through its shortest repr (2.5 -> "2.5")."""
    if isinstance(value, bool):
        raise TypeError("a price cannot be a boolean")
    if isinstance(value, Decimal):
        out = value
    elif isinstance(value, int):
        out = Decimal(value)
    elif isinstance(value, float):
        out = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            out = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
    else:
        raise TypeError(f"not a price: {value!r}")
    if not out.is_finite():
        raise ValueError(f"a price must be finite, not {value!r}")
    return out


@dataclass(frozen=True, slots=True)
class Price:
    """Rates in USD per 1M tokens, plus flat fees in USD.

    ``cached_input`` (cache reads) defaults to ``input``; ``cache_write`` (prompt-cache
    writes with the default 5-minute TTL) defaults to ``input`` and ``cache_write_1h``
    (1-hour TTL writes) to the larger of ``input`` and ``cache_write``: a missing write
    price never makes a write cheaper than an uncached prompt token (docs/spend.md).
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal = _SAME_AS_INPUT
    cache_write: Decimal = _SAME_AS_INPUT
    per_request: Decimal = _ZERO
    per_image: Decimal = _ZERO
    source: PriceSource = "table"
    cache_write_1h: Decimal = _SAME_AS_INPUT

    def __post_init__(self) -> None:
        for name in _RATE_NAMES:
            value = getattr(self, name)
            if not isinstance(value, Decimal):
                # Floats would bring binary rounding into money.
                raise TypeError(f"Price.{name} must be a Decimal, not {type(value).__name__}")
            if value.is_nan() and name in ("cached_input", "cache_write"):
                object.__setattr__(self, name, self.input)
            elif value.is_nan() and name == "cache_write_1h":
                object.__setattr__(self, name, max(self.input, self.cache_write))
            elif not value.is_finite() or value < 0:
                raise ValueError(f"Price.{name} must be a finite, non-negative Decimal")
        if self.source not in ("table", "config", "policy"):
            raise ValueError(f"Price.source must be table, config or policy, not {self.source!r}")

    @property
    def is_free(self) -> bool:
        return not any(getattr(self, name) for name in _RATE_NAMES)

    @property
    def prompt_rates(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """Every rate a prompt token can be billed at: (input, cache read, 5-minute cache
        write, 1-hour cache write)."""
        return (self.input, self.cached_input, self.cache_write, self.cache_write_1h)


# In validation order: cache_write_1h's default reads the validated cache_write.
_RATE_NAMES = (
    "input", "output", "cached_input", "cache_write", "cache_write_1h", "per_request",
    "per_image",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class TableEntry:
    id: str  # the canonical model id
    provider: str  # the model's vendor
    price: Price
    context_window: int | None = None


class PriceTableError(ValueError):
    """The price table file is missing fields, has unknown ones or holds bad numbers."""


_PRICE_FIELDS = {
    "input_per_mtok": "input",
    "output_per_mtok": "output",
    "cached_input_per_mtok": "cached_input",
    "cache_write_per_mtok": "cache_write",
    "cache_write_1h_per_mtok": "cache_write_1h",
    "per_request": "per_request",
    "per_image": "per_image",
}
_ENTRY_FIELDS = frozenset({"provider", "context_window", *_PRICE_FIELDS})

# Which model vendors a provider kind serves. openai_compatible is usually another gateway
# or a first-party API in OpenAI shape, but it is also how self-hosted open-weight models
# are reached: their Bedrock list price is not theirs, so meta is not in its set.
# The simulated provider answers in every format.
_KIND_VENDORS: dict[str, frozenset[str]] = {
    "openai": frozenset({"openai", "sim"}),
    "azure": frozenset({"openai", "sim"}),
    "anthropic": frozenset({"anthropic", "sim"}),
    "gemini": frozenset({"google", "sim"}),
    "vertex": frozenset({"google", "anthropic", "sim"}),
    "bedrock": frozenset({"anthropic", "amazon", "meta", "mistral", "cohere", "sim"}),
    "openai_compatible": frozenset({"openai", "anthropic", "google", "mistral", "cohere", "sim"}),
}

# Path-like ids: models/x, projects/../models/x, arn:...:foundation-model/x, vendor/x.
_REGION = re.compile(r"^(?:us|eu|apac|global|us-gov|ca|jp|au)\.")
_VENDOR = re.compile(
    r"^(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|google|writer|qwen)\."
)
# Suffixes that name a snapshot or channel of the same model, tried in this order.
_SUFFIXES = (
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),  # gpt-4o-2024-08-06
    re.compile(r"-\d{8}$"),  # claude-3-5-sonnet-20241022
    re.compile(r"-v\d+$"),  # bedrock -v1 (after :0), claude-3-5-sonnet-v2
    re.compile(r"-(?:latest|preview|exp|experimental)$"),
    re.compile(r"-\d{2}-\d{4}$"),  # gemini-2.5-flash-preview-09-2025
    re.compile(r"-\d{2}-\d{2}$"),  # gemini-2.5-flash-preview-05-20
    re.compile(r"-\d{4}$"),  # gpt-4-0613, mistral-large-2407
    re.compile(r"-\d{3}$"),  # gemini-2.5-flash-001
)
# After a prefix match, any of these in the rest of the id means another model:
# a different size or tier, modality or product line, priced differently.
_FAMILY_WORDS = frozenset(
    {
        "mini", "nano", "micro", "lite", "small", "medium", "large", "pro", "premier",
        "max", "plus", "ultra", "turbo", "flash", "haiku", "sonnet", "opus", "audio",
        "realtime", "tts", "transcribe", "search", "research", "deep", "image", "vision",
        "thinking", "native", "live", "embed", "embedding",
    }
)  # fmt: skip
_MEMO_SIZE = 4096
_MINOR_VERSION = re.compile(r"^\d{1,2}$|^\d+k$")  # claude-opus-4-5 is not claude-opus-4


def _candidates(model: str) -> list[str]:
    """Forms of an upstream id, most specific first, ending with the canonical guess."""
    out: list[str] = []

    def add(s: str) -> None:
        if s and s not in out:
            out.append(s)

    s = model.strip().lower()
    add(s)
    s = s.rsplit("/", 1)[-1]
    s = s.split("@", 1)[0]  # Vertex Anthropic: claude-3-5-sonnet-v2@20241022
    s = _VENDOR.sub("", _REGION.sub("", s))
    add(s)
    s = s.split(":", 1)[0]  # Bedrock -v1:0 / -v1:0:200k, Ollama tags
    add(s)
    if s.startswith("claude"):
        s = s.replace(".", "-")  # claude-3.5-sonnet, claude-sonnet-4.5
        add(s)
    llama = re.match(r"^llama-?(\d)[.-](\d)(?=-|$)(.*)$", s)
    if llama:  # llama-3.1-70b-instruct -> llama3-1-70b-instruct
        s = f"llama{llama[1]}-{llama[2]}{llama[3]}"
        add(s)
    stripped = True
    while stripped:
        stripped = False
        for pattern in _SUFFIXES:
            shorter = pattern.sub("", s)
            if shorter != s and shorter:
                s = shorter
                add(s)
                stripped = True
                break
    return out


def _same_family(rest: str) -> bool:
    """Whether what follows a canonical id's dash names the same model (a variant tag)."""
    tokens = rest.split("-")
    if _MINOR_VERSION.match(tokens[0]):
        return False
    return not any(t in _FAMILY_WORDS for t in tokens)


class PriceTable:
    """The price table: canonical id -> :class:`TableEntry`, with id normalisation."""

    def __init__(self, version: str, entries: Mapping[str, TableEntry]) -> None:
        self.version = version
        self._entries = {k.lower(): v for k, v in entries.items()}
        # Longest first, for the last-resort prefix match.
        self._by_length = sorted(self._entries, key=len, reverse=True)
        self._memo: dict[tuple[str, str | None], TableEntry | None] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[TableEntry]:
        return iter(self._entries.values())

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and model.lower() in self._entries

    def get(self, canonical_id: str) -> TableEntry | None:
        """The entry for an exact canonical id (no normalisation)."""
        return self._entries.get(canonical_id.lower())

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceTable:
        """Read a price table file; ``None``: the one packaged with Interlock."""
        if path is None:
            ref = resources.files("interlock").joinpath("data/prices.yaml")
            text, source = ref.read_text(encoding="utf-8"), "interlock/data/prices.yaml"
        else:
            p = Path(path)
            try:
                text = p.read_text(encoding="utf-8")
            except OSError as exc:
                raise PriceTableError(f"{p}: cannot read ({exc.strerror})") from None
            source = str(p)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PriceTableError(f"{source}: not valid YAML: {exc}") from None
        return cls.from_dict(data, source)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<prices>") -> PriceTable:
        if not isinstance(data, dict) or set(data) - {"version", "models"}:
            raise PriceTableError(f"{source}: expected a mapping with 'version' and 'models'")
        version = data.get("version")
        if not isinstance(version, str) or not version:
            raise PriceTableError(f"{source}: version must be a non-empty string (a date)")
        models = data.get("models")
        if not isinstance(models, dict):
            raise PriceTableError(f"{source}: models must be a mapping")
        entries: dict[str, TableEntry] = {}
        for model_id, raw in models.items():
            where = f"{source}: models.{model_id}"
            if not isinstance(model_id, str) or model_id.lower() in entries:
                raise PriceTableError(f"{where}: ids must be unique strings")
            entries[model_id.lower()] = _entry(model_id.lower(), raw, where)
        return cls(version, entries)

    def match(self, model: str, provider_kind: str | None = None) -> TableEntry | None:
        """The table entry an upstream model id resolves to, or ``None``."""
        key = (model, provider_kind)
        if key in self._memo:
            return self._memo[key]
        entry = self._match(model, provider_kind)
        if len(self._memo) < _MEMO_SIZE:  # ids come from config, but stay bounded anyway
            self._memo[key] = entry
        return entry

    def _match(self, model: str, provider_kind: str | None) -> TableEntry | None:
        vendors = _KIND_VENDORS.get(provider_kind) if provider_kind else None

        def usable(key: str) -> TableEntry | None:
            entry = self._entries.get(key)
            if entry is None or (vendors is not None and entry.provider not in vendors):
                return None
            return entry

        if model.strip().lower().startswith("ft:"):
            return None  # fine-tuned models are priced differently from their base
        candidates = _candidates(model)
        for cand in candidates:
            if (hit := usable(cand)) is not None:
                return hit
        for cand in candidates:
            for key in self._by_length:
                if (
                    len(cand) > len(key) + 1
                    and cand.startswith(key + "-")
                    and _same_family(cand[len(key) + 1 :])
                    and (hit := usable(key)) is not None
                ):
                    return hit
        return None

    def lookup(self, model: str, provider_kind: str | None = None) -> Price | None:
        """The listed price of an upstream model id, or ``None`` when the table has none."""
        entry = self.match(model, provider_kind)
        return None if entry is None else entry.price


def _entry(model_id: str, raw: Any, where: str) -> TableEntry:
    if not isinstance(raw, dict):
        raise PriceTableError(f"{where}: expected a mapping")
    unknown = set(raw) - _ENTRY_FIELDS
    if unknown:
        raise PriceTableError(f"{where}: unknown fields {sorted(unknown)}")
    provider = raw.get("provider")
    if provider not in VENDORS:
        raise PriceTableError(f"{where}.provider: expected one of {sorted(VENDORS)}")
    for required in ("input_per_mtok", "output_per_mtok"):
        if required not in raw:
            raise PriceTableError(f"{where}: {required} is required")
    rates: dict[str, Decimal] = {}
    for key, attr in _PRICE_FIELDS.items():
        if key in raw:
            try:
                rates[attr] = to_decimal(raw[key])
            except (TypeError, ValueError) as exc:
                raise PriceTableError(f"{where}.{key}: {exc}") from None
    window = raw.get("context_window")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int) or window < 1
    ):
        raise PriceTableError(f"{where}.context_window: expected a positive integer")
    try:
        price = Price(source="table", **rates)
    except (TypeError, ValueError) as exc:
        raise PriceTableError(f"{where}: {exc}") from None
    return TableEntry(id=model_id, provider=str(provider), price=price, context_window=window)


@dataclass(frozen=True, slots=True)
class UnknownPricePolicy:
    """What to do with a model that has neither a configured nor a listed price.

    ``block``: refuse its requests. ``allow``: serve them and charge the stated rates (USD
    per 1M tokens). Either way :func:`resolve_price` attaches a warning.
    """

    action: Literal["block", "allow"] = "block"
    input_per_mtok: Decimal = _ZERO
    output_per_mtok: Decimal = _ZERO

    def __post_init__(self) -> None:
        if self.action not in ("block", "allow"):
            raise ValueError(f"unknown-price action must be block or allow, not {self.action!r}")
        for name in ("input_per_mtok", "output_per_mtok"):
            value = getattr(self, name)
            if not isinstance(value, Decimal):
                raise TypeError(f"UnknownPricePolicy.{name} must be a Decimal")
            if not value.is_finite() or value < 0:
                raise ValueError(f"UnknownPricePolicy.{name} must be non-negative")

    @property
    def price(self) -> Price | None:
        if self.action == "block":
            return None
        return Price(input=self.input_per_mtok, output=self.output_per_mtok, source="policy")


@dataclass(frozen=True, slots=True)
class PriceDecision:
    """The price a deployment is charged at, or ``None`` when its requests are blocked."""

    price: Price | None
    warning: str | None = None
    table_id: str | None = None  # the table entry used (source "table")

    @property
    def blocked(self) -> bool:
        return self.price is None


# Anthropic's published prompt-caching multipliers of the base input price (the same on
# Bedrock and Vertex): a 5-minute write costs 1.25x, a 1-hour write 2x.
# https://docs.claude.com/en/docs/build-with-claude/prompt-caching#pricing
ANTHROPIC_WRITE_5M = Decimal("1.25")
ANTHROPIC_WRITE_1H = Decimal(2)


def _vendor(settings: DeploymentSettings, provider_kind: str | None, table: PriceTable) -> str:
    """The model's vendor as far as it can be told: its table entry's, else Anthropic for
    the anthropic kind or a Claude model id, else ""."""
    entry = table.match(settings.base_model or settings.model, provider_kind)
    if entry is not None:
        return entry.provider
    if provider_kind == "anthropic" or "claude" in settings.model.lower():
        return "anthropic"
    return ""


def _config_price(
    settings: DeploymentSettings, provider_kind: str | None, table: PriceTable
) -> Price | None:
    """The deployment's configured price. Rates it leaves out: cache reads and writes cost
    the input rate, except that a Claude model's writes default to Anthropic's published
    1.25x (5-minute) and 2x (1-hour) of its configured input rate."""
    cfg = settings.price
    if cfg is None:
        return None
    input_rate = to_decimal(cfg.input_per_mtok)

    def rate(value: float | None, default: Decimal) -> Decimal:
        return default if value is None else to_decimal(value)

    write_5m, write_1h = input_rate, input_rate
    missing = cfg.cache_write_per_mtok is None or cfg.cache_write_1h_per_mtok is None
    if missing and _vendor(settings, provider_kind, table) == "anthropic":
        write_5m, write_1h = input_rate * ANTHROPIC_WRITE_5M, input_rate * ANTHROPIC_WRITE_1H
    write = rate(cfg.cache_write_per_mtok, write_5m)
    return Price(
        input=input_rate,
        output=to_decimal(cfg.output_per_mtok),
        cached_input=rate(cfg.cached_input_per_mtok, input_rate),
        cache_write=write,
        cache_write_1h=rate(cfg.cache_write_1h_per_mtok, max(write, write_1h)),
        source="config",
    )


def resolve_price(
    deployment_settings: DeploymentSettings,
    provider_kind: str | None,
    table: PriceTable,
    policy: UnknownPricePolicy,
    *,
    deployment: str | None = None,
) -> PriceDecision:
    """The price of one deployment: its config, else the table, else the policy.

    ``deployment`` is the deployment's name, used in the warning.
    """
    configured = _config_price(deployment_settings, provider_kind, table)
    if configured is not None:
        return PriceDecision(configured)
    entry = table.match(deployment_settings.base_model or deployment_settings.model, provider_kind)
    if entry is not None:
        return PriceDecision(entry.price, table_id=entry.id)
    name = deployment or deployment_settings.model
    head = f"no price for model {deployment_settings.model!r} on deployment {name!r}"
    fallback = policy.price
    if fallback is None:
        return PriceDecision(
            None,
            f"{head}; requests are blocked (unknown-price policy: block). "
            f"Set deployments.{name}.price in the config.",
        )
    return PriceDecision(
        fallback,
        f"{head}; charging the policy price of ${fallback.input} per 1M input tokens and "
        f"${fallback.output} per 1M output tokens. Set deployments.{name}.price in the config.",
    )


def gpu_hour_price(
    gpu_usd_per_hour: Decimal | int | str | float,
    tokens_per_second: Decimal | int | str | float,
    utilisation: Decimal | int | str | float = 1,
) -> Price:
    """A per-token price for a self-hosted deployment from what its GPUs cost per hour.

    cost per token = hourly price / (tokens per second x 3600 x utilisation)

    Assumptions: ``tokens_per_second`` is the deployment's aggregate throughput across all
    concurrent requests (prompt plus completion tokens), and ``utilisation`` (0-1] is the
    share of paid hours spent doing that work, so idle time is spread over the tokens that
    were served. Input and output tokens are charged alike, although prefill is usually far
    cheaper than decoding; build a :class:`Price` directly to split them.
    """
    hourly = to_decimal(gpu_usd_per_hour)
    rate = to_decimal(tokens_per_second)
    share = to_decimal(utilisation)
    if hourly < 0:
        raise ValueError("gpu_usd_per_hour must be non-negative")
    if rate <= 0:
        raise ValueError("tokens_per_second must be positive")
    if not 0 < share <= 1:
        raise ValueError("utilisation must be in (0, 1]")
    per_mtok = hourly * 1_000_000 / (rate * 3600 * share)
    return Price(input=per_mtok, output=per_mtok, source="config")
