"""What one HTTP request did, gathered as it runs, for its log line, span and metrics.

The ASGI app opens a :class:`RequestInfo` per request and puts it in a context variable;
the layers below (accounting, the executor) fill in what only they know without any
signature changing. The job worker runs requests outside the app, so there is none and
the fill-ins are skipped.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestInfo:
    request_id: str
    route: str = "unmatched"
    key_id: str | None = None
    user: str | None = None
    team: str | None = None
    model: str | None = None
    deployment: str | None = None
    provider: str | None = None
    outcome: str | None = None  # "ok" or an error code, from accounting
    cache: str | None = None
    cost_usd: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    fallback: str | None = None
    stream: bool = False
    upstream_s: float = 0.0  # summed over attempts (the gateway overhead is the rest)
    overhead_done: bool = False
    trace_id: str | None = None
    body: str | None = None  # opt-in, redacted


_CURRENT: ContextVar[RequestInfo | None] = ContextVar("interlock_request", default=None)


def current() -> RequestInfo | None:
    return _CURRENT.get()


def begin(info: RequestInfo) -> object:
    """Make ``info`` the current request's; returns the token :func:`end` needs."""
    return _CURRENT.set(info)


def end(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]
