"""The Jobs API: ``/v1/jobs`` for any key (its own jobs only), ``/admin/jobs`` for admins.

A submission is answered ``202`` only once the job is committed to the queue's store;
the inner request body is checked at submit with the synchronous route's own validation
(and the key's access to the model), so a bad request is a 400 now, not a failed job
later. The rules are in :mod:`interlock.jobs.service`, the run in
:mod:`interlock.api.job_runner`; docs/jobs.md is the reference.
"""

from __future__ import annotations

from typing import Any

import orjson

from interlock.api.admin import require_admin
from interlock.api.http import Ctx, parse_json_object
from interlock.api.job_runner import body_check
from interlock.api.openai_routes import request_tags
from interlock.api.services import services_of
from interlock.errors import InvalidRequest
from interlock.gateway import Gateway
from interlock.jobs.service import job_view


def _fold_tags(ctx: Ctx, data: dict[str, Any]) -> None:
    """``x-interlock-tags`` and ``body.metadata.tags`` (checked by the sync route's rules)
    are kept as ``body.metadata.tags``, to become the run's request tags."""
    body = data.get("body")
    if not isinstance(body, dict):
        return
    try:
        tags = request_tags(ctx, body)
    except InvalidRequest as err:
        err.param = "body.metadata.tags" if err.param == "metadata.tags" else err.param
        raise
    if tags:
        meta = body.get("metadata")
        body["metadata"] = {**(meta if isinstance(meta, dict) else {}), "tags": list(tags)}


async def create_job(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    cfg = gw.settings.server
    raw = await ctx.read_body(cfg.max_body_bytes)
    data = parse_json_object(ctx, raw, cfg.max_json_depth)
    _fold_tags(ctx, data)
    rt = services_of(ctx, "jobs are").jobs
    job, created = await rt.service.submit(
        principal.key_id,
        principal.team,
        data,
        body_check(gw, principal),
        ctx.header(b"idempotency-key"),
    )
    if created and rt.pool is not None:
        rt.pool.wake()
    location = f"/v1/jobs/{job.id}".encode()
    headers = [(b"location", location)]
    if not created:
        headers.append((b"idempotent-replayed", b"true"))
    await ctx.respond(202 if created else 200, orjson.dumps(job_view(job)), headers)


async def list_jobs(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    q = ctx.query()
    jobs, more = await services_of(ctx, "jobs are").jobs.service.list(
        principal.key_id, q.get("status"), q.get("limit"), q.get("after")
    )
    data = [job_view(j) for j in jobs]
    await ctx.respond_json(
        200,
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        },
    )


async def get_job(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    job = await services_of(ctx, "jobs are").jobs.service.get(
        principal.key_id, ctx.path_params["job_id"]
    )
    await ctx.respond_json(200, job_view(job))


async def cancel_job(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    rt = services_of(ctx, "jobs are").jobs
    job, cancelled = await rt.service.cancel(principal.key_id, ctx.path_params["job_id"])
    if cancelled:
        rt.cancelled(job)
    await ctx.respond_json(200, job_view(job))


async def dead_letters(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    raw = ctx.query().get("limit", "100")
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise InvalidRequest("'limit' must be an integer between 1 and 1000", param="limit")
    jobs = await services_of(ctx, "jobs are").jobs.queue.dead_letters(limit)
    await ctx.respond_json(
        200, {"object": "list", "data": [job_view(j, with_owner=True) for j in jobs]}
    )


async def requeue_job(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    job = await services_of(ctx, "jobs are").jobs.service.requeue(ctx.path_params["job_id"])
    await ctx.respond_json(200, job_view(job, with_owner=True))


async def webhook_secret(ctx: Ctx, gw: Gateway) -> None:
    await require_admin(ctx, gw)
    rt = services_of(ctx, "jobs are").jobs
    source = "config" if gw.settings.jobs.webhooks.secret is not None else "state_dir"
    await ctx.respond_json(200, {"secret": rt.webhook_secret, "source": source})
