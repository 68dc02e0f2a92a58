"""Per-minute load: provider quotas are per minute, so the peak minute is what must fit.

Minutes are aligned to the clock (as providers' fixed windows are) and counted by
arrival. A sliding window can see up to twice a fixed minute's count at a boundary; a
quota sized at the fixed peak with the headroom the report asks for covers that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from interlock.capacity.traffic import Call

__all__ = ["MinuteLoad", "peak_minute", "per_minute"]


@dataclass(slots=True)
class MinuteLoad:
    minute: int  # epoch minute
    requests: int = 0
    tokens: int = 0
    stream_requests: int = 0


def per_minute(
    calls: Iterable[Call], keep: Callable[[Call], bool] | None = None
) -> list[MinuteLoad]:
    """Requests and tokens per clock minute, in time order (empty minutes left out)."""
    out: dict[int, MinuteLoad] = {}
    for c in calls:
        if keep is not None and not keep(c):
            continue
        m = int(c.at // 60)
        load = out.get(m)
        if load is None:
            load = out[m] = MinuteLoad(m)
        load.requests += 1
        load.tokens += c.tokens
        load.stream_requests += c.stream
    return [out[m] for m in sorted(out)]


def peak_minute(loads: list[MinuteLoad]) -> tuple[int, int]:
    """(peak requests, peak tokens) over the minutes; each peak is taken on its own."""
    if not loads:
        return 0, 0
    return max(m.requests for m in loads), max(m.tokens for m in loads)
