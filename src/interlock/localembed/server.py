"""The OpenAI-compatible HTTP surface of the local embedding model."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
import orjson
from aiohttp import web

from interlock.batcher import MicroBatcher
from interlock.localembed import DIMENSIONS, MODEL_NAME
from interlock.localembed.model import MiniLM

MAX_INPUTS = 2048
MAX_CHARS = 100_000

Row = tuple[np.ndarray[Any, Any], int]


def _error(status: int, message: str, code: str, param: str | None = None) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _inputs(body: Any) -> list[str] | web.Response:
    if not isinstance(body, dict):
        return _error(400, "The body must be a JSON object", "invalid_request")
    model = body.get("model")
    if model != MODEL_NAME:
        return _error(404, f"This server serves only '{MODEL_NAME}'", "model_not_found", "model")
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        return _error(
            400, "'input' must be a string or a non-empty list of strings", "invalid_input", "input"
        )
    if len(texts) > MAX_INPUTS:
        return _error(400, f"at most {MAX_INPUTS} inputs per request", "too_many_inputs", "input")
    for t in texts:
        if not isinstance(t, str):
            return _error(
                400, "token arrays are not supported; send strings", "invalid_input", "input"
            )
        if not t or len(t) > MAX_CHARS:
            return _error(
                400, f"each input must hold 1 to {MAX_CHARS} characters", "invalid_input", "input"
            )
    dims = body.get("dimensions")
    if dims is not None and dims != DIMENSIONS:
        return _error(
            400, f"this model has {DIMENSIONS} dimensions", "invalid_dimensions", "dimensions"
        )
    if body.get("encoding_format", "float") not in ("float", "base64"):
        return _error(
            400,
            "encoding_format must be 'float' or 'base64'",
            "invalid_encoding_format",
            "encoding_format",
        )
    return texts


def create_app(model: MiniLM, *, max_batch: int, max_wait_s: float) -> web.Application:
    async def forward(texts: list[str]) -> list[Row]:
        vecs, counts = await asyncio.to_thread(model.encode, texts)
        return list(zip(list(vecs), counts, strict=True))

    batcher: MicroBatcher[str, Row] = MicroBatcher(
        forward, max_batch=max_batch, max_wait_s=max_wait_s
    )

    async def embeddings(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _error(400, "The body is not valid JSON", "invalid_json")
        texts = _inputs(body)
        if isinstance(texts, web.Response):
            return texts
        rows = await batcher.submit(texts)
        b64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(vec.astype("<f4").tobytes()).decode()
                if b64
                else vec.tolist(),
            }
            for i, (vec, _n) in enumerate(rows)
        ]
        tokens = sum(n for _v, n in rows)
        out = {
            "object": "list",
            "data": data,
            "model": MODEL_NAME,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def models(_request: web.Request) -> web.Response:
        out = {
            "object": "list",
            "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "interlock-local"}],
        }
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def stats(_request: web.Request) -> web.Response:
        s = batcher.stats
        out = {
            "batches": s.batches,
            "items": s.items,
            "mean_batch": s.items / s.batches if s.batches else 0.0,
        }
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=8 * 1024 * 1024)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", stats)
    app.router.add_get("/healthz", healthz)
    return app
