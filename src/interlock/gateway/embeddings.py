"""Embeddings requests: per-text caching and micro-batched upstream calls."""

from __future__ import annotations

from typing import Any

import orjson

from interlock.cache.keys import cache_key
from interlock.errors import (
    UpstreamProtocolError,
)
from interlock.gateway.base import GatewayBase
from interlock.routing.attempts import Plan
from interlock.routing.embed_batch import Embedded
from interlock.types import (
    Endpoint,
    GatewayRequest,
    GatewayResponse,
    Usage,
)


class EmbeddingsPath(GatewayBase):
    async def _embed_upstream(self, req: GatewayRequest, plan: Plan, texts: list[str]) -> Embedded:
        """Embed ``texts`` upstream: through the alias's micro-batcher when it has one."""
        batcher = self._embed_batchers.get(plan.route.alias)
        if batcher is not None:
            return await batcher.embed(req, plan, texts)
        sub_body = {**req.body, "input": texts}
        sub = GatewayRequest(
            Endpoint.EMBEDDINGS, req.model, sub_body, b"", request_id=req.request_id
        )
        resp = await self.executor.complete(sub, plan)
        data = orjson.loads(resp.body)
        items = sorted(data.get("data") or (), key=lambda d: d.get("index", 0))
        if len(items) != len(texts):
            raise UpstreamProtocolError("the provider returned a different number of embeddings")
        return Embedded(
            [item.get("embedding") for item in items],
            resp.usage or Usage(0, 0),
            resp.deployment,
            resp.provider,
            resp.attempts,
            str(data.get("model") or req.model),
            len(texts),
        )

    async def _embed_batched(
        self, req: GatewayRequest, plan: Plan, texts: list[str]
    ) -> GatewayResponse:
        got = await self._embed_upstream(req, plan, texts)
        body = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": item}
                for i, item in enumerate(got.items)
            ],
            "model": got.model or req.model,
            "usage": {
                "prompt_tokens": got.usage.prompt_tokens,
                "total_tokens": got.usage.prompt_tokens,
            },
        }
        result = GatewayResponse(
            200, orjson.dumps(body), got.usage, got.deployment, got.provider, got.attempts
        )
        result.headers.append((b"x-interlock-batch-size", str(got.batch_size).encode()))
        return result

    async def _embed_per_text(
        self, req: GatewayRequest, plan: Plan, texts: list[str]
    ) -> GatewayResponse:
        """Embeddings cached per input text: a list with 3 new texts out of 100 costs 3."""
        assert self.cache is not None and req.cache_namespace is not None
        params = {k: v for k, v in req.body.items() if k not in ("input", "model", "user")}
        alias = plan.route.alias
        keys = {
            t: cache_key(req.cache_namespace, alias, "embedding-text", {"input": t, **params})
            for t in texts
        }
        found: dict[str, Any] = {}
        for text, key in keys.items():
            raw = await self.cache.get_value(key)
            if raw is not None:
                found[text] = orjson.loads(raw)
        missing = [t for t in keys if t not in found]
        usage = Usage(0, 0)
        deployment, provider, attempts, model = "cache", "cache", [], req.model
        if missing:
            got = await self._embed_upstream(req, plan, missing)
            ttl = self.settings.cache.ttl_s
            for text, item in zip(missing, got.items, strict=True):
                found[text] = item
                self.cache.put_value(keys[text], orjson.dumps(item), ttl)
            usage = got.usage
            deployment, provider, attempts, model = (
                got.deployment,
                got.provider,
                got.attempts,
                got.model or req.model,
            )
        body = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": found[t]}
                for i, t in enumerate(texts)
            ],
            "model": model,
            "usage": {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens},
        }
        result = GatewayResponse(200, orjson.dumps(body), usage, deployment, provider, attempts)
        if not missing:
            result.headers.append((b"x-interlock-embedding-cache", b"all"))
        elif len(missing) < len(keys):
            result.headers.append(
                (b"x-interlock-embedding-cache", f"{len(keys) - len(missing)}/{len(keys)}".encode())
            )
        return result
