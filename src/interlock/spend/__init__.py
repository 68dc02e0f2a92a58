"""Spend: model prices, usage -> cost, and (elsewhere in this package) budgets and the ledger.

The price and cost API in one place; submodules: :mod:`interlock.spend.prices`,
:mod:`interlock.spend.cost`.
"""

from __future__ import annotations

from interlock.spend.cost import QUANTUM, cost_of, format_usd, saved_by_cache, worst_case
from interlock.spend.prices import (
    Price,
    PriceDecision,
    PriceSource,
    PriceTable,
    PriceTableError,
    TableEntry,
    UnknownPricePolicy,
    gpu_hour_price,
    resolve_price,
    to_decimal,
)

__all__ = [
    "QUANTUM",
    "Price",
    "PriceDecision",
    "PriceSource",
    "PriceTable",
    "PriceTableError",
    "TableEntry",
    "UnknownPricePolicy",
    "cost_of",
    "format_usd",
    "gpu_hour_price",
    "resolve_price",
    "saved_by_cache",
    "to_decimal",
    "worst_case",
]
