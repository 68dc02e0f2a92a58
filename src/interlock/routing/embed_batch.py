"""Micro-batching for remote embedding deployments.

Concurrent embeddings requests to one model with the same parameters are combined into
one upstream call (bounded batch size and wait), identical texts in flight are embedded
once, and the answer is fanned out. The upstream's token count is split over the callers
exactly (largest remainder), so the ledger's sum equals what the provider billed and each
caller is charged its share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from interlock.batcher import MicroBatcher
from interlock.errors import UpstreamProtocolError
from interlock.routing.attempts import Plan
from interlock.routing.executor import Executor
from interlock.types import Attempt, Endpoint, GatewayRequest, Usage


@dataclass(slots=True)
class Embedded:
    """One caller's share of a batched upstream call."""

    items: list[Any]  # the embedding (list of floats or a base64 string) per input text
    usage: Usage
    deployment: str
    provider: str
    attempts: list[Attempt] = field(default_factory=list)
    model: str = ""
    batch_size: int = 1  # texts in the upstream call this share came from


@dataclass(slots=True)
class _Item:
    text: str
    req: GatewayRequest
    plan: Plan


@dataclass(slots=True)
class _Row:
    embedding: Any
    tokens: int
    deployment: str
    provider: str
    attempts: list[Attempt]
    model: str
    batch_size: int


def split_tokens(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` split in proportion to ``weights``; the parts sum to ``total`` exactly."""
    if not weights:
        return []
    if sum(weights) <= 0:
        weights = [1.0] * len(weights)
    wsum = sum(weights)
    raw = [total * w / wsum for w in weights]
    parts = [int(x) for x in raw]
    rest = total - sum(parts)
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - parts[i], reverse=True)[:rest]:
        parts[i] += 1
    return parts


class EmbeddingBatcher:
    def __init__(self, executor: Executor, max_batch: int, max_wait_s: float) -> None:
        self._executor = executor
        self._max = max_batch
        self._wait = max_wait_s
        self._batchers: dict[str, MicroBatcher[_Item, _Row]] = {}

    @staticmethod
    def _params_key(alias: str, body: dict[str, Any]) -> str:
        params = {k: v for k, v in body.items() if k not in ("input", "model", "user")}
        return (
            alias
            + "|"
            + hashlib.sha256(orjson.dumps(params, option=orjson.OPT_SORT_KEYS)).hexdigest()
        )

    async def embed(self, req: GatewayRequest, plan: Plan, texts: list[str]) -> Embedded:
        key = self._params_key(plan.route.alias, req.body)
        batcher = self._batchers.get(key)
        if batcher is None:
            batcher = self._batchers[key] = MicroBatcher(
                self._call(req.body), max_batch=self._max, max_wait_s=self._wait
            )
        rows = await batcher.submit([_Item(t, req, plan) for t in texts])
        first = rows[0]
        return Embedded(
            [r.embedding for r in rows],
            Usage(sum(r.tokens for r in rows), 0),
            first.deployment,
            first.provider,
            first.attempts,
            first.model,
            first.batch_size,
        )

    def _call(self, template: dict[str, Any]) -> Callable[[list[_Item]], Any]:
        params = {k: v for k, v in template.items() if k not in ("input", "user")}

        async def run(items: list[_Item]) -> list[_Row]:
            unique = list(dict.fromkeys(i.text for i in items))
            lead = items[0]
            body = {**params, "input": unique}
            sub = GatewayRequest(
                Endpoint.EMBEDDINGS, lead.req.model, body, b"", request_id=lead.req.request_id
            )
            # One call for several requests: its attempts are counted in each of them.
            batch = replace(lead.plan, attempts=[])
            try:
                resp = await self._executor.complete(sub, batch)
            finally:
                for plan in {id(i.plan): i.plan for i in items}.values():
                    plan.attempts.extend(batch.attempts)
            data = orjson.loads(resp.body)
            got = sorted(data.get("data") or (), key=lambda d: d.get("index", 0))
            if len(got) != len(unique):
                raise UpstreamProtocolError(
                    "the provider returned a different number of embeddings"
                )
            vectors = {t: g.get("embedding") for t, g in zip(unique, got, strict=True)}
            total = resp.usage.prompt_tokens if resp.usage else 0
            # Each caller-text pair pays its share; a text sent by several callers is
            # embedded once and its tokens are divided between them.
            shares = split_tokens(total, [len(i.text) + 1 for i in items])
            model = str(data.get("model") or lead.req.model)
            return [
                _Row(
                    vectors[i.text],
                    n,
                    resp.deployment,
                    resp.provider,
                    resp.attempts,
                    model,
                    len(unique),
                )
                for i, n in zip(items, shares, strict=True)
            ]

        return run
