"""Cost arithmetic: exact Decimals from usage and price."""

from __future__ import annotations

from decimal import Decimal, localcontext

import pytest

from interlock.spend import (
    QUANTUM,
    Price,
    PriceTable,
    cost_of,
    format_usd,
    saved_by_cache,
    worst_case,
)
from interlock.types import Usage

D = Decimal
GPT4O = Price(input=D("2.50"), output=D("10.00"), cached_input=D("1.25"))


def test_exact_decimal_cost() -> None:
    price = Price(input=D("2.50"), output=D(0))
    cost = cost_of(Usage(prompt_tokens=1_234_567), price)
    assert cost == D("3.0864175")
    assert isinstance(cost, Decimal)
    assert cost.as_tuple().exponent == -10  # quantised to 1e-10 USD


def test_input_and_output() -> None:
    # 1,000 in at $2.50/M + 500 out at $10/M = 0.0025 + 0.005
    assert cost_of(Usage(prompt_tokens=1000, completion_tokens=500), GPT4O) == D("0.0075")


def test_cached_tokens_move_to_the_cached_rate() -> None:
    # prompt_tokens includes the 800 cached: 200 x 2.50 + 800 x 1.25 = 500 + 1000 per 1M
    usage = Usage(prompt_tokens=1000, completion_tokens=0, cached_tokens=800)
    assert cost_of(usage, GPT4O) == D("0.0015")
    assert cost_of(usage, GPT4O) < cost_of(Usage(prompt_tokens=1000), GPT4O)


def test_cached_tokens_default_to_the_input_rate() -> None:
    price = Price(input=D(3), output=D(15))
    cached = Usage(prompt_tokens=1000, cached_tokens=1000)
    assert cost_of(cached, price) == cost_of(Usage(prompt_tokens=1000), price)


def test_reasoning_tokens_are_not_charged_twice() -> None:
    # completion_tokens (2,000) already includes the 1,500 reasoning tokens.
    usage = Usage(prompt_tokens=100, completion_tokens=2000, reasoning_tokens=1500)
    o3 = Price(input=D(2), output=D(8), cached_input=D("0.5"))
    assert cost_of(usage, o3) == D("0.0162")  # 100 x 2 + 2000 x 8 = 16,200 per 1M
    assert cost_of(usage, o3) == cost_of(Usage(prompt_tokens=100, completion_tokens=2000), o3)


def test_cached_and_reasoning_together() -> None:
    usage = Usage(prompt_tokens=10_000, completion_tokens=3_000, cached_tokens=6_000,
                  reasoning_tokens=2_500)  # fmt: skip
    o4_mini = Price(input=D("1.10"), output=D("4.40"), cached_input=D("0.275"))
    # 4,000 x 1.10 + 6,000 x 0.275 + 3,000 x 4.40 = 4,400 + 1,650 + 13,200 = 19,250 per 1M
    assert cost_of(usage, o4_mini) == D("0.01925")


def test_per_request_fee() -> None:
    price = Price(input=D(1), output=D(1), per_request=D("0.005"))
    assert cost_of(Usage(), price) == D("0.005")
    assert cost_of(Usage(prompt_tokens=1_000_000), price) == D("1.005")


def test_zero_price_and_zero_usage() -> None:
    assert cost_of(Usage(prompt_tokens=10**9, completion_tokens=10**9), Price(D(0), D(0))) == 0
    assert cost_of(Usage(), GPT4O) == 0


def test_bad_usage_is_clamped() -> None:
    # More cached than prompt tokens (an upstream bug) never makes a negative input charge.
    usage = Usage(prompt_tokens=100, cached_tokens=500)
    assert cost_of(usage, GPT4O) == cost_of(Usage(prompt_tokens=100, cached_tokens=100), GPT4O)
    assert cost_of(Usage(prompt_tokens=-5, completion_tokens=-1), GPT4O) == 0


