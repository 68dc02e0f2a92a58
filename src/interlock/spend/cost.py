"""Usage -> cost in USD, in exact Decimal arithmetic.

Token counts follow OpenAI's convention (:class:`interlock.types.Usage`): ``prompt_tokens``
includes ``cached_tokens`` (cache reads) and the prompt-cache writes (``cache_write_tokens``,
5-minute TTL, and ``cache_write_1h_tokens``), and ``completion_tokens`` includes
``reasoning_tokens``. So cache reads and writes are moved from the input rate to their own
rates, and reasoning tokens are charged once, as the completion tokens they are part of.
Every cost is quantised to 1e-10 USD, which keeps sums of many small costs exact.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext

from interlock.spend.prices import Price
from interlock.types import Usage

__all__ = [
    "QUANTUM",
    "cost_of",
    "format_usd",
    "prompt_split",
    "saved_by_cache",
    "tokens_usd",
    "worst_case",
]

QUANTUM = Decimal("1e-10")  # USD
_MTOK = Decimal(1_000_000)
# Enough digits that no product of token counts and rates is ever rounded before the
# final quantisation, whatever the caller's decimal context says.
_PRECISION = 60


def prompt_split(
    prompt_tokens: int, cached_tokens: int, cache_write_tokens: int, cache_write_1h_tokens: int
) -> tuple[int, int, int, int]:
    """The prompt as (uncached, cache reads, 5-minute writes, 1-hour writes), clamped so the
    parts are never negative and never add up to more than ``prompt_tokens``: bad upstream
    numbers cannot make a negative or inflated cost. Reads are taken first, then 1-hour
    writes, then 5-minute writes (claims beyond the prompt are the upstream's error and
    never billed)."""
    left = max(0, prompt_tokens)
    cached = min(max(0, cached_tokens), left)
    left -= cached
    hour = min(max(0, cache_write_1h_tokens), left)
    left -= hour
    minutes = min(max(0, cache_write_tokens), left)
    return left - minutes, cached, minutes, hour


def tokens_usd(
    price: Price,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    requests: int = 1,
) -> Decimal:
    """Tokens x rates per 1M tokens plus ``requests`` per-request fees, unrounded.

    (prompt - cached - writes5m - writes1h) x input + cached x cached_input
    + writes5m x cache_write + writes1h x cache_write_1h + completion x output.
    """
    fresh, cached, minutes, hour = prompt_split(
        prompt_tokens, cached_tokens, cache_write_tokens, cache_write_1h_tokens
    )
    completion = max(0, completion_tokens)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        tokens = (
            fresh * price.input
            + cached * price.cached_input
            + minutes * price.cache_write
            + hour * price.cache_write_1h
            + completion * price.output
        )
        return tokens / _MTOK + price.per_request * max(0, requests)


def cost_of(usage: Usage, price: Price) -> Decimal:
    """What one request cost, from the usage the provider reported (or the gateway counted).

    See :func:`tokens_usd` for the formula; rounded half-even to 1e-10 USD. Reasoning tokens
    are part of ``completion_tokens`` and billed at the output rate there.
    """
    total = tokens_usd(
        price,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        usage.cache_write_tokens,
        usage.cache_write_1h_tokens,
    )
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return total.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def worst_case(prompt_estimate: int, max_output_tokens: int, price: Price) -> Decimal:
    """The most a request can cost, for a budget reservation.

    The whole prompt at the highest rate a prompt token can be billed at (no cache discount
    assumed, and every token possibly a cache write, 1-hour TTL included) plus every allowed
    output token at the output rate plus the per-request fee; rounded up, so a reservation
    is never smaller than what the request may be charged.
    """
    prompt = max(0, prompt_estimate)
    output = max(0, max_output_tokens)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        rate = max(price.prompt_rates)
        total = (prompt * rate + output * price.output) / _MTOK + price.per_request
        return total.quantize(QUANTUM, rounding=ROUND_CEILING)


def saved_by_cache(usage: Usage, price: Price) -> Decimal:
    """What a gateway cache hit saved: the cost the upstream call would have had."""
    return cost_of(usage, price)


def format_usd(amount: Decimal) -> str:
    """A plain decimal string for the ``x-interlock-cost-usd`` header.

    At most 10 decimal places, never an exponent, no trailing zeros: "0", "0.000001", "12.5".
    """
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {amount}")
    with localcontext() as ctx:
        # Every integer digit and the 10 decimals must fit, however large the amount: a
        # stored value is rendered, never a reason for a listing to fail.
        ctx.prec = max(_PRECISION, amount.adjusted() + 12)
        text = format(amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text
