"""Validation of a budget specification (admin API: budgets and keys)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from interlock.errors import InvalidRequest
from interlock.storage.budgets import MAX_USD

_SCOPES = ("key", "user", "team", "tag", "global")
_WINDOWS = ("daily", "weekly", "monthly", "lifetime")
_CENT_DIGITS = 10  # the columns keep 10 decimal places


def money(value: Any, name: str, param: str) -> Decimal | None:
    """A finite amount of US dollars in [0, MAX_USD] from a JSON number or string."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(f"'{name}' must be a number of US dollars", param=param)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRequest(f"'{name}' must be a number of US dollars", param=param) from None
    if not amount.is_finite() or amount < 0:
        raise InvalidRequest(f"'{name}' must be zero or more", param=param)
    if amount > MAX_USD:
        raise InvalidRequest(
            f"'{name}' must be at most {MAX_USD} US dollars", param=param, code="value_too_large"
        )
    # More decimals than the store keeps would be rounded there: round here, visibly.
    return amount.quantize(Decimal(1).scaleb(-_CENT_DIGITS)).normalize() + 0


def _money(body: dict[str, Any], name: str, param: str) -> Decimal | None:
    return money(body.get(name), name, param)


def parse_budget(body: Any, param: str = "") -> dict[str, Any]:
    """Validate one budget spec: {scope, subject, window, limit_usd, budget_usd, timezone}."""
    if not isinstance(body, dict):
        raise InvalidRequest("a budget must be an object", param=param or None)
    p = f"{param}." if param else ""
    allowed = {"scope", "subject", "window", "limit_usd", "budget_usd", "timezone"}
    for field in body:
        if field not in allowed:
            raise InvalidRequest(
                f"unknown field '{str(field)[:64]}'",
                param=p + str(field)[:64],
                code="unknown_field",
            )
    scope = body.get("scope", "global")
    if scope not in _SCOPES:
        raise InvalidRequest(f"'scope' must be one of {', '.join(_SCOPES)}", param=p + "scope")
    subject = body.get("subject")
    if scope == "global":
        if subject is not None:
            raise InvalidRequest("a global budget has no 'subject'", param=p + "subject")
    elif not isinstance(subject, str) or not 0 < len(subject) <= 200:
        raise InvalidRequest(
            "'subject' must name the key id, user, team or tag", param=p + "subject"
        )
    window = body.get("window", "monthly")
    if window not in _WINDOWS:
        raise InvalidRequest(f"'window' must be one of {', '.join(_WINDOWS)}", param=p + "window")
    limit = _money(body, "limit_usd", p + "limit_usd")
    budget = _money(body, "budget_usd", p + "budget_usd")
    if limit is None and budget is None:
        raise InvalidRequest(
            "set 'limit_usd' (hard limit), 'budget_usd' (planned), or both", param=p + "limit_usd"
        )
    tz = body.get("timezone")
    if tz is not None:
        try:
            if not isinstance(tz, str):
                raise TypeError(tz)
            ZoneInfo(tz)
        except Exception:
            raise InvalidRequest(
                "'timezone' must be an IANA zone such as 'UTC'", param=p + "timezone"
            ) from None
    return {
        "scope": scope,
        "subject": subject,
        "window": window,
        "limit_usd": limit,
        "budget_usd": budget,
        "timezone": tz,
    }
