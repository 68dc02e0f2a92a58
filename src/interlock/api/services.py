"""What the composition root builds next to the :class:`~interlock.gateway.Gateway` and
hands every request on ``Ctx.services``: the job runtime (queue, job and batch services,
worker pool, webhooks) and the dashboard's spend cache. Built once per process by
``app.py`` (``InterlockApp``); handlers read it from the context, never from a
module-level registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from interlock.api.http import Ctx
from interlock.api.job_runner import JobRuntime
from interlock.dashboard.spend import SpendCache
from interlock.errors import ServiceUnavailable
from interlock.gateway import Gateway


@dataclass(frozen=True, slots=True)
class Services:
    jobs: JobRuntime
    dashboard_spend: SpendCache

    @classmethod
    def build(cls, gw: Gateway) -> Services:
        return cls(JobRuntime(gw), SpendCache(gw.engine, gw.spend.enforcer))


def services_of(ctx: Ctx, what: str) -> Services:
    """The services the app handed this request; 503 where none run (in-process callers
    of a handler, without the app)."""
    if ctx.services is None:
        raise ServiceUnavailable(f"{what} not available in this process")
    return ctx.services
