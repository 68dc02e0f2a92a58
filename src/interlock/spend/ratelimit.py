"""Rate limits (RPM, TPM, concurrency) as the admit stage sees them.

The GCRA core — :class:`Limit`, :class:`Decision`, :func:`gcra`, :func:`adjust`,
:func:`effective_burst` — is pure and lives in :mod:`interlock.state.ratelimit_local`
because both state backends (in-process and Redis) need it and the state layer sits
below this one; it is re-exported here. This module adds what turns decisions into
HTTP: OpenAI's ``x-ratelimit-*`` headers and ``Retry-After``.
"""

from __future__ import annotations

import math

from interlock.state.ratelimit_local import (
    MAX_PRIORITY,
    Decision,
    Limit,
    RateLimitBackendError,
    RateLimiter,
    adjust,
    admitted,
    effective_burst,
    gcra,
    retry_after,
)

__all__ = [
    "MAX_PRIORITY",
    "Decision",
    "Limit",
    "RateLimitBackendError",
    "RateLimiter",
    "adjust",
    "admitted",
    "effective_burst",
    "format_reset",
    "gcra",
    "ratelimit_headers",
    "retry_after",
    "retry_after_headers",
]


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI writes ``x-ratelimit-reset-*`` (Go's style):
    ``"120ms"``, ``"1s"``, ``"2.5s"``, ``"6m0s"``, ``"1h0m0s"``.

    Rounded up to the millisecond, so a client that waits this long is not early.
    """
    ms = math.ceil(seconds * 1000 - 1e-6) if seconds > 0 else 0
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    text = f"{secs}.{millis:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text


def ratelimit_headers(
    requests: Decision | None, tokens: Decision | None
) -> list[tuple[bytes, bytes]]:
    """``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` for the decisions given
    (usually the tightest request and token limits of the call)."""
    headers: list[tuple[bytes, bytes]] = []
    for kind, d in ((b"requests", requests), (b"tokens", tokens)):
        if d is None:
            continue
        headers += [
            (b"x-ratelimit-limit-" + kind, str(d.limit).encode()),
            (b"x-ratelimit-remaining-" + kind, str(d.remaining).encode()),
            (b"x-ratelimit-reset-" + kind, format_reset(d.reset_s).encode()),
        ]
    return headers


def retry_after_headers(seconds: float) -> list[tuple[bytes, bytes]]:
    """``Retry-After`` (whole seconds, rounded up, at least 1) and ``retry-after-ms``,
    which the official OpenAI SDKs prefer, so they retry when capacity is back rather
    than up to a second later. Empty for a cost no wait admits (``inf``)."""
    if not math.isfinite(seconds):
        return []
    ms = max(1, math.ceil(seconds * 1000 - 1e-6))
    return [(b"retry-after", str(max(1, math.ceil(ms / 1000))).encode()),
            (b"retry-after-ms", str(ms).encode())]  # fmt: skip
