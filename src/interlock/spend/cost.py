"""Usage -> cost in USD, in exact Decimal arithmetic.

Token counts follow OpenAI's convention (:class:`interlock.types.Usage`): ``prompt_tokens``
includes ``cached_tokens`` and ``completion_tokens`` includes ``reasoning_tokens``, so
cached tokens are moved from the input rate to the cached-input rate, and reasoning tokens
are charged once, as the completion tokens they are part of. Every cost is quantised to
1e-10 USD, which keeps sums of many small costs exact.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, localcontext

from interlock.spend.prices import Price
from interlock.types import Usage

__all__ = ["QUANTUM", "cost_of", "format_usd", "saved_by_cache", "worst_case"]

QUANTUM = Decimal("1e-10")  # USD
_MTOK = Decimal(1_000_000)
# Enough digits that no product of token counts and rates is ever rounded before the
# final quantisation, whatever the caller's decimal context says.
_PRECISION = 60


def cost_of(usage: Usage, price: Price) -> Decimal:
    """What one request cost, from the usage the provider reported (or the gateway counted).

    (prompt - cached) x input + cached x cached_input + completion x output, per 1M tokens,
    plus the per-request fee; rounded half-even to 1e-10 USD.
    """
    prompt = max(0, usage.prompt_tokens)
    cached = min(max(0, usage.cached_tokens), prompt)  # never more than the prompt
    completion = max(0, usage.completion_tokens)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        tokens = (
            (prompt - cached) * price.input
            + cached * price.cached_input
            + completion * price.output
        )
        total = tokens / _MTOK + price.per_request
        return total.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def worst_case(prompt_estimate: int, max_output_tokens: int, price: Price) -> Decimal:
    """The most a request can cost, for a budget reservation.

    The whole prompt at the input rate (no cache discount assumed) plus every allowed output
    token at the output rate plus the per-request fee; rounded up, so a reservation is never
    smaller than what the request may be charged.
    """
    prompt = max(0, prompt_estimate)
    output = max(0, max_output_tokens)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        total = (prompt * price.input + output * price.output) / _MTOK + price.per_request
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
