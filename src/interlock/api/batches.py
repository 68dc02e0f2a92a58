"""The OpenAI Batch API: ``/v1/files`` (JSONL uploads, output files) and ``/v1/batches``.

Any key may use it, for its own files and batches only (another key's id is a 404).
An upload is checked line by line here — shape, the synchronous route's validation of
each body and the key's access to its model — so a bad file is one 400 listing its
first bad lines. Batches run through the job queue (:mod:`interlock.jobs.batch.driver`);
docs/batch.md is the reference.
"""

from __future__ import annotations

import orjson

from interlock.api import multipart
from interlock.api.http import Ctx, parse_json_object
from interlock.api.job_runner import body_check
from interlock.api.services import services_of
from interlock.errors import InvalidRequest, error_payload
from interlock.gateway import Gateway
from interlock.jobs.batch.lines import InvalidBatchFile
from interlock.jobs.batch.views import batch_view, file_view

MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around the file part


def _page(data: list[dict[str, object]], more: bool) -> dict[str, object]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": more,
    }


# -- files ---------------------------------------------------------------------------


async def upload_file(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    ctype = ctx.header(b"content-type")
    multipart.boundary(ctype)  # 415 before reading a large body of the wrong kind
    service = services_of(ctx, "batches are").jobs.batches
    raw = await ctx.read_body(service.settings.max_file_bytes + MULTIPART_OVERHEAD)
    parts = multipart.parse(raw, ctype)
    for name in parts:
        if name not in ("purpose", "file") and not name.startswith("expires_after"):
            raise InvalidRequest(
                f"unknown field '{name[:64]}'", code="unknown_field", param=name[:64]
            )
    file = parts.get("file")
    if file is None:
        raise InvalidRequest(
            "'file' is required (a JSONL file)", code="missing_required_parameter", param="file"
        )
    purpose = parts.get("purpose")
    try:
        rec = await service.upload(
            principal.key_id,
            purpose.data.decode("utf-8", "replace").strip() if purpose is not None else None,
            file.filename,
            file.data,
            body_check(gw, principal),
        )
    except InvalidBatchFile as bad:
        ctx.error_code = bad.code
        body = error_payload(bad)
        body["error"]["lines"] = [e.view() for e in bad.lines]
        body["error"]["bad_lines"] = bad.bad_lines
        await ctx.respond(bad.status, orjson.dumps(body))
        return
    await ctx.respond_json(200, file_view(rec))


async def list_files(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    q = ctx.query()
    found, more = await services_of(ctx, "batches are").jobs.batches.list_files(
        principal.key_id, q.get("purpose"), q.get("limit"), q.get("after"), q.get("order")
    )
    await ctx.respond_json(200, _page([file_view(f) for f in found], more))


async def get_file(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    rec = await services_of(ctx, "batches are").jobs.batches.get_file(
        principal.key_id, ctx.path_params["file_id"]
    )
    await ctx.respond_json(200, file_view(rec))


async def delete_file(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    file_id = ctx.path_params["file_id"]
    await services_of(ctx, "batches are").jobs.batches.delete_file(principal.key_id, file_id)
    await ctx.respond_json(200, {"id": file_id, "object": "file", "deleted": True})


async def file_content(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    rec, data = await services_of(ctx, "batches are").jobs.batches.content(
        principal.key_id, ctx.path_params["file_id"]
    )
    ctx.status = 200
    # The filename is client input: keep it from breaking out of the header.
    name = "".join(c for c in rec.filename if c.isprintable() and c not in '"\\;')
    disposition = f'attachment; filename="{name}"'.encode("latin-1", "replace")
    await ctx.send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/jsonl"),
                (b"content-length", str(len(data)).encode()),
                (b"content-disposition", disposition),
                *ctx.response_headers,
            ],
        }
    )
    await ctx.send({"type": "http.response.body", "body": data})


# -- batches -------------------------------------------------------------------------


async def create_batch(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    cfg = gw.settings.server
    data = parse_json_object(ctx, await ctx.read_body(cfg.max_body_bytes), cfg.max_json_depth)
    batch = await services_of(ctx, "batches are").jobs.batches.create(
        principal.key_id, principal.team, data
    )
    await ctx.respond_json(200, batch_view(batch))


async def list_batches(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    q = ctx.query()
    found, more = await services_of(ctx, "batches are").jobs.batches.list(
        principal.key_id, q.get("limit"), q.get("after")
    )
    await ctx.respond_json(200, _page([batch_view(b) for b in found], more))


async def get_batch(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    batch = await services_of(ctx, "batches are").jobs.batches.get(
        principal.key_id, ctx.path_params["batch_id"]
    )
    await ctx.respond_json(200, batch_view(batch))


async def cancel_batch(ctx: Ctx, gw: Gateway) -> None:
    principal = await gw.authenticate(ctx.bearer())
    batch = await services_of(ctx, "batches are").jobs.batches.cancel(
        principal.key_id, ctx.path_params["batch_id"]
    )
    await ctx.respond_json(200, batch_view(batch))