def test_rounding_is_half_even_at_1e_10() -> None:
    one_token = Price(input=D("0.00005"), output=D(0))  # 5e-11 per token: a half quantum
    assert cost_of(Usage(prompt_tokens=1), one_token) == D(0)  # ties go to even (0)
    assert cost_of(Usage(prompt_tokens=3), one_token) == D("2e-10")  # 1.5 -> 2
    assert cost_of(Usage(prompt_tokens=5), one_token) == D("2e-10")  # 2.5 -> 2


def test_independent_of_the_callers_decimal_context() -> None:
    usage = Usage(prompt_tokens=987_654_321, completion_tokens=123_456_789)
    expected = cost_of(usage, GPT4O)
    with localcontext() as ctx:
        ctx.prec = 4
        assert cost_of(usage, GPT4O) == expected
    assert expected == D("3703.7036925")  # 2,469,135,802.5 + 1,234,567,890 per 1M


def test_many_small_costs_sum_exactly() -> None:
    price = Price(input=D("0.15"), output=D("0.60"))
    one = cost_of(Usage(prompt_tokens=7, completion_tokens=3), price)
    assert one == D("0.00000285")
    total = sum((one for _ in range(100_000)), D(0))
    assert total == D("0.285")
    # Where float drifts:
    assert sum(0.00000285 for _ in range(100_000)) != 0.285


def test_table_prices_cost_exactly() -> None:
    table = PriceTable.load()
    price = table.lookup("claude-3-5-haiku-20241022")
    assert price is not None
    usage = Usage(prompt_tokens=12_345, completion_tokens=678, cached_tokens=10_000)
    # 2,345 x 0.80 + 10,000 x 0.08 + 678 x 4.00 = 1,876 + 800 + 2,712 = 5,388 per 1M
    assert cost_of(usage, price) == D("0.005388")


def test_worst_case() -> None:
    # The whole prompt at the input rate (no cache discount), all output at the output rate.
    assert worst_case(1000, 4000, GPT4O) == D("0.0425")
    fee = Price(input=D(1), output=D(2), per_request=D("0.01"))
    assert worst_case(1_000_000, 1_000_000, fee) == D("3.01")
    assert worst_case(0, 0, GPT4O) == 0
    assert worst_case(-10, -10, GPT4O) == 0
    # Rounded up, so a reservation never falls short of the charge.
    tiny = Price(input=D("0.00001"), output=D(0))
    assert worst_case(1, 0, tiny) == QUANTUM
    usage = Usage(prompt_tokens=1000, completion_tokens=4000, cached_tokens=900)
    assert cost_of(usage, GPT4O) <= worst_case(1000, 4000, GPT4O)


def test_saved_by_cache_is_the_cost_avoided() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=500)
    assert saved_by_cache(usage, GPT4O) == cost_of(usage, GPT4O) == D("0.0075")


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (D(0), "0"),
        (D("0E-10"), "0"),
        (D("-0"), "0"),
        (D("0.0000000000"), "0"),
        (D("0.000001"), "0.000001"),
        (D("1E-6"), "0.000001"),
        (D("1E-10"), "0.0000000001"),
        (D("4E-11"), "0"),  # below the quantum
        (D("0.0075000000"), "0.0075"),
        (D("3.0864175"), "3.0864175"),
        (D("12.50"), "12.5"),
        (D("100"), "100"),
        (D("1E+3"), "1000"),
        (D("1234567.1234567890"), "1234567.123456789"),
        (D("0.12345678901"), "0.123456789"),  # 11th place rounds half-even
        (D("-0.25"), "-0.25"),
    ],
)
def test_format_usd(amount: Decimal, text: str) -> None:
    out = format_usd(amount)
    assert out == text
    assert "E" not in out and "e" not in out


def test_format_usd_of_a_cost() -> None:
    cost = cost_of(Usage(prompt_tokens=1, completion_tokens=0), Price(D(1), D(1)))
    assert format_usd(cost) == "0.000001"


def test_format_usd_rejects_non_finite() -> None:
    with pytest.raises(ValueError):
        format_usd(D("NaN"))
    with pytest.raises(ValueError):
        format_usd(D("Infinity"))
