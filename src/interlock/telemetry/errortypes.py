"""Every failed request falls in one error type, a fixed vocabulary fit for a label.

The type answers "whose problem is it": the client's (bad input, auth), the upstream's
(4xx, 5xx, timeout), or one of the gateway's deliberate refusals (rate limit, budget,
open circuit, degradation). Error codes are the stable ``code`` of the OpenAI-style
error body (errors.py), so the mapping needs no exception objects.
"""

from __future__ import annotations

ERROR_TYPES = (
    "client",
    "upstream_4xx",
    "upstream_5xx",
    "timeout",
    "rate_limited",
    "budget",
    "circuit_open",
    "degraded",
    "internal",
)

_BY_CODE = {
    "upstream_timeout": "timeout",
    "timeout": "timeout",
    "deadline_exceeded": "timeout",
    "budget_exceeded": "budget",
    "budget_state_unavailable": "budget",
    "circuit_open": "circuit_open",
    "degraded": "degraded",
    "rate_limited": "rate_limited",
    "deployment_busy": "rate_limited",
    "queue_full": "rate_limited",
}


def error_type(status: int, code: str | None) -> str | None:
    """The type of a finished request, or None when it did not fail (a client that hung
    up, 499, is not an error of anyone's that an operator can act on)."""
    if status == 499 or code == "client_closed":
        return None
    if status < 400 and (code is None or code == "ok"):
        return None
    if code is not None:
        known = _BY_CODE.get(code)
        if known is not None:
            return known
        if code.startswith("upstream_"):
            return "upstream_4xx" if 400 <= status < 500 else "upstream_5xx"
    if 400 <= status < 500:
        return "rate_limited" if status == 429 else "client"
    return "internal"
