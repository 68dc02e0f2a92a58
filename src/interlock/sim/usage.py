"""OpenAI's organization usage API, served from the simulator's own ledger.

``GET /v1/organization/usage/completions`` and ``/v1/organization/usage/embeddings`` in the
shape of openai/openai-openapi (``UsageResponse`` → ``UsageTimeBucket`` →
``UsageCompletionsResult`` / ``UsageEmbeddingsResult``): query ``start_time`` (required,
Unix seconds, inclusive), ``end_time`` (exclusive), ``bucket_width`` (``1m``, ``1h``,
``1d``; default ``1d``), ``models``, ``group_by`` (``model``; the other dimensions the
simulator does not have come back ``null``), ``limit`` (buckets per page: 1d default 7
max 31, 1h 24/168, 1m 60/1440) and ``page`` (the ``next_page`` cursor). Every bucket of
the range is listed, empty ones with no results. Needs ``Authorization: Bearer …`` (an
admin key at OpenAI). Only what the OpenAI wire format served is reported, as OpenAI's
own usage API reports only OpenAI's traffic.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from interlock.sim.runtime import json_response, state_of

__all__ = ["add_routes"]

_WIDTH = {"1m": 60, "1h": 3600, "1d": 86400}
_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
_GROUPS = {"project_id", "user_id", "api_key_id", "model", "batch", "service_tier"}


def _error(status: int, message: str, param: str | None = None) -> web.Response:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}
    }
    return json_response(body, status)


def _int(q: Any, name: str) -> int | None:
    raw = q.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest from None


def _result(endpoint: str, model: str | None, inp: int, out: int, reqs: int) -> dict[str, Any]:
    common = {
        "project_id": None,
        "user_id": None,
        "api_key_id": None,
        "model": model,
        "batch": None,
    }
    if endpoint == "embeddings":
        return {
            "object": "organization.usage.embeddings.result",
            "input_tokens": inp,
            "num_model_requests": reqs,
            **common,
        }
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": inp,
        "input_cached_tokens": 0,
        "input_cache_write_tokens": 0,
        "input_uncached_tokens": inp,
        "output_tokens": out,
        "input_text_tokens": inp,
        "output_text_tokens": out,
        "input_cached_text_tokens": 0,
        "input_audio_tokens": 0,
        "input_cached_audio_tokens": 0,
        "output_audio_tokens": 0,
        "input_image_tokens": 0,
        "input_cached_image_tokens": 0,
        "output_image_tokens": 0,
        "num_model_requests": reqs,
        "service_tier": None,
        **common,
    }


def usage_handler(endpoint: str) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or len(auth) <= len("Bearer "):
            return _error(401, "You didn't provide an API key.")
        q = request.query
        try:
            start = _int(q, "start_time")
            end = _int(q, "end_time")
            limit = _int(q, "limit")
            page = _int(q, "page")
        except web.HTTPBadRequest:
            return _error(400, "start_time, end_time, limit and page must be integers")
        if start is None:
            return _error(400, "Missing required parameter: 'start_time'.", "start_time")
        width_name = q.get("bucket_width", "1d")
        if width_name not in _WIDTH:
            return _error(400, "bucket_width must be one of 1m, 1h, 1d", "bucket_width")
        groups = set(q.getall("group_by", [])) | set(q.getall("group_by[]", []))
        if groups - _GROUPS:
            return _error(400, f"invalid group_by: {sorted(groups - _GROUPS)}", "group_by")
        default, most = _LIMITS[width_name]
        limit = default if limit is None else limit
        if not 1 <= limit <= most:
            return _error(400, f"limit must be between 1 and {most}", "limit")
        width = _WIDTH[width_name]
        first = (page if page is not None else start) // width * width
        stop = end if end is not None else first + limit * width
        last = min(stop, first + limit * width)
        models = set(q.getall("models", [])) | set(q.getall("models[]", []))
        rows = state_of(request).ledger.usage(first, last, formats=("openai",), endpoint=endpoint)
        by_bucket: dict[int, dict[str | None, list[int]]] = {}
        for minute, model, inp, out, reqs in rows:
            if models and model not in models:
                continue
            bucket = minute // width * width
            key = model if "model" in groups else None
            agg = by_bucket.setdefault(bucket, {}).setdefault(key, [0, 0, 0])
            agg[0] += inp
            agg[1] += out
            agg[2] += reqs
        data = []
        for b in range(first, last, width):
            results = [
                _result(endpoint, m, *agg)
                for m, agg in sorted(by_bucket.get(b, {}).items(), key=lambda kv: kv[0] or "")
            ]
            data.append(
                {"object": "bucket", "start_time": b, "end_time": b + width, "results": results}
            )
        more = last < stop
        return json_response(
            {
                "object": "page",
                "data": data,
                "has_more": more,
                "next_page": str(last) if more else None,
            }
        )

    return handle


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/organization/usage/completions", usage_handler("completions"))
    app.router.add_get("/v1/organization/usage/embeddings", usage_handler("embeddings"))
