"""Whether a request may be answered from the cache, and whether its answer is stored."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from interlock.settings import CacheSettings, RouteCacheSettings
from interlock.types import Endpoint

_MAX_AGE = re.compile(r"max-age\s*=\s*(\d+)")


@dataclass(frozen=True, slots=True)
class CacheDecision:
    read: bool
    write: bool
    ttl_s: float
    max_age_s: float | None = None  # the client's Cache-Control max-age


def decide(
    cfg: CacheSettings,
    route: RouteCacheSettings | None,
    endpoint: Endpoint,
    body: dict[str, Any],
    control: str | None,
    cache_control: str | None,
) -> CacheDecision | None:
    """None: the cache is not involved at all (disabled, bypassed, or not cacheable)."""
    if not cfg.enabled or (route is not None and not route.enabled):
        return None
    if control == "bypass":
        return None
    cacheable = (route.cacheable if route and route.cacheable else None) or cfg.cacheable
    if cacheable == "temperature_zero" and endpoint is not Endpoint.EMBEDDINGS:
        # Sampled answers differ by design: only deterministic requests are cached.
        temperature = body.get("temperature")
        if temperature != 0:
            return None
    ttl = (route.ttl_s if route and route.ttl_s else None) or cfg.ttl_s
    read, write, max_age = True, True, None
    if control == "refresh":
        read = False
    if cache_control:
        cc = cache_control.lower()
        if "no-store" in cc:
            write = False
        if "no-cache" in cc:
            read = False
        m = _MAX_AGE.search(cc)
        if m:
            max_age = float(m.group(1))
    if not read and not write:
        return None
    return CacheDecision(read, write, ttl, max_age)
