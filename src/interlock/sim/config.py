"""Configuration of the simulated provider.

A :class:`SimConfig` is plain data: it round-trips through a JSON dict
(:meth:`SimConfig.from_dict` / :meth:`SimConfig.to_dict`) so the control API can
show it and update it piecewise. Unknown keys and wrongly typed values are
rejected with :class:`ConfigError` (the control API answers 400).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["DEFAULT_PRICES", "ConfigError", "SimConfig"]

DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "sim-small": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
    "sim-medium": {"input_per_mtok": 1.0, "output_per_mtok": 4.0},
    "sim-large": {"input_per_mtok": 5.0, "output_per_mtok": 15.0},
    "sim-embed": {"input_per_mtok": 0.02, "output_per_mtok": 0.0},
}

FAULT_TYPES = frozenset({"status", "timeout", "reset", "malformed", "cut_stream", "latency"})
_FAULT_KEYS = frozenset(
    {
        "type",
        "status",
        "retry_after",
        "count",
        "probability",
        "match",
        "after_chunks",
        "ms",
        "message",
    }
)
_MATCH_KEYS = frozenset({"model", "path", "format", "stream"})


class ConfigError(ValueError):
    """A configuration value the simulator cannot accept."""


def _default_prices() -> dict[str, dict[str, float]]:
    return copy.deepcopy(DEFAULT_PRICES)


def _number(key: str, value: Any, *, integer: bool = False, minimum: float = 0) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{key} must be a number")
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise ConfigError(f"{key} must be an integer")
    if value < minimum:
        raise ConfigError(f"{key} must be >= {minimum}")
    return int(value) if integer else float(value)


def validate_fault(fault: Any) -> dict[str, Any]:
    """Check one fault description and return a normalised copy."""
    if not isinstance(fault, dict):
        raise ConfigError("each fault must be an object")
    unknown = set(fault) - _FAULT_KEYS
    if unknown:
        raise ConfigError(f"unknown fault keys: {sorted(unknown)}")
    ftype = fault.get("type")
    if ftype not in FAULT_TYPES:
        raise ConfigError(f"fault type must be one of {sorted(FAULT_TYPES)}")
    out: dict[str, Any] = {"type": ftype}
    if ftype == "status":
        out["status"] = _number("status", fault.get("status"), integer=True, minimum=100)
        if out["status"] > 599:
            raise ConfigError("status must be <= 599")
    if fault.get("retry_after") is not None:
        out["retry_after"] = _number("retry_after", fault["retry_after"])
    if fault.get("message") is not None:
        if not isinstance(fault["message"], str):
            raise ConfigError("message must be a string")
        out["message"] = fault["message"]
    count = fault.get("count")
    out["count"] = None if count is None else _number("count", count, integer=True)
    prob = fault.get("probability", 1.0)
    out["probability"] = _number("probability", 1.0 if prob is None else prob)
    if out["probability"] > 1:
        raise ConfigError("probability must be <= 1")
    if ftype == "cut_stream":
        out["after_chunks"] = _number("after_chunks", fault.get("after_chunks", 0), integer=True)
    if ftype == "latency":
        out["ms"] = _number("ms", fault.get("ms"))
    match = fault.get("match") or {}
    if not isinstance(match, dict):
        raise ConfigError("match must be an object")
    bad = set(match) - _MATCH_KEYS
    if bad:
        raise ConfigError(f"unknown match keys: {sorted(bad)}")
    for key in ("model", "path", "format"):
        if key in match and not isinstance(match[key], str):
            raise ConfigError(f"match.{key} must be a string")
    if "stream" in match and not isinstance(match["stream"], bool):
        raise ConfigError("match.stream must be a boolean")
    out["match"] = dict(match)
    return out


def _prices(value: Any) -> dict[str, dict[str, float]]:
    if not isinstance(value, dict):
        raise ConfigError("prices must be an object")
    out: dict[str, dict[str, float]] = {}
    for model, price in value.items():
        if not isinstance(price, dict) or set(price) - {"input_per_mtok", "output_per_mtok"}:
            raise ConfigError(
                f"prices[{model!r}] must be an object with input_per_mtok/output_per_mtok"
            )
        out[str(model)] = {
            "input_per_mtok": _number("input_per_mtok", price.get("input_per_mtok", 0)),
            "output_per_mtok": _number("output_per_mtok", price.get("output_per_mtok", 0)),
        }
    return out


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Behaviour of the simulated provider. Immutable; use :meth:`updated`."""

    seed: int = 0
    ttft_ms: float = 0.0
    tokens_per_s: float = 0.0
    output_tokens: int = 16
    embedding_dims: int = 256
    prices: dict[str, dict[str, float]] = field(default_factory=_default_prices)
    faults: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        return cls().updated(data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "ttft_ms": self.ttft_ms,
            "tokens_per_s": self.tokens_per_s,
            "output_tokens": self.output_tokens,
            "embedding_dims": self.embedding_dims,
            "prices": copy.deepcopy(self.prices),
            "faults": copy.deepcopy(self.faults),
        }

    def updated(self, partial: dict[str, Any]) -> SimConfig:
        """Return a copy with the keys of ``partial`` replaced (validated)."""
        if not isinstance(partial, dict):
            raise ConfigError("config must be a JSON object")
        known = {f.name for f in fields(self)}
        unknown = set(partial) - known
        if unknown:
            raise ConfigError(f"unknown config keys: {sorted(unknown)}")
        changes: dict[str, Any] = {}
        for key, value in partial.items():
            if key == "seed":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError("seed must be an integer")
                changes[key] = value
            elif key in ("ttft_ms", "tokens_per_s"):
                changes[key] = _number(key, value)
            elif key == "output_tokens":
                changes[key] = _number(key, value, integer=True)
            elif key == "embedding_dims":
                changes[key] = _number(key, value, integer=True, minimum=1)
            elif key == "prices":
                changes[key] = _prices(value)
            elif key == "faults":
                if not isinstance(value, list):
                    raise ConfigError("faults must be a list")
                changes[key] = [validate_fault(f) for f in value]
        return replace(self, **changes)

    def price_for(self, model: str) -> dict[str, float] | None:
        """Price of ``model``: an exact entry, else the longest key contained in the name."""
        price = self.prices.get(model)
        if price is not None:
            return price
        best: str | None = None
        for key in self.prices:
            if key in model and (best is None or len(key) > len(best)):
                best = key
        return self.prices[best] if best is not None else None
