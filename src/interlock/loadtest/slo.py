"""Service-level objectives given on the command line, and the verdict.

``--slo p95_ms=800 --slo error_rate=0.01 --slo min_rps=95``: latency and TTFT
percentiles and the error rate are upper bounds, ``min_rps`` (successful requests per
second) is a lower bound, ``arrival_error_pct`` bounds the generator's own deviation
from the target rate (a run that could not offer the load proves nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SLO_KEYS", "Slo", "evaluate_slos", "parse_slo"]

# name -> (path into the result document, "max" or "min")
SLO_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    **{f"p{p}_ms": (("latency_ms", f"p{p}"), "max") for p in (50, 90, 95, 99)},
    "max_ms": (("latency_ms", "max"), "max"),
    "mean_ms": (("latency_ms", "mean"), "max"),
    **{f"ttft_p{p}_ms": (("ttft_ms", f"p{p}"), "max") for p in (50, 90, 95, 99)},
    "error_rate": (("error_rate",), "max"),
    "min_rps": (("throughput", "ok_rps"), "min"),
    "arrival_error_pct": (("arrival", "error_pct"), "max"),
}


@dataclass(frozen=True)
class Slo:
    name: str
    threshold: float

    @property
    def bound(self) -> str:
        return SLO_KEYS[self.name][1]


def parse_slo(text: str) -> Slo:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or name not in SLO_KEYS:
        raise ValueError(
            f"--slo {text!r}: expected NAME=VALUE with NAME one of {', '.join(SLO_KEYS)}"
        )
    try:
        threshold = float(value)
    except ValueError:
        raise ValueError(f"--slo {text!r}: {value!r} is not a number") from None
    return Slo(name, threshold)


def evaluate_slos(result: dict[str, Any], slos: list[Slo]) -> dict[str, Any]:
    """Each objective with its actual value. A value the run could not measure (no
    streamed request for a TTFT objective, say) fails: an objective nobody measured has
    not been met."""
    checks = []
    for slo in slos:
        node: Any = result
        for key in SLO_KEYS[slo.name][0]:
            node = node.get(key) if isinstance(node, dict) else None
        actual = float(node) if isinstance(node, int | float) else None
        if actual is None:
            passed = False
        elif slo.bound == "max":
            passed = actual <= slo.threshold
        else:
            passed = actual >= slo.threshold
        checks.append({"name": slo.name, "bound": slo.bound, "threshold": slo.threshold,
                       "actual": actual, "passed": passed})  # fmt: skip
    return {"passed": all(c["passed"] for c in checks), "checks": checks}
